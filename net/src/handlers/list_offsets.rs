//! ListOffsets: earliest, latest, by timestamp and max timestamp.
//!
//! The special (negative) timestamps, each from the version Kafka accepts
//! it at: -1 latest and -2 earliest (v1), -3 max timestamp (v7), -4
//! earliest local (v8), -5 latest tiered (v9), -6 earliest pending upload
//! (v11). Sluice has no tiered storage, so it answers the last three as a
//! Kafka broker without remote storage does: earliest local is the log
//! start, and the other two are "none" (offset -1, leader epoch -1). A
//! timestamp the request's version may not use, or an unknown negative
//! one, is UNSUPPORTED_VERSION for its partition, as Kafka answers. v10
//! adds a timeout for remote lookups (KIP-1075), which Sluice never makes.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, RequestHeader};

use super::encode;
use super::Session;
use crate::acl::Operation;
use crate::broker::{
    fan_out, Broker, ListedOffset, OffsetQueryEntry, PerShard, ShardRequest, ShardResponse,
};
use crate::broker::{
    EARLIEST_LOCAL_TIMESTAMP, EARLIEST_PENDING_UPLOAD_TIMESTAMP, EARLIEST_TIMESTAMP,
    LATEST_TIERED_TIMESTAMP, LATEST_TIMESTAMP, MAX_TIMESTAMP,
};
use crate::errors::{code, leader_epoch_error};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (1, 11);

/// The newest version the response encoder knows: v11 only allows a new
/// timestamp in the request, and its response is v10's byte for byte.
const RESPONSE_ENCODING_MAX: i16 = 10;

/// The first version that may ask for a special (negative) timestamp
/// (Kafka's `timestampMinSupportedVersion`); `None` for one Kafka does not
/// define.
fn special_timestamp_version(timestamp: i64) -> Option<i16> {
    match timestamp {
        LATEST_TIMESTAMP | EARLIEST_TIMESTAMP => Some(1),
        MAX_TIMESTAMP => Some(7),
        EARLIEST_LOCAL_TIMESTAMP => Some(8),
        LATEST_TIERED_TIMESTAMP => Some(9),
        EARLIEST_PENDING_UPLOAD_TIMESTAMP => Some(11),
        _ => None,
    }
}

/// `isolation_level` of read_committed.
const READ_COMMITTED: i8 = 1;

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: ListOffsetsRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let read_committed = request.isolation_level == READ_COMMITTED;
    let mut per_shard: PerShard<OffsetQueryEntry> = (0..broker.shards())
        .map(|_| (Vec::new(), Vec::new()))
        .collect();
    let mut results: Vec<Vec<ListedOffset>> = Vec::new();
    let metadata = broker.metadata();
    for (topic_index, topic) in request.topics.iter().enumerate() {
        let name = topic.name.0.as_str();
        let allowed = session.may_on_topic(broker, Operation::Describe, name);
        let mut topic_results = Vec::new();
        for (partition_index, partition) in topic.partitions.iter().enumerate() {
            if !allowed {
                topic_results.push(ListedOffset::failed(code::TOPIC_AUTHORIZATION_FAILED));
                continue;
            }
            let timestamp_supported = partition.timestamp >= 0
                || special_timestamp_version(partition.timestamp)
                    .is_some_and(|first| version >= first);
            if !timestamp_supported {
                topic_results.push(ListedOffset::failed(code::UNSUPPORTED_VERSION));
                continue;
            }
            topic_results.push(ListedOffset::failed(code::UNKNOWN_TOPIC_OR_PARTITION));
            let known = metadata.topics.get(name).is_some_and(|meta| {
                partition.partition_index >= 0 && partition.partition_index < meta.partitions
            });
            let epoch_error = leader_epoch_error(
                metadata.partition(name, partition.partition_index),
                partition.current_leader_epoch,
            );
            if let (true, Some(error_code)) = (known, epoch_error) {
                if let Some(result) = topic_results.last_mut() {
                    *result = ListedOffset::failed(error_code);
                }
            } else if known {
                let shard = broker.owner(name, partition.partition_index);
                let (positions, queries) = &mut per_shard[shard.0 as usize];
                positions.push((topic_index, partition_index));
                queries.push((
                    name.to_string(),
                    partition.partition_index,
                    partition.timestamp,
                    read_committed,
                ));
            }
        }
        results.push(topic_results);
    }
    let answers = |answer| match answer {
        ShardResponse::ListOffsets(found) => Some(found),
        _ => None,
    };
    fan_out(
        broker,
        per_shard,
        ShardRequest::ListOffsets,
        answers,
        &mut results,
    )
    .await;
    let mut response = ListOffsetsResponse::default();
    response.topics = request
        .topics
        .iter()
        .zip(results)
        .map(|(topic, topic_results)| {
            let mut topic_response = ListOffsetsTopicResponse::default();
            topic_response.name = topic.name.clone();
            topic_response.partitions = topic
                .partitions
                .iter()
                .zip(topic_results)
                .map(|(partition, listed): (_, ListedOffset)| {
                    let mut partition_response = ListOffsetsPartitionResponse::default();
                    partition_response.partition_index = partition.partition_index;
                    partition_response.error_code = listed.error_code;
                    partition_response.timestamp = listed.timestamp;
                    partition_response.offset = listed.offset;
                    if version >= 4 {
                        partition_response.leader_epoch = listed.leader_epoch;
                    }
                    partition_response
                })
                .collect();
            topic_response
        })
        .collect();
    Some(encode(&response, version.min(RESPONSE_ENCODING_MAX)))
}
