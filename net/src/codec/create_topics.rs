//! CreateTopics (API key 19).

use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest};

use super::{check_version, DecodeError, Reader};

/// CreateTopics versions Sluice decodes.
pub const CREATE_TOPICS_VERSIONS: (i16, i16) = (2, 7);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 5;

/// Decodes a CreateTopics request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<CreateTopicsRequest, DecodeError> {
    check_version(ApiKey::CreateTopics, version, CREATE_TOPICS_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = CreateTopicsRequest::default();
    req.topics = r.array_v(flexible, |r| topic(r, flexible))?;
    req.timeout_ms = r.i32()?;
    req.validate_only = r.bool()?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic(r: &mut Reader, flexible: bool) -> Result<CreatableTopic, DecodeError> {
    let mut topic = CreatableTopic::default();
    topic.name = r.string_v(flexible)?;
    topic.num_partitions = r.i32()?;
    topic.replication_factor = r.i16()?;
    topic.assignments = r.array_v(flexible, |r| assignment(r, flexible))?;
    topic.configs = r.array_v(flexible, |r| config(r, flexible))?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}

fn assignment(r: &mut Reader, flexible: bool) -> Result<CreatableReplicaAssignment, DecodeError> {
    let mut assignment = CreatableReplicaAssignment::default();
    assignment.partition_index = r.i32()?;
    assignment.broker_ids = r.array_v(flexible, |r| r.i32().map(Into::into))?;
    r.tagged_fields_v(flexible, &mut assignment.unknown_tagged_fields)?;
    Ok(assignment)
}

fn config(r: &mut Reader, flexible: bool) -> Result<CreatableTopicConfig, DecodeError> {
    let mut config = CreatableTopicConfig::default();
    config.name = r.string_v(flexible)?;
    config.value = r.nullable_string_v(flexible)?;
    r.tagged_fields_v(flexible, &mut config.unknown_tagged_fields)?;
    Ok(config)
}
