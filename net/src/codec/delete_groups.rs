//! DeleteGroups (API key 42).

use kafka_protocol::messages::{ApiKey, DeleteGroupsRequest};

use super::{check_version, DecodeError, Reader};

/// DeleteGroups versions Sluice decodes.
pub const DELETE_GROUPS_VERSIONS: (i16, i16) = (0, 2);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 2;

/// Decodes a DeleteGroups request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<DeleteGroupsRequest, DecodeError> {
    check_version(ApiKey::DeleteGroups, version, DELETE_GROUPS_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = DeleteGroupsRequest::default();
    req.groups_names = r.array_v(flexible, |r| r.string_v(flexible))?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}
