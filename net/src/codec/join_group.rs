//! JoinGroup (API key 11): the first step of the classic consumer-group rebalance.

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::{ApiKey, JoinGroupRequest};

use super::{check_version, DecodeError, Reader};

/// JoinGroup versions Sluice decodes.
pub const JOIN_GROUP_VERSIONS: (i16, i16) = (0, 9);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 6;

/// Decodes a JoinGroup request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<JoinGroupRequest, DecodeError> {
    check_version(ApiKey::JoinGroup, version, JOIN_GROUP_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = JoinGroupRequest::default();
    req.group_id = r.string_v(flexible)?;
    req.session_timeout_ms = r.i32()?;
    if version >= 1 {
        req.rebalance_timeout_ms = r.i32()?;
    }
    req.member_id = r.string_v(flexible)?;
    if version >= 5 {
        req.group_instance_id = r.nullable_string_v(flexible)?;
    }
    req.protocol_type = r.string_v(flexible)?;
    req.protocols = r.array_v(flexible, |r| protocol(r, flexible))?;
    if version >= 8 {
        req.reason = r.compact_nullable_string()?;
    }
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn protocol(r: &mut Reader, flexible: bool) -> Result<JoinGroupRequestProtocol, DecodeError> {
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = r.string_v(flexible)?;
    protocol.metadata = r.bytes_v(flexible)?;
    r.tagged_fields_v(flexible, &mut protocol.unknown_tagged_fields)?;
    Ok(protocol)
}
