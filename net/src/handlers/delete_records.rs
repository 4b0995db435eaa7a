//! DeleteRecords: moves partitions' log start forward, on their leaders.
//! Followers move theirs with the leader's (see replication), and whole
//! segments below the new start go with the next retention pass.

use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, RequestHeader};

use super::encode;
use super::Session;
use crate::acl::Operation;
use crate::broker::{fan_out, Broker, DeleteRecordsEntry, PerShard, ShardRequest, ShardResponse};
use crate::errors::code;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = crate::codec::delete_records::DELETE_RECORDS_VERSIONS;

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: DeleteRecordsRequest,
) -> Option<Pieces> {
    let mut per_shard: PerShard<DeleteRecordsEntry> = (0..broker.shards())
        .map(|_| (Vec::new(), Vec::new()))
        .collect();
    let mut results: Vec<Vec<(i16, i64)>> = Vec::new();
    let metadata = broker.metadata();
    for (topic_index, topic) in request.topics.iter().enumerate() {
        let name = topic.name.0.as_str();
        let allowed = session.may_on_topic(broker, Operation::Delete, name);
        let described = metadata.topics.get(name);
        // Kafka keeps a compacted topic's records for its keys' sake.
        let compact_only = described
            .and_then(|meta| meta.configs.get("cleanup.policy"))
            .is_some_and(|policy| !policy.split(',').any(|part| part.trim() == "delete"));
        let mut topic_results = Vec::new();
        for (partition_index, partition) in topic.partitions.iter().enumerate() {
            let known = described.is_some_and(|meta| {
                partition.partition_index >= 0 && partition.partition_index < meta.partitions
            });
            if !allowed {
                topic_results.push((code::TOPIC_AUTHORIZATION_FAILED, -1));
            } else if !known {
                topic_results.push((code::UNKNOWN_TOPIC_OR_PARTITION, -1));
            } else if compact_only {
                topic_results.push((code::POLICY_VIOLATION, -1));
            } else if partition.offset < -1 {
                topic_results.push((code::OFFSET_OUT_OF_RANGE, -1));
            } else {
                topic_results.push((code::UNKNOWN_TOPIC_OR_PARTITION, -1));
                let shard = broker.owner(name, partition.partition_index);
                let (positions, entries) = &mut per_shard[shard.0 as usize];
                positions.push((topic_index, partition_index));
                entries.push((
                    name.to_string(),
                    partition.partition_index,
                    partition.offset,
                ));
            }
        }
        results.push(topic_results);
    }
    let answers = |answer| match answer {
        ShardResponse::DeleteRecords(found) => Some(found),
        _ => None,
    };
    fan_out(
        broker,
        per_shard,
        ShardRequest::DeleteRecords,
        answers,
        &mut results,
    )
    .await;
    let mut response = DeleteRecordsResponse::default();
    response.topics = request
        .topics
        .iter()
        .zip(results)
        .map(|(topic, topic_results)| {
            let mut topic_response = DeleteRecordsTopicResult::default();
            topic_response.name = topic.name.clone();
            topic_response.partitions = topic
                .partitions
                .iter()
                .zip(topic_results)
                .map(|(partition, (error_code, low_watermark))| {
                    let mut result = DeleteRecordsPartitionResult::default();
                    result.partition_index = partition.partition_index;
                    result.error_code = error_code;
                    result.low_watermark = low_watermark;
                    result
                })
                .collect();
            topic_response
        })
        .collect();
    Some(encode(&response, header.request_api_version))
}
