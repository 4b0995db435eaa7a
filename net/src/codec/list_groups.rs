//! ListGroups (API key 16).

use kafka_protocol::messages::{ApiKey, ListGroupsRequest};

use super::{check_version, DecodeError, Reader};

/// ListGroups versions Sluice decodes.
pub const LIST_GROUPS_VERSIONS: (i16, i16) = (0, 5);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 3;

/// Decodes a ListGroups request body (empty before v4).
pub fn decode(r: &mut Reader, version: i16) -> Result<ListGroupsRequest, DecodeError> {
    check_version(ApiKey::ListGroups, version, LIST_GROUPS_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = ListGroupsRequest::default();
    if version >= 4 {
        req.states_filter = r.compact_array(Reader::compact_string)?;
    }
    if version >= 5 {
        req.types_filter = r.compact_array(Reader::compact_string)?;
    }
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}
