//! InitProducerId (API key 22): idempotent and transactional producer registration.

use kafka_protocol::messages::{ApiKey, InitProducerIdRequest};

use super::{check_version, DecodeError, Reader};

/// InitProducerId versions Sluice decodes.
pub const INIT_PRODUCER_ID_VERSIONS: (i16, i16) = (0, 5);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 2;

/// Decodes an InitProducerId request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<InitProducerIdRequest, DecodeError> {
    check_version(ApiKey::InitProducerId, version, INIT_PRODUCER_ID_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = InitProducerIdRequest::default();
    // Null for idempotent-only producers, which have no transactional id.
    req.transactional_id = r.nullable_string_v(flexible)?;
    req.transaction_timeout_ms = r.i32()?;
    if version >= 3 {
        req.producer_id = r.i64()?.into();
        req.producer_epoch = r.i16()?;
    }
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}
