//! The glommio client's errors: what failed, against which broker, during
//! which API call. A broker's refusal carries the Kafka error code.

use std::fmt;
use std::io;
use std::rc::Rc;

use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::ApiKey;

use crate::codec::DecodeError;

/// Why a client operation failed. Cheap to clone (the I/O error is shared),
/// because one connection failure fails every request in flight on it.
#[derive(Clone, Debug)]
pub enum ClientError {
    /// The address did not resolve, or connecting failed.
    Connect {
        address: String,
        source: Rc<io::Error>,
    },
    /// Reading or writing the socket failed; the connection is closed.
    Io {
        address: String,
        source: Rc<io::Error>,
    },
    /// The connection was closed (by the peer, or after an earlier error).
    Closed { address: String },
    /// No response within `request.timeout.ms`; the connection is closed,
    /// since a late response could no longer be matched.
    Timeout { address: String, api: ApiKey },
    /// A response frame's length prefix was outside the accepted bounds.
    FrameLength { address: String, length: i64 },
    /// A response answered a different request than the one expected.
    CorrelationMismatch {
        address: String,
        expected: i32,
        received: i32,
    },
    /// A response could not be decoded.
    Decode {
        api: ApiKey,
        version: i16,
        error: DecodeError,
    },
    /// A request could not be encoded (a field its version lacks).
    Encode {
        api: ApiKey,
        version: i16,
        message: String,
    },
    /// The broker supports no version of an API in the client's range.
    UnsupportedApi { address: String, api: ApiKey },
    /// The broker answered with a Kafka error code.
    Kafka { code: i16, context: String },
    /// A fetched record batch was malformed.
    Records(String),
    /// A setting was out of range, or the caller asked for something unknown.
    Config(String),
}

impl ClientError {
    /// The Kafka error for `code` while doing `context`.
    pub fn kafka(code: i16, context: impl Into<String>) -> ClientError {
        ClientError::Kafka {
            code,
            context: context.into(),
        }
    }

    /// Whether refreshing metadata and trying again may succeed (a leader
    /// moved, a connection dropped), as opposed to a permanent refusal.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Kafka { code, .. } => kafka_error_is_retriable(*code),
            ClientError::Io { .. }
            | ClientError::Closed { .. }
            | ClientError::Timeout { .. }
            | ClientError::Connect { .. } => true,
            _ => false,
        }
    }
}

/// Kafka error codes after which a client refreshes metadata and retries
/// (Kafka's `RetriableException` subclasses that clients meet on produce
/// and fetch).
pub fn kafka_error_is_retriable(code: i16) -> bool {
    code.err().is_some_and(|error| error.is_retriable())
}

/// Kafka's name for an error code (e.g. `NotLeaderOrFollower`).
pub fn error_name(code: i16) -> String {
    match code.err() {
        None => "None".to_string(),
        Some(error) => error.to_string(),
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect { address, source } => {
                write!(f, "cannot connect to {address}: {source}")
            }
            ClientError::Io { address, source } => write!(f, "i/o error with {address}: {source}"),
            ClientError::Closed { address } => write!(f, "connection to {address} is closed"),
            ClientError::Timeout { address, api } => {
                write!(f, "{api:?} request to {address} timed out")
            }
            ClientError::FrameLength { address, length } => {
                write!(
                    f,
                    "response frame of {length} bytes from {address} is out of bounds"
                )
            }
            ClientError::CorrelationMismatch {
                address,
                expected,
                received,
            } => write!(
                f,
                "{address} answered correlation id {received} where {expected} was expected"
            ),
            ClientError::Decode {
                api,
                version,
                error,
            } => {
                write!(f, "cannot decode {api:?} v{version} response: {error}")
            }
            ClientError::Encode {
                api,
                version,
                message,
            } => {
                write!(f, "cannot encode {api:?} v{version} request: {message}")
            }
            ClientError::UnsupportedApi { address, api } => {
                write!(
                    f,
                    "{address} supports no {api:?} version this client speaks"
                )
            }
            ClientError::Kafka { code, context } => {
                write!(f, "{context}: broker error {} ({code})", error_name(*code))
            }
            ClientError::Records(message) => write!(f, "malformed records: {message}"),
            ClientError::Config(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for ClientError {}
