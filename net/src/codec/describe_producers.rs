//! DescribeProducers (API key 61).

use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::{ApiKey, DescribeProducersRequest};

use super::{check_version, DecodeError, Reader};

/// DescribeProducers versions Sluice decodes; the only version is flexible.
pub const DESCRIBE_PRODUCERS_VERSIONS: (i16, i16) = (0, 0);

/// Decodes a DescribeProducers request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<DescribeProducersRequest, DecodeError> {
    check_version(
        ApiKey::DescribeProducers,
        version,
        DESCRIBE_PRODUCERS_VERSIONS,
    )?;
    let mut req = DescribeProducersRequest::default();
    req.topics = r.compact_array(topic)?;
    r.tagged_fields(&mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic(r: &mut Reader) -> Result<TopicRequest, DecodeError> {
    let mut topic = TopicRequest::default();
    topic.name = r.compact_string()?.into();
    topic.partition_indexes = r.compact_array(Reader::i32)?;
    r.tagged_fields(&mut topic.unknown_tagged_fields)?;
    Ok(topic)
}
