//! SaslHandshake (17): the client names its SASL mechanism (KIP-43). After
//! v1 the mechanism's messages come in SaslAuthenticate requests; after v0
//! (clients before Kafka 1.0) as bare length-prefixed tokens.
//!
//! Before a connection on a SASL listener has authenticated, the server
//! passes the request to [`exchange`], which moves the connection's
//! [`Authenticator`]. Through the registry (an authenticated connection, or
//! a PLAINTEXT listener) it is answered ILLEGAL_SASL_STATE, as Kafka does.

use std::rc::Rc;

use kafka_protocol::messages::{
    ApiKey, RequestHeader, SaslHandshakeRequest, SaslHandshakeResponse,
};

use super::{encode, str_bytes, Answered};
use crate::broker::Broker;
use crate::errors::code;
use crate::sasl::session::{Handshake, SaslConfig};
use crate::sasl::Authenticator;
use crate::sasl::Mechanism;
use crate::server::clip;
use crate::wire::Pieces;
use crate::wire::ResponseFrame;

pub const VERSIONS: (i16, i16) = (0, 1);

fn response(error_code: i16, config: &SaslConfig) -> SaslHandshakeResponse {
    let mut response = SaslHandshakeResponse::default();
    response.error_code = error_code;
    response.mechanisms = config
        .enabled_mechanisms
        .iter()
        .map(|mechanism| str_bytes(mechanism.name()))
        .collect();
    response
}

pub async fn handle(
    _broker: &Rc<Broker>,
    header: &RequestHeader,
    _request: SaslHandshakeRequest,
) -> Option<Pieces> {
    let mut response = SaslHandshakeResponse::default();
    response.error_code = code::ILLEGAL_SASL_STATE;
    Some(encode(&response, header.request_api_version))
}

/// The answer to a KIP-368 re-authentication whose handshake names
/// another mechanism than the connection logged in with: Kafka's
/// UNSUPPORTED_SASL_MECHANISM, and the connection closes after it.
pub fn mechanism_changed(
    config: &SaslConfig,
    header: &RequestHeader,
    was: Mechanism,
    asked: &str,
) -> Answered {
    let version = header.request_api_version;
    let body = encode(&response(code::UNSUPPORTED_SASL_MECHANISM, config), version);
    Answered {
        frame: ResponseFrame::new(
            header.correlation_id,
            ApiKey::SaslHandshake.response_header_version(version),
            body,
        ),
        closing: Some(format!(
            "SASL mechanism '{}' requested by client is not supported for re-authentication of mechanism '{}'",
            clip(asked),
            was.name()
        )),
    }
}

/// A handshake on a connection that has not authenticated yet.
pub fn exchange(
    authenticator: &mut Authenticator,
    config: &SaslConfig,
    header: &RequestHeader,
    request: SaslHandshakeRequest,
) -> Answered {
    let version = header.request_api_version;
    let asked = request.mechanism.as_str();
    let (error_code, closing) = match authenticator.handshake(asked, version, config) {
        Handshake::Accepted => (code::NONE, None),
        Handshake::UnsupportedMechanism => (
            code::UNSUPPORTED_SASL_MECHANISM,
            Some(format!("SASL mechanism '{}' is not enabled", clip(asked))),
        ),
        Handshake::IllegalState => (
            code::ILLEGAL_SASL_STATE,
            Some("SaslHandshake out of sequence".to_string()),
        ),
    };
    let body = encode(&response(error_code, config), version);
    Answered {
        frame: ResponseFrame::new(
            header.correlation_id,
            ApiKey::SaslHandshake.response_header_version(version),
            body,
        ),
        closing,
    }
}
