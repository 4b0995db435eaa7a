//! DescribeQuorum (API key 55): the metadata quorum's leader and voters.

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{ApiKey, DescribeQuorumRequest};

use super::{check_version, DecodeError, Reader};

/// DescribeQuorum versions Sluice decodes; every version is flexible.
pub const DESCRIBE_QUORUM_VERSIONS: (i16, i16) = (0, 2);

/// Decodes a DescribeQuorum request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<DescribeQuorumRequest, DecodeError> {
    check_version(ApiKey::DescribeQuorum, version, DESCRIBE_QUORUM_VERSIONS)?;
    let mut req = DescribeQuorumRequest::default();
    req.topics = r.compact_array(topic)?;
    r.tagged_fields(&mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic(r: &mut Reader) -> Result<TopicData, DecodeError> {
    let mut topic = TopicData::default();
    topic.topic_name = r.compact_string()?.into();
    topic.partitions = r.compact_array(partition)?;
    r.tagged_fields(&mut topic.unknown_tagged_fields)?;
    Ok(topic)
}

fn partition(r: &mut Reader) -> Result<PartitionData, DecodeError> {
    let mut partition = PartitionData::default();
    partition.partition_index = r.i32()?;
    r.tagged_fields(&mut partition.unknown_tagged_fields)?;
    Ok(partition)
}
