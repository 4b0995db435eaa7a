//! DescribeProducers: the producers each partition remembers (id, epoch,
//! last sequence and timestamp, the open transaction's first offset), asked
//! of each partition's owner shard.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, ProducerId, RequestHeader,
};
use sluice_engine::ShardId;

use super::encode;
use super::Session;
use crate::acl::Operation;
use crate::broker::{Broker, PartitionKey, ShardRequest, ShardResponse};
use crate::errors::code;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 0);

/// A partition with its (topic index, partition index) in the request.
type Located = ((usize, usize), PartitionKey);

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: DescribeProducersRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let metadata = broker.metadata();
    // Each partition's answer, by (topic index, partition index).
    let mut answers: BTreeMap<(usize, usize), Result<Vec<sluice_engine::ProducerInfo>, i16>> =
        BTreeMap::new();
    let mut per_shard: BTreeMap<ShardId, Vec<Located>> = BTreeMap::new();
    for (topic_index, topic) in request.topics.iter().enumerate() {
        let known = metadata.topics.get(topic.name.as_str());
        let allowed = session.may_on_topic(broker, Operation::Read, topic.name.as_str());
        for (partition_index, partition) in topic.partition_indexes.iter().enumerate() {
            let position = (topic_index, partition_index);
            if !allowed {
                answers.insert(position, Err(code::TOPIC_AUTHORIZATION_FAILED));
            } else if known.is_some_and(|meta| *partition >= 0 && *partition < meta.partitions) {
                per_shard
                    .entry(broker.owner(topic.name.as_str(), *partition))
                    .or_default()
                    .push((position, (topic.name.to_string(), *partition)));
            } else {
                answers.insert(position, Err(code::UNKNOWN_TOPIC_OR_PARTITION));
            }
        }
    }
    for (shard, entries) in per_shard {
        let (positions, keys): (Vec<_>, Vec<_>) = entries.into_iter().unzip();
        match broker
            .mesh
            .call(shard, ShardRequest::DescribeProducers(keys))
            .await
        {
            Some(ShardResponse::Producers(results)) if results.len() == positions.len() => {
                for (position, result) in positions.into_iter().zip(results) {
                    answers.insert(position, result);
                }
            }
            _ => {
                for position in positions {
                    answers.insert(position, Err(code::NOT_LEADER_OR_FOLLOWER));
                }
            }
        }
    }
    let mut response = DescribeProducersResponse::default();
    response.topics = request
        .topics
        .iter()
        .enumerate()
        .map(|(topic_index, topic)| {
            let mut out = TopicResponse::default();
            out.name = topic.name.clone();
            out.partitions = topic
                .partition_indexes
                .iter()
                .enumerate()
                .map(|(partition_index, partition)| {
                    let mut entry = PartitionResponse::default();
                    entry.partition_index = *partition;
                    match answers
                        .remove(&(topic_index, partition_index))
                        .unwrap_or(Err(code::UNKNOWN_SERVER_ERROR))
                    {
                        Ok(producers) => {
                            entry.active_producers = producers
                                .into_iter()
                                .map(|info| {
                                    let mut state = ProducerState::default();
                                    state.producer_id = ProducerId(info.producer_id);
                                    state.producer_epoch = i32::from(info.producer_epoch);
                                    state.last_sequence = info.last_sequence;
                                    state.last_timestamp = info.last_timestamp;
                                    state.coordinator_epoch = info.coordinator_epoch;
                                    state.current_txn_start_offset = info.current_txn_start_offset;
                                    state
                                })
                                .collect();
                        }
                        Err(error_code) => entry.error_code = error_code,
                    }
                    entry
                })
                .collect();
            out
        })
        .collect();
    Some(encode(&response, version))
}
