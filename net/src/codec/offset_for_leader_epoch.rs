//! OffsetForLeaderEpoch (API key 23): log truncation after a leader change.

use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest};

use super::{check_version, DecodeError, Reader};

/// OffsetForLeaderEpoch versions Sluice decodes.
pub const OFFSET_FOR_LEADER_EPOCH_VERSIONS: (i16, i16) = (2, 4);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 4;

/// Decodes an OffsetForLeaderEpoch request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<OffsetForLeaderEpochRequest, DecodeError> {
    check_version(
        ApiKey::OffsetForLeaderEpoch,
        version,
        OFFSET_FOR_LEADER_EPOCH_VERSIONS,
    )?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = OffsetForLeaderEpochRequest::default();
    if version >= 3 {
        req.replica_id = r.i32()?.into();
    }
    req.topics = r.array_v(flexible, |r| topic(r, flexible))?;
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic(r: &mut Reader, flexible: bool) -> Result<OffsetForLeaderTopic, DecodeError> {
    let mut topic = OffsetForLeaderTopic::default();
    topic.topic = r.string_v(flexible)?;
    topic.partitions = r.array_v(flexible, |r| partition(r, flexible))?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}

fn partition(r: &mut Reader, flexible: bool) -> Result<OffsetForLeaderPartition, DecodeError> {
    let mut partition = OffsetForLeaderPartition::default();
    partition.partition = r.i32()?;
    partition.current_leader_epoch = r.i32()?;
    partition.leader_epoch = r.i32()?;
    r.tagged_fields_v(flexible, &mut partition.unknown_tagged_fields)?;
    Ok(partition)
}
