//! The client's errors: what went wrong, during which API call, and for a
//! broker's refusal the Kafka error code with its name.

use std::fmt;
use std::io;

use kafka_protocol::messages::ApiKey;

use super::sasl::AuthenticationError;
use crate::sasl::Mechanism;

/// Kafka's names for the error codes an admin client commonly meets (from
/// Kafka's `Errors.java`). Codes not listed print as `UNKNOWN_ERROR_CODE`,
/// still with their number, so nothing is lost.
const ERROR_NAMES: &[(i16, &str)] = &[
    (-1, "UNKNOWN_SERVER_ERROR"),
    (0, "NONE"),
    (1, "OFFSET_OUT_OF_RANGE"),
    (2, "CORRUPT_MESSAGE"),
    (3, "UNKNOWN_TOPIC_OR_PARTITION"),
    (4, "INVALID_FETCH_SIZE"),
    (5, "LEADER_NOT_AVAILABLE"),
    (6, "NOT_LEADER_OR_FOLLOWER"),
    (7, "REQUEST_TIMED_OUT"),
    (8, "BROKER_NOT_AVAILABLE"),
    (9, "REPLICA_NOT_AVAILABLE"),
    (10, "MESSAGE_TOO_LARGE"),
    (13, "NETWORK_EXCEPTION"),
    (14, "COORDINATOR_LOAD_IN_PROGRESS"),
    (15, "COORDINATOR_NOT_AVAILABLE"),
    (16, "NOT_COORDINATOR"),
    (17, "INVALID_TOPIC_EXCEPTION"),
    (18, "RECORD_LIST_TOO_LARGE"),
    (19, "NOT_ENOUGH_REPLICAS"),
    (20, "NOT_ENOUGH_REPLICAS_AFTER_APPEND"),
    (21, "INVALID_REQUIRED_ACKS"),
    (22, "ILLEGAL_GENERATION"),
    (24, "INVALID_GROUP_ID"),
    (25, "UNKNOWN_MEMBER_ID"),
    (27, "REBALANCE_IN_PROGRESS"),
    (28, "INVALID_COMMIT_OFFSET_SIZE"),
    (29, "TOPIC_AUTHORIZATION_FAILED"),
    (30, "GROUP_AUTHORIZATION_FAILED"),
    (31, "CLUSTER_AUTHORIZATION_FAILED"),
    (32, "INVALID_TIMESTAMP"),
    (33, "UNSUPPORTED_SASL_MECHANISM"),
    (34, "ILLEGAL_SASL_STATE"),
    (35, "UNSUPPORTED_VERSION"),
    (36, "TOPIC_ALREADY_EXISTS"),
    (37, "INVALID_PARTITIONS"),
    (38, "INVALID_REPLICATION_FACTOR"),
    (39, "INVALID_REPLICA_ASSIGNMENT"),
    (40, "INVALID_CONFIG"),
    (41, "NOT_CONTROLLER"),
    (42, "INVALID_REQUEST"),
    (43, "UNSUPPORTED_FOR_MESSAGE_FORMAT"),
    (44, "POLICY_VIOLATION"),
    (53, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"),
    (54, "SECURITY_DISABLED"),
    (55, "OPERATION_NOT_ATTEMPTED"),
    (56, "KAFKA_STORAGE_ERROR"),
    (57, "LOG_DIR_NOT_FOUND"),
    (58, "SASL_AUTHENTICATION_FAILED"),
    (60, "REASSIGNMENT_IN_PROGRESS"),
    (68, "NON_EMPTY_GROUP"),
    (69, "GROUP_ID_NOT_FOUND"),
    (72, "LISTENER_NOT_FOUND"),
    (73, "TOPIC_DELETION_DISABLED"),
    (74, "FENCED_LEADER_EPOCH"),
    (75, "UNKNOWN_LEADER_EPOCH"),
    (76, "UNSUPPORTED_COMPRESSION_TYPE"),
    (78, "OFFSET_NOT_AVAILABLE"),
    (87, "INVALID_RECORD"),
    (89, "THROTTLING_QUOTA_EXCEEDED"),
    (91, "RESOURCE_NOT_FOUND"),
    (92, "DUPLICATE_RESOURCE"),
    (93, "UNACCEPTABLE_CREDENTIAL"),
    (100, "UNKNOWN_TOPIC_ID"),
    (103, "INCONSISTENT_TOPIC_ID"),
];

/// Kafka's name for an error code, e.g. `TOPIC_ALREADY_EXISTS` for 36.
pub fn error_name(code: i16) -> &'static str {
    ERROR_NAMES
        .iter()
        .find(|(known, _)| *known == code)
        .map_or("UNKNOWN_ERROR_CODE", |(_, name)| name)
}

/// A broker's refusal: a nonzero Kafka error code and the broker's message,
/// if it sent one (many responses and older versions carry none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaError {
    pub code: i16,
    pub message: Option<String>,
}

impl KafkaError {
    pub fn new(code: i16, message: Option<String>) -> KafkaError {
        KafkaError {
            code,
            message: message.filter(|message| !message.is_empty()),
        }
    }

    /// `Err` for a nonzero code, so response fields convert with `?`.
    pub fn check(code: i16, message: Option<String>) -> Result<(), KafkaError> {
        if code == 0 {
            Ok(())
        } else {
            Err(KafkaError::new(code, message))
        }
    }

