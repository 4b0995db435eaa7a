//! ConsumerGroupDescribe (API key 69): describing KIP-848 consumer groups.

use kafka_protocol::messages::{ApiKey, ConsumerGroupDescribeRequest};

use super::{check_version, DecodeError, Reader};

/// ConsumerGroupDescribe versions Sluice decodes; every version is flexible.
pub const CONSUMER_GROUP_DESCRIBE_VERSIONS: (i16, i16) = (0, 1);

/// Decodes a ConsumerGroupDescribe request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<ConsumerGroupDescribeRequest, DecodeError> {
    check_version(
        ApiKey::ConsumerGroupDescribe,
        version,
        CONSUMER_GROUP_DESCRIBE_VERSIONS,
    )?;
    let mut req = ConsumerGroupDescribeRequest::default();
    req.group_ids = r.compact_array(|r| r.compact_string().map(Into::into))?;
    req.include_authorized_operations = r.bool()?;
    r.tagged_fields(&mut req.unknown_tagged_fields)?;
    Ok(req)
}
