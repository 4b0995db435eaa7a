//! SaslHandshake (API key 17): choosing the SASL mechanism.

use kafka_protocol::messages::{ApiKey, SaslHandshakeRequest};

use super::{check_version, DecodeError, Reader};

/// SaslHandshake versions Sluice decodes; neither is flexible.
pub const SASL_HANDSHAKE_VERSIONS: (i16, i16) = (0, 1);

/// Decodes a SaslHandshake request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<SaslHandshakeRequest, DecodeError> {
    check_version(ApiKey::SaslHandshake, version, SASL_HANDSHAKE_VERSIONS)?;
    let mut req = SaslHandshakeRequest::default();
    req.mechanism = r.string()?;
    Ok(req)
}
