//! Fetch (API key 1): consumers and followers reading the log.

use kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchTopic, ForgottenTopic, ReplicaState,
};
use kafka_protocol::messages::{ApiKey, FetchRequest};

use super::{check_version, DecodeError, Reader};

/// Fetch versions Sluice decodes.
pub const FETCH_VERSIONS: (i16, i16) = (4, 18);

/// First version with the flexible (compact, tagged) encoding.
const FLEXIBLE_MIN: i16 = 12;

/// Tag of the request's `ClusterId` field (v12+).
const TAG_CLUSTER_ID: u32 = 0;

/// Tag of the request's `ReplicaState` field (v15+).
const TAG_REPLICA_STATE: u32 = 1;

/// Tag of a partition's `ReplicaDirectoryId` field, which only exists from v17.
const TAG_REPLICA_DIRECTORY_ID: u32 = 0;
const REPLICA_DIRECTORY_ID_MIN: i16 = 17;

/// Tag of a partition's `HighWatermark` field, which only exists from v18.
const TAG_HIGH_WATERMARK: u32 = 1;
const HIGH_WATERMARK_MIN: i16 = 18;

/// Decodes a Fetch request body.
pub fn decode(r: &mut Reader, version: i16) -> Result<FetchRequest, DecodeError> {
    check_version(ApiKey::Fetch, version, FETCH_VERSIONS)?;
    let flexible = version >= FLEXIBLE_MIN;
    let mut req = FetchRequest::default();
    // From v15 the replica id moved into the tagged ReplicaState field.
    if version <= 14 {
        req.replica_id = r.i32()?.into();
    }
    req.max_wait_ms = r.i32()?;
    req.min_bytes = r.i32()?;
    req.max_bytes = r.i32()?;
    req.isolation_level = r.i8()?;
    if version >= 7 {
        req.session_id = r.i32()?;
        req.session_epoch = r.i32()?;
    }
    req.topics = r.array_v(flexible, |r| topic(r, version, flexible))?;
    if version >= 7 {
        req.forgotten_topics_data = r.array_v(flexible, |r| forgotten(r, version, flexible))?;
    }
    if version >= 11 {
        req.rack_id = r.string_v(flexible)?;
    }
    if flexible {
        let (cluster_id, replica_state) = (&mut req.cluster_id, &mut req.replica_state);
        r.tagged_fields_with(&mut req.unknown_tagged_fields, |tag, field| match tag {
            TAG_CLUSTER_ID => {
                *cluster_id = field.compact_nullable_string()?;
                Ok(true)
            }
            TAG_REPLICA_STATE if version >= 15 => {
                *replica_state = replica(field)?;
                Ok(true)
            }
            TAG_REPLICA_STATE => Err(DecodeError::InvalidTag { tag, version }),
            _ => Ok(false),
        })?;
    }
    Ok(req)
}

/// The ReplicaState tagged struct; it only exists in flexible versions.
fn replica(r: &mut Reader) -> Result<ReplicaState, DecodeError> {
    let mut state = ReplicaState::default();
    state.replica_id = r.i32()?.into();
    state.replica_epoch = r.i64()?;
    r.tagged_fields(&mut state.unknown_tagged_fields)?;
    Ok(state)
}

fn topic(r: &mut Reader, version: i16, flexible: bool) -> Result<FetchTopic, DecodeError> {
    let mut topic = FetchTopic::default();
    // v13 replaced topic names with topic ids.
    if version <= 12 {
        topic.topic = r.string_v(flexible)?;
    } else {
        topic.topic_id = r.uuid()?;
    }
    topic.partitions = r.array_v(flexible, |r| partition(r, version, flexible))?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}

fn partition(r: &mut Reader, version: i16, flexible: bool) -> Result<FetchPartition, DecodeError> {
    let mut partition = FetchPartition::default();
    partition.partition = r.i32()?;
    if version >= 9 {
        partition.current_leader_epoch = r.i32()?;
    }
    partition.fetch_offset = r.i64()?;
    if version >= 12 {
        partition.last_fetched_epoch = r.i32()?;
    }
    if version >= 5 {
        partition.log_start_offset = r.i64()?;
    }
    partition.partition_max_bytes = r.i32()?;
    if flexible {
        // Below the version that defines it, a known tag is as malformed as
        // it would be to Kafka's parser.
        let (directory_id, high_watermark) = (
            &mut partition.replica_directory_id,
            &mut partition.high_watermark,
        );
        r.tagged_fields_with(
            &mut partition.unknown_tagged_fields,
            |tag, field| match tag {
                TAG_REPLICA_DIRECTORY_ID if version >= REPLICA_DIRECTORY_ID_MIN => {
                    *directory_id = field.uuid()?;
                    Ok(true)
                }
                TAG_HIGH_WATERMARK if version >= HIGH_WATERMARK_MIN => {
                    *high_watermark = field.i64()?;
                    Ok(true)
                }
                TAG_REPLICA_DIRECTORY_ID | TAG_HIGH_WATERMARK => {
                    Err(DecodeError::InvalidTag { tag, version })
                }
                _ => Ok(false),
            },
        )?;
    }
    Ok(partition)
}

fn forgotten(r: &mut Reader, version: i16, flexible: bool) -> Result<ForgottenTopic, DecodeError> {
    let mut topic = ForgottenTopic::default();
    if version <= 12 {
        topic.topic = r.string_v(flexible)?;
    } else {
        topic.topic_id = r.uuid()?;
    }
    topic.partitions = r.array_v(flexible, Reader::i32)?;
    r.tagged_fields_v(flexible, &mut topic.unknown_tagged_fields)?;
    Ok(topic)
}
