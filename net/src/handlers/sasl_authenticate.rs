//! SaslAuthenticate (36): one message of the chosen SASL mechanism each
//! way (KIP-152). A failure is SASL_AUTHENTICATION_FAILED with a message
//! that does not say whether the user exists, and the connection closes
//! after it.
//!
//! Before a connection on a SASL listener has authenticated, the server
//! passes the request to [`exchange`]. Through the registry (an
//! authenticated connection, or a PLAINTEXT listener) it is answered
//! ILLEGAL_SASL_STATE, as Kafka does: a re-authentication (KIP-368) starts
//! with a SaslHandshake, which the server routes to [`exchange`] again.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, RequestHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
};

use super::{encode, str_bytes, Answered};
use crate::broker::Broker;
use crate::errors::code;
use crate::sasl::session::{Authenticate, SaslConfig};
use crate::sasl::{AuthFailure, Authenticator};
use crate::server::clip;
use crate::wire::Pieces;
use crate::wire::ResponseFrame;

pub const VERSIONS: (i16, i16) = (0, 2);

/// The message of every wrong password and unknown user alike.
pub const AUTHENTICATION_FAILED_MESSAGE: &str =
    "Authentication failed: invalid user name or password";

/// The message of a re-authentication as someone else (Kafka's words).
pub const PRINCIPAL_CHANGED_MESSAGE: &str = "Cannot change principals during re-authentication";

fn response(
    error_code: i16,
    message: Option<&str>,
    auth_bytes: Vec<u8>,
) -> SaslAuthenticateResponse {
    let mut response = SaslAuthenticateResponse::default();
    response.error_code = error_code;
    response.error_message = message.map(str_bytes);
    response.auth_bytes = Bytes::from(auth_bytes);
    response
}

pub async fn handle(
    broker: &Rc<Broker>,
    session: &super::Session,
    header: &RequestHeader,
    _request: SaslAuthenticateRequest,
) -> Option<Pieces> {
    let message = if session.on_sasl_listener(broker) {
        "SaslAuthenticate after the connection authenticated; re-authentication is not supported"
    } else {
        "SASL is not enabled on this listener"
    };
    let body = response(code::ILLEGAL_SASL_STATE, Some(message), Vec::new());
    Some(encode(&body, header.request_api_version))
}

/// The log line of a failed step: the mechanism and the reason, which
/// carry no secret (see [`AuthFailure`]); the user name clipped.
pub fn failure_reason(mechanism: &str, failure: &AuthFailure) -> String {
    match failure {
        AuthFailure::BadCredentials { user } => format!(
            "{mechanism} authentication failed: invalid credentials for user '{}'",
            clip(user)
        ),
        other => format!("{mechanism} authentication failed: {other}"),
    }
}

/// The answer to a re-authentication that logged in as another principal:
/// SASL_AUTHENTICATION_FAILED, and the connection closes after it.
pub fn principal_changed(header: &RequestHeader, was: &str, now: &str) -> Answered {
    let version = header.request_api_version;
    let body = response(
        code::SASL_AUTHENTICATION_FAILED,
        Some(PRINCIPAL_CHANGED_MESSAGE),
        Vec::new(),
    );
    Answered {
        frame: ResponseFrame::new(
            header.correlation_id,
            ApiKey::SaslAuthenticate.response_header_version(version),
            encode(&body, version),
        ),
        closing: Some(format!(
            "re-authentication as User:{} on a connection of User:{}",
            clip(now),
            clip(was)
        )),
    }
}

/// A SaslAuthenticate on a connection that has not authenticated yet.
pub fn exchange(
    authenticator: &mut Authenticator,
    config: &SaslConfig,
    header: &RequestHeader,
    request: SaslAuthenticateRequest,
) -> Answered {
    let version = header.request_api_version;
    let mechanism = authenticator
        .mechanism()
        .map(|mechanism| mechanism.name())
        .unwrap_or("SASL");
    let (body, closing) = match authenticator.authenticate(&request.auth_bytes, config) {
        Authenticate::Continue(token) => (response(code::NONE, None, token), None),
        Authenticate::Done(token) => {
            let mut body = response(code::NONE, None, token);
            // v1+ (KIP-368): the session's lifetime, after which the
            // client authenticates again; 0 when sessions do not expire.
            if version >= 1 {
                let lifetime = authenticator.session_lifetime_ms(config.reauth_ms);
                body.session_lifetime_ms = i64::try_from(lifetime).unwrap_or(i64::MAX);
            }
            (body, None)
        }
        Authenticate::Failed(failure) => {
            // The client learns only that its credentials were refused, or
            // why its message was unusable; never which of user and
            // password was wrong.
            let message = match &failure {
                AuthFailure::BadCredentials { .. } => AUTHENTICATION_FAILED_MESSAGE.to_string(),
                other => format!("Authentication failed: {other}"),
            };
            (
                response(code::SASL_AUTHENTICATION_FAILED, Some(&message), Vec::new()),
                Some(failure_reason(mechanism, &failure)),
            )
        }
        Authenticate::IllegalState => (
            response(
                code::ILLEGAL_SASL_STATE,
                Some("SaslAuthenticate before a successful SaslHandshake"),
                Vec::new(),
            ),
            Some("SaslAuthenticate before a successful SaslHandshake".to_string()),
        ),
    };
    Answered {
        frame: ResponseFrame::new(
            header.correlation_id,
            ApiKey::SaslAuthenticate.response_header_version(version),
            encode(&body, version),
        ),
        closing,
    }
}
