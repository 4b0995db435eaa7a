//! ListConfigResources (API key 74; ListClientMetricsResources before
//! KIP-1142): v0 asks for the client-metrics resources, v1 for the config
//! resources of the listed types (all of them when none is listed).

use kafka_protocol::messages::{ApiKey, ListConfigResourcesRequest};

use super::{check_version, DecodeError, Reader};

/// ListConfigResources versions Sluice decodes; every version is flexible.
pub const LIST_CONFIG_RESOURCES_VERSIONS: (i16, i16) = (0, 1);

/// First version with resource types.
const RESOURCE_TYPES_MIN: i16 = 1;

/// Decodes a ListConfigResources request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<ListConfigResourcesRequest, DecodeError> {
    check_version(
        ApiKey::ListConfigResources,
        version,
        LIST_CONFIG_RESOURCES_VERSIONS,
    )?;
    let mut req = ListConfigResourcesRequest::default();
    if version >= RESOURCE_TYPES_MIN {
        req.resource_types = r.compact_array(Reader::i8)?;
    }
    r.tagged_fields(&mut req.unknown_tagged_fields)?;
    Ok(req)
}
