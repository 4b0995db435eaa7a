//! DescribeAcls (API key 29).

use kafka_protocol::messages::{ApiKey, DescribeAclsRequest};

use super::{check_version, DecodeError, Reader};

/// DescribeAcls versions Sluice decodes: Kafka 4 dropped v0 (KIP-896).
pub const DESCRIBE_ACLS_VERSIONS: (i16, i16) = (1, 3);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 2;

/// Decodes a DescribeAcls request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<DescribeAclsRequest, DecodeError> {
    check_version(ApiKey::DescribeAcls, version, DESCRIBE_ACLS_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = DescribeAclsRequest::default();
    req.resource_type_filter = r.i8()?;
    req.resource_name_filter = r.nullable_string_v(flexible)?;
    req.pattern_type_filter = r.i8()?;
    req.principal_filter = r.nullable_string_v(flexible)?;
    req.host_filter = r.nullable_string_v(flexible)?;
    req.operation = r.i8()?;
    req.permission_type = r.i8()?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}
