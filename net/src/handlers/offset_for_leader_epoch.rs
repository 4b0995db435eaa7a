//! OffsetForLeaderEpoch (23): the end offset of a leader epoch in the
//! leader's log. Followers truncate by it before fetching from a new leader;
//! consumers (KIP-320) use it to detect that the log they read was truncated
//! under them.

use std::rc::Rc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, RequestHeader,
};

use super::encode;
use super::Session;
use crate::acl::Operation;
use crate::broker::{fan_out, Broker, PerShard, ShardRequest, ShardResponse};
use crate::errors::{code, leader_epoch_error};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (2, 4);

/// Kafka's answer when no epoch is known: UNDEFINED_EPOCH and
/// UNDEFINED_EPOCH_OFFSET.
const UNDEFINED: (i32, i64) = (-1, -1);

/// One partition's question to its owner shard: topic, partition, epoch.
pub type EpochQuery = (String, i32, i32);

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: OffsetForLeaderEpochRequest,
) -> Option<Pieces> {
    let metadata = broker.metadata();
    let mut per_shard: PerShard<EpochQuery> = (0..broker.shards())
        .map(|_| (Vec::new(), Vec::new()))
        .collect();
    let mut results: Vec<Vec<(i16, i32, i64)>> = Vec::with_capacity(request.topics.len());
    for (topic_index, topic) in request.topics.iter().enumerate() {
        let name = topic.topic.0.as_str();
        // A follower needs CLUSTER_ACTION on the cluster, a client DESCRIBE
        // on the topic.
        let allowed = if request.replica_id.0 >= 0 {
            session.may_on_cluster(broker, Operation::ClusterAction)
        } else {
            session.may_on_topic(broker, Operation::Describe, name)
        };
        let mut topic_results = Vec::with_capacity(topic.partitions.len());
        for (partition_index, partition) in topic.partitions.iter().enumerate() {
            let known = metadata.topics.get(name).is_some_and(|meta| {
                partition.partition >= 0 && partition.partition < meta.partitions
            });
            let epoch_error = leader_epoch_error(
                metadata.partition(name, partition.partition),
                partition.current_leader_epoch,
            );
            let result = match (known, epoch_error) {
                _ if !allowed => code::TOPIC_AUTHORIZATION_FAILED,
                (false, _) => code::UNKNOWN_TOPIC_OR_PARTITION,
                (true, Some(error_code)) => error_code,
                (true, None) => {
                    let shard = broker.owner(name, partition.partition);
                    let (positions, queries) = &mut per_shard[shard.0 as usize];
                    positions.push((topic_index, partition_index));
                    queries.push((
                        name.to_string(),
                        partition.partition,
                        partition.leader_epoch,
                    ));
                    code::NOT_LEADER_OR_FOLLOWER
                }
            };
            topic_results.push((result, UNDEFINED.0, UNDEFINED.1));
        }
        results.push(topic_results);
    }
    let answers = |answer| match answer {
        ShardResponse::EpochEnds(found) => Some(found),
        _ => None,
    };
    fan_out(
        broker,
        per_shard,
        ShardRequest::EpochEnds,
        answers,
        &mut results,
    )
    .await;
    let mut response = OffsetForLeaderEpochResponse::default();
    response.topics = request
        .topics
        .iter()
        .zip(results)
        .map(|(topic, topic_results)| {
            let mut topic_response = OffsetForLeaderTopicResult::default();
            topic_response.topic = topic.topic.clone();
            topic_response.partitions = topic
                .partitions
                .iter()
                .zip(topic_results)
                .map(|(partition, (error_code, leader_epoch, end_offset))| {
                    let mut answer = EpochEndOffset::default();
                    answer.partition = partition.partition;
                    answer.error_code = error_code;
                    answer.leader_epoch = leader_epoch;
                    answer.end_offset = end_offset;
                    answer
                })
                .collect();
            topic_response
        })
        .collect();
    Some(encode(&response, header.request_api_version))
}
