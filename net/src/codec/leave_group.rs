//! LeaveGroup (API key 13).

use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::{ApiKey, LeaveGroupRequest};

use super::{check_version, DecodeError, Reader};

/// LeaveGroup versions Sluice decodes.
pub const LEAVE_GROUP_VERSIONS: (i16, i16) = (0, 5);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 4;

/// Decodes a LeaveGroup request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<LeaveGroupRequest, DecodeError> {
    check_version(ApiKey::LeaveGroup, version, LEAVE_GROUP_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = LeaveGroupRequest::default();
    req.group_id = r.string_v(flexible)?;
    // v3 replaced the single member id with a batch of members.
    if version <= 2 {
        req.member_id = r.string()?;
    } else {
        req.members = r.array_v(flexible, |r| member(r, version, flexible))?;
    }
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn member(r: &mut Reader, version: i16, flexible: bool) -> Result<MemberIdentity, DecodeError> {
    let mut member = MemberIdentity::default();
    member.member_id = r.string_v(flexible)?;
    member.group_instance_id = r.nullable_string_v(flexible)?;
    if version >= 5 {
        member.reason = r.compact_nullable_string()?;
    }
    r.tagged_fields_v(flexible, &mut member.unknown_tagged_fields)?;
    Ok(member)
}
