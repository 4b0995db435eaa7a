//! DescribeGroups (API key 15).

use kafka_protocol::messages::{ApiKey, DescribeGroupsRequest};

use super::{check_version, DecodeError, Reader};

/// DescribeGroups versions Sluice decodes.
pub const DESCRIBE_GROUPS_VERSIONS: (i16, i16) = (0, 6);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 5;

/// Decodes a DescribeGroups request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<DescribeGroupsRequest, DecodeError> {
    check_version(ApiKey::DescribeGroups, version, DESCRIBE_GROUPS_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = DescribeGroupsRequest::default();
    req.groups = r.array_v(flexible, |r| r.string_v(flexible))?;
    if version >= 3 {
        req.include_authorized_operations = r.bool()?;
    }
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}
