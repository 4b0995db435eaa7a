//! DescribeConfigs (API key 32).

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest};

use super::{check_version, DecodeError, Reader};

/// DescribeConfigs versions Sluice decodes.
pub const DESCRIBE_CONFIGS_VERSIONS: (i16, i16) = (1, 4);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 4;

/// Decodes a DescribeConfigs request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<DescribeConfigsRequest, DecodeError> {
    check_version(ApiKey::DescribeConfigs, version, DESCRIBE_CONFIGS_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = DescribeConfigsRequest::default();
    req.resources = r.array_v(flexible, |r| resource(r, flexible))?;
    req.include_synonyms = r.bool()?;
    if version >= 3 {
        req.include_documentation = r.bool()?;
    }
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn resource(r: &mut Reader, flexible: bool) -> Result<DescribeConfigsResource, DecodeError> {
    let mut resource = DescribeConfigsResource::default();
    resource.resource_type = r.i8()?;
    resource.resource_name = r.string_v(flexible)?;
    // Null keys ask for every config of the resource.
    resource.configuration_keys = r.nullable_array_v(flexible, |r| r.string_v(flexible))?;
    r.tagged_fields_v(flexible, &mut resource.unknown_tagged_fields)?;
    Ok(resource)
}
