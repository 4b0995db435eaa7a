//! AddOffsetsToTxn (API key 25).

use kafka_protocol::messages::{AddOffsetsToTxnRequest, ApiKey};

use super::{check_version, DecodeError, Reader};

/// AddOffsetsToTxn versions Sluice decodes.
pub const ADD_OFFSETS_TO_TXN_VERSIONS: (i16, i16) = (0, 4);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 3;

/// Decodes an AddOffsetsToTxn request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<AddOffsetsToTxnRequest, DecodeError> {
    check_version(
        ApiKey::AddOffsetsToTxn,
        version,
        ADD_OFFSETS_TO_TXN_VERSIONS,
    )?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = AddOffsetsToTxnRequest::default();
    req.transactional_id = r.string_v(flexible)?;
    req.producer_id = r.i64()?.into();
    req.producer_epoch = r.i16()?;
    req.group_id = r.string_v(flexible)?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}
