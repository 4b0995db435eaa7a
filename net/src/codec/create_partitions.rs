//! CreatePartitions (API key 37).

use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::{ApiKey, CreatePartitionsRequest};

use super::{check_version, DecodeError, Reader};

/// CreatePartitions versions Sluice decodes.
pub const CREATE_PARTITIONS_VERSIONS: (i16, i16) = (0, 3);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 2;

/// Decodes a CreatePartitions request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<CreatePartitionsRequest, DecodeError> {
    check_version(
        ApiKey::CreatePartitions,
        version,
        CREATE_PARTITIONS_VERSIONS,
    )?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = CreatePartitionsRequest::default();
    req.topics = r.array_v(flexible, |r| topic(r, flexible))?;
    req.timeout_ms = r.i32()?;
    req.validate_only = r.bool()?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic(r: &mut Reader, flexible: bool) -> Result<CreatePartitionsTopic, DecodeError> {
    let mut topic = CreatePartitionsTopic::default();
    topic.name = r.string_v(flexible)?;
    topic.count = r.i32()?;
    // Null assignments let the broker place the new partitions itself.
    topic.assignments = r.nullable_array_v(flexible, |r| assignment(r, flexible))?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}

fn assignment(r: &mut Reader, flexible: bool) -> Result<CreatePartitionsAssignment, DecodeError> {
    let mut assignment = CreatePartitionsAssignment::default();
    assignment.broker_ids = r.array_v(flexible, |r| r.i32().map(Into::into))?;
    r.tagged_fields_v(flexible, &mut assignment.unknown_tagged_fields)?;
    Ok(assignment)
}
