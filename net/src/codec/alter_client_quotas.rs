//! AlterClientQuotas (API key 49, KIP-546).

use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::{AlterClientQuotasRequest, ApiKey};

use super::{check_version, DecodeError, Reader};

/// AlterClientQuotas versions Sluice decodes (Kafka 4's range).
pub const ALTER_CLIENT_QUOTAS_VERSIONS: (i16, i16) = (0, 1);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 1;

/// Decodes an AlterClientQuotas request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<AlterClientQuotasRequest, DecodeError> {
    check_version(
        ApiKey::AlterClientQuotas,
        version,
        ALTER_CLIENT_QUOTAS_VERSIONS,
    )?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = AlterClientQuotasRequest::default();
    req.entries = r.array_v(flexible, |r| {
        let mut entry = EntryData::default();
        entry.entity = r.array_v(flexible, |r| {
            let mut entity = EntityData::default();
            entity.entity_type = r.string_v(flexible)?;
            entity.entity_name = r.nullable_string_v(flexible)?;
            r.tagged_fields_v(flexible, &mut entity.unknown_tagged_fields)?;
            Ok(entity)
        })?;
        entry.ops = r.array_v(flexible, |r| {
            let mut op = OpData::default();
            op.key = r.string_v(flexible)?;
            op.value = r.f64()?;
            op.remove = r.bool()?;
            r.tagged_fields_v(flexible, &mut op.unknown_tagged_fields)?;
            Ok(op)
        })?;
        r.tagged_fields_v(flexible, &mut entry.unknown_tagged_fields)?;
        Ok(entry)
    })?;
    req.validate_only = r.bool()?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
    use kafka_protocol::messages::{AlterClientQuotasRequest, DescribeClientQuotasRequest};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::super::{decode_request, Request};

    #[test]
    fn both_requests_round_trip_at_every_version() {
        let mut entity = EntityData::default();
        entity.entity_type = StrBytes::from_static_str("user");
        entity.entity_name = None;
        let mut op = OpData::default();
        op.key = StrBytes::from_static_str("producer_byte_rate");
        op.value = 1024.0;
        let mut entry = EntryData::default();
        entry.entity = vec![entity];
        entry.ops = vec![op];
        let mut alter = AlterClientQuotasRequest::default();
        alter.entries = vec![entry];
        alter.validate_only = true;
        let mut component = ComponentData::default();
        component.entity_type = StrBytes::from_static_str("client-id");
        component.match_type = 0;
        component._match = Some(StrBytes::from_static_str("c"));
        let mut describe = DescribeClientQuotasRequest::default();
        describe.components = vec![component];
        describe.strict = true;
        for version in 0..=1 {
            let mut buffer = BytesMut::new();
            alter.encode(&mut buffer, version).unwrap();
            let bytes = buffer.split().freeze();
            for len in 0..bytes.len() {
                assert!(decode_request(49, version, bytes.slice(..len)).is_err());
            }
            let Ok(Request::AlterClientQuotas(decoded)) = decode_request(49, version, bytes) else {
                panic!("v{version} did not decode");
            };
            assert_eq!(decoded, alter);
            describe.encode(&mut buffer, version).unwrap();
            let bytes = buffer.split().freeze();
            for len in 0..bytes.len() {
                assert!(decode_request(48, version, bytes.slice(..len)).is_err());
            }
            let Ok(Request::DescribeClientQuotas(decoded)) = decode_request(48, version, bytes)
            else {
                panic!("v{version} did not decode");
            };
            assert_eq!(decoded, describe);
        }
    }
}
