//! DeleteAcls (API key 31).

use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{ApiKey, DeleteAclsRequest};

use super::{check_version, DecodeError, Reader};

/// DeleteAcls versions Sluice decodes: Kafka 4 dropped v0 (KIP-896).
pub const DELETE_ACLS_VERSIONS: (i16, i16) = (1, 3);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 2;

/// Decodes a DeleteAcls request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<DeleteAclsRequest, DecodeError> {
    check_version(ApiKey::DeleteAcls, version, DELETE_ACLS_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = DeleteAclsRequest::default();
    req.filters = r.array_v(flexible, |r| filter(r, flexible))?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn filter(r: &mut Reader, flexible: bool) -> Result<DeleteAclsFilter, DecodeError> {
    let mut filter = DeleteAclsFilter::default();
    filter.resource_type_filter = r.i8()?;
    filter.resource_name_filter = r.nullable_string_v(flexible)?;
    filter.pattern_type_filter = r.i8()?;
    filter.principal_filter = r.nullable_string_v(flexible)?;
    filter.host_filter = r.nullable_string_v(flexible)?;
    filter.operation = r.i8()?;
    filter.permission_type = r.i8()?;
    r.tagged_fields_v(flexible, &mut filter.unknown_tagged_fields)?;
    Ok(filter)
}
