//! EndTxn (API key 26): committing or aborting a transaction.

use kafka_protocol::messages::{ApiKey, EndTxnRequest};

use super::{check_version, DecodeError, Reader};

/// EndTxn versions Sluice decodes.
pub const END_TXN_VERSIONS: (i16, i16) = (0, 5);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 3;

/// Decodes an EndTxn request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<EndTxnRequest, DecodeError> {
    check_version(ApiKey::EndTxn, version, END_TXN_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = EndTxnRequest::default();
    req.transactional_id = r.string_v(flexible)?;
    req.producer_id = r.i64()?.into();
    req.producer_epoch = r.i16()?;
    req.committed = r.bool()?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}
