//! DescribeLogDirs (API key 35).

use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::{ApiKey, DescribeLogDirsRequest};

use super::{check_version, DecodeError, Reader};

/// DescribeLogDirs versions Sluice decodes.
pub const DESCRIBE_LOG_DIRS_VERSIONS: (i16, i16) = (1, 4);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 2;

/// Decodes a DescribeLogDirs request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<DescribeLogDirsRequest, DecodeError> {
    check_version(ApiKey::DescribeLogDirs, version, DESCRIBE_LOG_DIRS_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = DescribeLogDirsRequest::default();
    // Null topics ask about every partition on the broker.
    req.topics = r.nullable_array_v(flexible, |r| topic(r, flexible))?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic(r: &mut Reader, flexible: bool) -> Result<DescribableLogDirTopic, DecodeError> {
    let mut topic = DescribableLogDirTopic::default();
    topic.topic = r.string_v(flexible)?;
    topic.partitions = r.array_v(flexible, Reader::i32)?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}
