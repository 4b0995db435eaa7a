//! DescribeTransactions (API key 65).

use kafka_protocol::messages::{ApiKey, DescribeTransactionsRequest};

use super::{check_version, DecodeError, Reader};

/// DescribeTransactions versions Sluice decodes; the only version is flexible.
pub const DESCRIBE_TRANSACTIONS_VERSIONS: (i16, i16) = (0, 0);

/// Decodes a DescribeTransactions request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<DescribeTransactionsRequest, DecodeError> {
    check_version(
        ApiKey::DescribeTransactions,
        version,
        DESCRIBE_TRANSACTIONS_VERSIONS,
    )?;
    let mut req = DescribeTransactionsRequest::default();
    req.transactional_ids = r.compact_array(|r| r.compact_string().map(Into::into))?;
    r.tagged_fields(&mut req.unknown_tagged_fields)?;
    Ok(req)
}