    pub fn name(&self) -> &'static str {
        error_name(self.code)
    }
}

impl fmt::Display for KafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code)?;
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for KafkaError {}

/// Everything a client call can fail with. Variants about one exchange name
/// the API, so a message says which step failed.
#[derive(Debug)]
pub enum ClientError {
    /// The bootstrap or broker address did not resolve to any socket address.
    Resolve {
        address: String,
        source: Option<io::Error>,
    },
    /// No resolved address accepted a connection.
    Connect { address: String, source: io::Error },
    /// Reading or writing the socket failed (including the broker closing it).
    Io {
        address: String,
        api: ApiKey,
        source: io::Error,
    },
    /// The broker did not answer within the request timeout.
    Timeout {
        address: String,
        api: ApiKey,
        timeout_ms: u64,
    },
    /// A response frame's length prefix is outside the accepted bounds.
    FrameLength {
        address: String,
        api: ApiKey,
        length: i32,
    },
    /// The response belongs to another request: the stream is out of step.
    CorrelationMismatch {
        address: String,
        expected: i32,
        received: i32,
    },
    /// The request could not be encoded at the negotiated version (a bug in
    /// the caller's choice of fields, never a broker's fault).
    Encode {
        api: ApiKey,
        version: i16,
        message: String,
    },
    /// The response did not decode at the negotiated version.
    Decode {
        address: String,
        api: ApiKey,
        version: i16,
        message: String,
    },
    /// The broker supports no version of `api` that this client speaks.
    UnsupportedApi { address: String, api: ApiKey },
    /// A well-formed response that does not answer the question asked (for
    /// example, no result for the topic that was sent).
    Protocol {
        address: String,
        api: ApiKey,
        message: String,
    },
    /// The broker refused the request with a Kafka error code.
    Broker(KafkaError),
    /// Logging in as `user` failed. (The reason is boxed: it is the
    /// largest of the reasons, and every `Result` of the client carries
    /// this type.)
    Authentication {
        address: String,
        user: String,
        mechanism: Mechanism,
        reason: Box<AuthenticationError>,
    },
}

impl ClientError {
    /// The Kafka error, when the broker refused the request.
    pub fn kafka(&self) -> Option<&KafkaError> {
        match self {
            ClientError::Broker(error) => Some(error),
            _ => None,
        }
    }
}

impl From<KafkaError> for ClientError {
    fn from(error: KafkaError) -> ClientError {
        ClientError::Broker(error)
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Resolve {
                address,
                source: Some(source),
            } => {
                write!(f, "cannot resolve {address}: {source}")
            }
            ClientError::Resolve {
                address,
                source: None,
            } => {
                write!(f, "cannot resolve {address}: no addresses found")
            }
            ClientError::Connect { address, source } => {
                write!(f, "cannot connect to {address}: {source}")
            }
            ClientError::Io {
                address,
                api,
                source,
            } => {
                write!(f, "{api:?} request to {address} failed: {source}")
            }
            ClientError::Timeout {
                address,
                api,
                timeout_ms,
            } => {
                write!(
                    f,
                    "{api:?} request to {address} got no response within {timeout_ms} ms"
                )
            }
            ClientError::FrameLength {
                address,
                api,
                length,
            } => write!(
                f,
                "{api:?} response from {address} has an invalid frame length {length} \
                 (is this a Kafka broker?)"
            ),
            ClientError::CorrelationMismatch {
                address,
                expected,
                received,
            } => write!(
                f,
                "response from {address} has correlation id {received}, expected {expected}"
            ),
            ClientError::Encode {
                api,
                version,
                message,
            } => {
                write!(f, "cannot encode {api:?} v{version} request: {message}")
            }
            ClientError::Decode {
                address,
                api,
                version,
                message,
            } => {
                write!(
                    f,
                    "cannot decode {api:?} v{version} response from {address}: {message}"
                )
            }
            ClientError::UnsupportedApi { address, api } => write!(
                f,
                "the broker at {address} supports no version of {api:?} that this client speaks"
            ),
            ClientError::Protocol {
                address,
                api,
                message,
            } => {
                write!(f, "unexpected {api:?} response from {address}: {message}")
            }
            ClientError::Broker(error) => write!(f, "{error}"),
            ClientError::Authentication {
                address,
                user,
                mechanism,
                reason,
            } => write!(
                f,
                "authentication failed for user {user} at {address} ({mechanism}): {reason}"
            ),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Resolve {
                source: Some(source),
                ..
            }
            | ClientError::Connect { source, .. }
            | ClientError::Io { source, .. } => Some(source),
            ClientError::Broker(error) => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_sorted() {
        // Sorted and unique, so a duplicate or a typo'd code stands out in review.
        assert!(ERROR_NAMES.windows(2).all(|pair| pair[0].0 < pair[1].0));
    }

    #[test]
    fn display_has_name_code_and_message() {
        let error = KafkaError::new(36, Some("Topic 'x' already exists.".into()));
        assert_eq!(
            error.to_string(),
            "TOPIC_ALREADY_EXISTS (36): Topic 'x' already exists."
        );
        assert_eq!(
            KafkaError::new(3, Some(String::new())).to_string(),
            "UNKNOWN_TOPIC_OR_PARTITION (3)"
        );
        assert_eq!(error_name(12345), "UNKNOWN_ERROR_CODE");
    }
}
