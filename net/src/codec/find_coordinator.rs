//! FindCoordinator (API key 10): locating group and transaction coordinators.

use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest};

use super::{check_version, DecodeError, Reader};

/// FindCoordinator versions Sluice decodes (v6, KIP-932, only adds key
/// type 2, share groups, to v5's layout).
pub const FIND_COORDINATOR_VERSIONS: (i16, i16) = (0, 6);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 3;

/// Decodes a FindCoordinator request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<FindCoordinatorRequest, DecodeError> {
    check_version(ApiKey::FindCoordinator, version, FIND_COORDINATOR_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = FindCoordinatorRequest::default();
    // v4 replaced the single key with a batch of keys.
    if version <= 3 {
        req.key = r.string_v(flexible)?;
    }
    if version >= 1 {
        req.key_type = r.i8()?;
    }
    if version >= 4 {
        req.coordinator_keys = r.compact_array(Reader::compact_string)?;
    }
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}
