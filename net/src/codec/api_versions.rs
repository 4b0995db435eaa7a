//! ApiVersions (API key 18): the first request most clients send, before they know what the
//! broker supports.

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};

use super::{check_version, DecodeError, Reader};

/// ApiVersions versions Sluice decodes.
pub const API_VERSIONS_VERSIONS: (i16, i16) = (0, 4);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 3;

/// Decodes an ApiVersions request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<ApiVersionsRequest, DecodeError> {
    check_version(ApiKey::ApiVersions, version, API_VERSIONS_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = ApiVersionsRequest::default();
    // Versions 0-2 have an empty body; the client software fields arrived with v3.
    if version >= 3 {
        req.client_software_name = r.compact_string()?;
        req.client_software_version = r.compact_string()?;
    }
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}
