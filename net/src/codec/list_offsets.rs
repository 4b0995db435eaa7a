//! ListOffsets (API key 2): offset lookups by timestamp, earliest and latest.

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest};

use super::{check_version, DecodeError, Reader};

/// ListOffsets versions Sluice decodes (v0, with its offset-count field, is long obsolete).
pub const LIST_OFFSETS_VERSIONS: (i16, i16) = (1, 11);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 6;
/// First version with the timeout for tiered-storage lookups (KIP-1075).
const TIMEOUT_MIN: i16 = 10;

/// Decodes a ListOffsets request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<ListOffsetsRequest, DecodeError> {
    check_version(ApiKey::ListOffsets, version, LIST_OFFSETS_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = ListOffsetsRequest::default();
    req.replica_id = r.i32()?.into();
    if version >= 2 {
        req.isolation_level = r.i8()?;
    }
    req.topics = r.array_v(flexible, |r| topic(r, version, flexible))?;
    if version >= TIMEOUT_MIN {
        req.timeout_ms = r.i32()?;
    }
    r.tagged_fields_v(flexible, &mut req.unknown_tagged_fields)?;
    Ok(req)
}

fn topic(r: &mut Reader, version: i16, flexible: bool) -> Result<ListOffsetsTopic, DecodeError> {
    let mut topic = ListOffsetsTopic::default();
    topic.name = r.string_v(flexible)?;
    topic.partitions = r.array_v(flexible, |r| partition(r, version, flexible))?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}

fn partition(
    r: &mut Reader,
    version: i16,
    flexible: bool,
) -> Result<ListOffsetsPartition, DecodeError> {
    let mut partition = ListOffsetsPartition::default();
    partition.partition_index = r.i32()?;
    if version >= 4 {
        partition.current_leader_epoch = r.i32()?;
    }
    partition.timestamp = r.i64()?;
    r.tagged_fields_v(flexible, &mut partition.unknown_tagged_fields)?;
    Ok(partition)
}
