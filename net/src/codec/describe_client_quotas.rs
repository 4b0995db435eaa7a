//! DescribeClientQuotas (API key 48, KIP-546).

use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{ApiKey, DescribeClientQuotasRequest};

use super::{check_version, DecodeError, Reader};

/// DescribeClientQuotas versions Sluice decodes (Kafka 4's range).
pub const DESCRIBE_CLIENT_QUOTAS_VERSIONS: (i16, i16) = (0, 1);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 1;

/// Decodes a DescribeClientQuotas request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<DescribeClientQuotasRequest, DecodeError> {
    check_version(
        ApiKey::DescribeClientQuotas,
        version,
        DESCRIBE_CLIENT_QUOTAS_VERSIONS,
    )?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = DescribeClientQuotasRequest::default();
    req.components = r.array_v(flexible, |r| {
        let mut component = ComponentData::default();
        component.entity_type = r.string_v(flexible)?;
        component.match_type = r.i8()?;
        component._match = r.nullable_string_v(flexible)?;
        r.tagged_fields_v(flexible, &mut component.unknown_tagged_fields)?;
        Ok(component)
    })?;
    req.strict = r.bool()?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}
