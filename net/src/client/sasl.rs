//! SASL for the client's connections (KIP-43, KIP-152): right after the
//! ApiVersions exchange, a SaslHandshake v1 names the mechanism and
//! SaslAuthenticate requests carry its messages, one round trip for PLAIN
//! and two for SCRAM. The SCRAM messages come from
//! [`crate::sasl::scram_client`]; this file only frames them.
//!
//! The password is kept out of `Debug` output and error messages; a failure
//! names the user, the mechanism and the broker's error.

use std::fmt;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::connection::Connection;
use super::error::{ClientError, KafkaError};
use crate::sasl::scram_client::ScramClient;
use crate::sasl::Mechanism;

/// Kafka's UNSUPPORTED_SASL_MECHANISM error code.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;

/// Who to log in as, and how.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    pub mechanism: Mechanism,
    pub user: String,
    password: String,
}

impl SaslCredentials {
    pub fn new(mechanism: Mechanism, user: String, password: String) -> SaslCredentials {
        SaslCredentials {
            mechanism,
            user,
            password,
        }
    }

    pub fn password(&self) -> &str {
        &self.password
    }
}

/// The password stays out of logs and panic messages.
impl fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Why a login failed.
#[derive(Debug)]
pub enum AuthenticationError {
    /// The broker refused a step: a wrong password or unknown user
    /// (SASL_AUTHENTICATION_FAILED), a mechanism it does not enable
    /// (UNSUPPORTED_SASL_MECHANISM, with the ones it does), a listener
    /// without SASL (ILLEGAL_SASL_STATE).
    Refused {
        error: KafkaError,
        enabled: Vec<String>,
    },
    /// The broker lists no SaslHandshake v1 or SaslAuthenticate.
    NotOffered,
    /// The broker's SCRAM messages were wrong (see
    /// [`crate::sasl::scram_client::ScramClientFailure`]).
    Exchange(String),
}

impl fmt::Display for AuthenticationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthenticationError::Refused { error, enabled } if enabled.is_empty() => {
                write!(f, "{}", refusal_text(error))
            }
            AuthenticationError::Refused { error, enabled } => write!(
                f,
                "{} (the broker enables {})",
                refusal_text(error),
                enabled.join(", ")
            ),
            AuthenticationError::NotOffered => f.write_str(
                "the broker offers no SaslHandshake v1 and SaslAuthenticate (is it a Kafka broker \
                 older than 1.0?)",
            ),
            AuthenticationError::Exchange(reason) => f.write_str(reason),
        }
    }
}

/// `NAME: message`: the code is left out, the name says it.
fn refusal_text(error: &KafkaError) -> String {
    match &error.message {
        Some(message) => format!("{}: {message}", error.name()),
        None => error.name().to_string(),
    }
}

/// PLAIN's one message (RFC 4616): authorization id (empty: the user
/// itself), user, password, separated by NUL.
pub(crate) fn plain_message(credentials: &SaslCredentials) -> Vec<u8> {
    let password = credentials.password.as_bytes();
    let mut message = Vec::with_capacity(2 + credentials.user.len() + password.len());
    message.push(0);
    message.extend_from_slice(credentials.user.as_bytes());
    message.push(0);
    message.extend_from_slice(password);
    message
}

/// Logs `connection` in with `credentials`.
pub(super) fn authenticate(
    connection: &mut Connection,
    credentials: &SaslCredentials,
) -> Result<(), ClientError> {
    let failed =
        |connection: &Connection, reason: AuthenticationError| ClientError::Authentication {
            address: connection.address().to_string(),
            user: credentials.user.clone(),
            mechanism: credentials.mechanism,
            reason: Box::new(reason),
        };
    let (Ok(handshake_version), Ok(authenticate_version)) = (
        connection.version(ApiKey::SaslHandshake),
        connection.version(ApiKey::SaslAuthenticate),
    ) else {
        return Err(failed(connection, AuthenticationError::NotOffered));
    };
    let mut handshake = SaslHandshakeRequest::default();
    handshake.mechanism = StrBytes::from_static_str(credentials.mechanism.name());
    let response = connection.send(&handshake, handshake_version)?;
    if response.error_code != 0 {
        let enabled = if response.error_code == UNSUPPORTED_SASL_MECHANISM {
            response
                .mechanisms
                .iter()
                .map(|name| name.as_str().to_string())
                .collect()
        } else {
            Vec::new()
        };
        let error = KafkaError::new(response.error_code, None);
        return Err(failed(
            connection,
            AuthenticationError::Refused { error, enabled },
        ));
    }
    let step = |connection: &mut Connection, message: Vec<u8>| {
        let mut request = SaslAuthenticateRequest::default();
        request.auth_bytes = Bytes::from(message);
        let response: SaslAuthenticateResponse = connection.send(&request, authenticate_version)?;
        match KafkaError::check(
            response.error_code,
            response.error_message.map(|message| message.to_string()),
        ) {
            Ok(()) => Ok(response.auth_bytes),
            Err(error) => Err(failed(
                connection,
                AuthenticationError::Refused {
                    error,
                    enabled: Vec::new(),
                },
            )),
        }
    };
    let password = credentials.password.as_bytes();
    if !credentials.mechanism.is_scram() {
        step(connection, plain_message(credentials))?;
        return Ok(());
    }
    let exchange_failed = |connection: &Connection, failure: &dyn fmt::Display| {
        failed(
            connection,
            AuthenticationError::Exchange(failure.to_string()),
        )
    };
    let (client, first) = ScramClient::start(credentials.mechanism, &credentials.user)
        .map_err(|failure| exchange_failed(connection, &failure))?;
    let server_first = step(connection, first)?;
    let (awaiting, last) = client
        .answer(&server_first, password)
        .map_err(|failure| exchange_failed(connection, &failure))?;
    let server_final = step(connection, last)?;
    awaiting
        .verify(&server_final)
        .map_err(|failure| exchange_failed(connection, &failure))
}
