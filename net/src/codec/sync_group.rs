//! SyncGroup (API key 14): distributing the leader's partition assignment.

use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{ApiKey, SyncGroupRequest};

use super::{check_version, DecodeError, Reader};

/// SyncGroup versions Sluice decodes.
pub const SYNC_GROUP_VERSIONS: (i16, i16) = (0, 5);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 4;

/// Decodes a SyncGroup request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<SyncGroupRequest, DecodeError> {
    check_version(ApiKey::SyncGroup, version, SYNC_GROUP_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = SyncGroupRequest::default();
    req.group_id = r.string_v(flexible)?;
    req.generation_id = r.i32()?;
    req.member_id = r.string_v(flexible)?;
    if version >= 3 {
        req.group_instance_id = r.nullable_string_v(flexible)?;
    }
    if version >= 5 {
        req.protocol_type = r.compact_nullable_string()?;
        req.protocol_name = r.compact_nullable_string()?;
    }
    req.assignments = r.array_v(flexible, |r| assignment(r, flexible))?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn assignment(r: &mut Reader, flexible: bool) -> Result<SyncGroupRequestAssignment, DecodeError> {
    let mut assignment = SyncGroupRequestAssignment::default();
    assignment.member_id = r.string_v(flexible)?;
    assignment.assignment = r.bytes_v(flexible)?;
    r.tagged_fields_v(flexible, &mut assignment.unknown_tagged_fields)?;
    Ok(assignment)
}
