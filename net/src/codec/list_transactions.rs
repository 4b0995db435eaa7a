//! ListTransactions (API key 66).

use kafka_protocol::messages::{ApiKey, ListTransactionsRequest};

use super::{check_version, DecodeError, Reader};

/// ListTransactions versions Sluice decodes; every version is flexible.
pub const LIST_TRANSACTIONS_VERSIONS: (i16, i16) = (0, 2);

/// Decodes a ListTransactions request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<ListTransactionsRequest, DecodeError> {
    check_version(
        ApiKey::ListTransactions,
        version,
        LIST_TRANSACTIONS_VERSIONS,
    )?;
    let mut req = ListTransactionsRequest::default();
    req.state_filters = r.compact_array(Reader::compact_string)?;
    req.producer_id_filters = r.compact_array(|r| r.i64().map(Into::into))?;
    if version >= 1 {
        req.duration_filter = r.i64()?;
    }
    if version >= 2 {
        req.transactional_id_pattern = r.compact_nullable_string()?;
    }
    r.tagged_fields(&mut req.unknown_tagged_fields)?;
    Ok(req)
}
