//! DescribeTopicPartitions (API key 75, KIP-966): topics and their partitions, paged.

use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
use kafka_protocol::messages::{ApiKey, DescribeTopicPartitionsRequest};

use super::{check_version, DecodeError, Reader};

/// DescribeTopicPartitions versions Sluice decodes; the only version is flexible.
pub const DESCRIBE_TOPIC_PARTITIONS_VERSIONS: (i16, i16) = (0, 0);

/// Decodes a DescribeTopicPartitions request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<DescribeTopicPartitionsRequest, DecodeError> {
    check_version(
        ApiKey::DescribeTopicPartitions,
        version,
        DESCRIBE_TOPIC_PARTITIONS_VERSIONS,
    )?;
    let mut req = DescribeTopicPartitionsRequest::default();
    req.topics = r.compact_array(topic)?;
    req.response_partition_limit = r.i32()?;
    // A nullable struct is a marker byte first: Kafka reads any negative
    // marker as null and anything else as "a struct follows".
    req.cursor = if r.i8()? < 0 { None } else { Some(cursor(r)?) };
    r.tagged_fields(&mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic(r: &mut Reader) -> Result<TopicRequest, DecodeError> {
    let mut topic = TopicRequest::default();
    topic.name = r.compact_string()?.into();
    r.tagged_fields(&mut topic.unknown_tagged_fields)?;
    Ok(topic)
}

fn cursor(r: &mut Reader) -> Result<Cursor, DecodeError> {
    let mut cursor = Cursor::default();
    cursor.topic_name = r.compact_string()?.into();
    cursor.partition_index = r.i32()?;
    r.tagged_fields(&mut cursor.unknown_tagged_fields)?;
    Ok(cursor)
}
