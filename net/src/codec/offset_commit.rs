//! OffsetCommit (API key 8): consumers recording their positions.

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetCommitRequest};

use super::{check_version, DecodeError, Reader};

/// OffsetCommit versions Sluice decodes.
pub const OFFSET_COMMIT_VERSIONS: (i16, i16) = (2, 9);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 8;

/// Decodes an OffsetCommit request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<OffsetCommitRequest, DecodeError> {
    check_version(ApiKey::OffsetCommit, version, OFFSET_COMMIT_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = OffsetCommitRequest::default();
    req.group_id = r.string_v(flexible)?;
    req.generation_id_or_member_epoch = r.i32()?;
    req.member_id = r.string_v(flexible)?;
    if version >= 7 {
        req.group_instance_id = r.nullable_string_v(flexible)?;
    }
    if version <= 4 {
        req.retention_time_ms = r.i64()?;
    }
    req.topics = r.array_v(flexible, |r| topic(r, version, flexible))?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic(
    r: &mut Reader,
    version: i16,
    flexible: bool,
) -> Result<OffsetCommitRequestTopic, DecodeError> {
    let mut topic = OffsetCommitRequestTopic::default();
    topic.name = r.string_v(flexible)?;
    topic.partitions = r.array_v(flexible, |r| partition(r, version, flexible))?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}

fn partition(
    r: &mut Reader,
    version: i16,
    flexible: bool,
) -> Result<OffsetCommitRequestPartition, DecodeError> {
    let mut partition = OffsetCommitRequestPartition::default();
    partition.partition_index = r.i32()?;
    partition.committed_offset = r.i64()?;
    if version >= 6 {
        partition.committed_leader_epoch = r.i32()?;
    }
    partition.committed_metadata = r.nullable_string_v(flexible)?;
    r.tagged_fields_v(flexible, &mut partition.unknown_tagged_fields)?;
    Ok(partition)
}
