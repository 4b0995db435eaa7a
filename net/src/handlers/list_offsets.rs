//! ListOffsets: earliest, latest, by timestamp and max timestamp.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, RequestHeader};

use super::encode;
use crate::broker::{
    fan_out, Broker, ListedOffset, OffsetQueryEntry, PerShard, ShardRequest, ShardResponse,
};
use crate::errors::{code, leader_epoch_error};

pub const VERSIONS: (i16, i16) = (1, 9);

/// `isolation_level` of read_committed.
const READ_COMMITTED: i8 = 1;

pub async fn handle(
    broker: &Rc<Broker>,
    header: &RequestHeader,
    request: ListOffsetsRequest,
) -> Option<Vec<Bytes>> {
    let read_committed = request.isolation_level == READ_COMMITTED;
    let mut per_shard: PerShard<OffsetQueryEntry> = (0..broker.shards())
        .map(|_| (Vec::new(), Vec::new()))
        .collect();
    let mut results: Vec<Vec<ListedOffset>> = Vec::new();
    let metadata = broker.metadata();
    for (topic_index, topic) in request.topics.iter().enumerate() {
        let name = topic.name.0.as_str();
        let mut topic_results = Vec::new();
        for (partition_index, partition) in topic.partitions.iter().enumerate() {
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
                    if header.request_api_version >= 4 {
                        partition_response.leader_epoch = listed.leader_epoch;
                    }
                    partition_response
                })
                .collect();
            topic_response
        })
        .collect();
    Some(encode(&response, header.request_api_version))
}
