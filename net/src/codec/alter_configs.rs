//! AlterConfigs (API key 33): the legacy, whole-set config change that
//! librdkafka's `rd_kafka_AlterConfigs` (and so the `rdkafka` crate) sends.

use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{AlterConfigsRequest, ApiKey};

use super::{check_version, DecodeError, Reader};

/// AlterConfigs versions Sluice decodes.
pub const ALTER_CONFIGS_VERSIONS: (i16, i16) = (0, 2);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 2;

/// Decodes an AlterConfigs request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<AlterConfigsRequest, DecodeError> {
    check_version(ApiKey::AlterConfigs, version, ALTER_CONFIGS_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = AlterConfigsRequest::default();
    req.resources = r.array_v(flexible, |r| resource(r, flexible))?;
    req.validate_only = r.bool()?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn resource(r: &mut Reader, flexible: bool) -> Result<AlterConfigsResource, DecodeError> {
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = r.i8()?;
    resource.resource_name = r.string_v(flexible)?;
    resource.configs = r.array_v(flexible, |r| config(r, flexible))?;
    r.tagged_fields_v(flexible, &mut resource.unknown_tagged_fields)?;
    Ok(resource)
}

fn config(r: &mut Reader, flexible: bool) -> Result<AlterableConfig, DecodeError> {
    let mut config = AlterableConfig::default();
    config.name = r.string_v(flexible)?;
    config.value = r.nullable_string_v(flexible)?;
    r.tagged_fields_v(flexible, &mut config.unknown_tagged_fields)?;
    Ok(config)
}
