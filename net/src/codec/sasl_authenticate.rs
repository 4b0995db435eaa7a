//! SaslAuthenticate (API key 36): SASL tokens wrapped in Kafka requests.

use kafka_protocol::messages::{ApiKey, SaslAuthenticateRequest};

use super::{check_version, DecodeError, Reader};

/// SaslAuthenticate versions Sluice decodes.
pub const SASL_AUTHENTICATE_VERSIONS: (i16, i16) = (0, 2);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 2;

/// Decodes a SaslAuthenticate request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<SaslAuthenticateRequest, DecodeError> {
    check_version(
        ApiKey::SaslAuthenticate,
        version,
        SASL_AUTHENTICATE_VERSIONS,
    )?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = SaslAuthenticateRequest::default();
    req.auth_bytes = r.bytes_v(flexible)?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}
