//! Heartbeat (API key 12): classic consumer-group liveness.

use kafka_protocol::messages::{ApiKey, HeartbeatRequest};

use super::{check_version, DecodeError, Reader};

/// Heartbeat versions Sluice decodes.
pub const HEARTBEAT_VERSIONS: (i16, i16) = (0, 4);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 4;

/// Decodes a Heartbeat request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<HeartbeatRequest, DecodeError> {
    check_version(ApiKey::Heartbeat, version, HEARTBEAT_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = HeartbeatRequest::default();
    req.group_id = r.string_v(flexible)?;
    req.generation_id = r.i32()?;
    req.member_id = r.string_v(flexible)?;
    if version >= 3 {
        req.group_instance_id = r.nullable_string_v(flexible)?;
    }
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}
