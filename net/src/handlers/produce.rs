//! Produce: split per owner shard (one mesh message per shard), append
//! there, merge the answers in request order. acks=0 gets no response;
//! acks=all waits for the group-commit fdatasync.
//!
//! Transactional batches need the request's transactional id: without it
//! the whole request is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED
//! before anything is appended, as Kafka does. The version travels with each
//! entry because it decides how a transaction's first batch in a partition
//! is checked (KIP-890): below v12 the partition must already be in the
//! transaction, from v12 the leader adds it.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, RequestHeader};
use sluice_engine::{batch, ShardId};

use super::{encode, str_bytes};
use crate::broker::{
    futures_lite_join_all, Broker, PerShard, ProduceEntry, ProduceOutcome, ShardRequest,
    ShardResponse,
};
use crate::errors::code;

pub const VERSIONS: (i16, i16) = (3, 12);

/// Whether the first batch of a partition's records is transactional, as
/// Kafka decides it for the whole request (only the first batch of each
/// partition is looked at). Records too short for a header, or of another
/// magic, are left to validation.
fn first_batch_is_transactional(records: &[u8]) -> bool {
    if records.get(batch::MAGIC_AT).copied() != Some(batch::MAGIC_V2 as u8) {
        return false;
    }
    match records.get(batch::ATTRIBUTES_AT..batch::ATTRIBUTES_AT + 2) {
        Some(&[high, low]) => {
            i16::from_be_bytes([high, low]) & batch::attributes::TRANSACTIONAL != 0
        }
        _ => false,
    }
}

/// Kafka's answer to transactional records without a transactional id:
/// every partition TRANSACTIONAL_ID_AUTHORIZATION_FAILED, nothing appended;
/// with acks=0 there is no response, so the connection is closed.
fn refuse_without_transactional_id(header: &RequestHeader, request: &ProduceRequest) -> Vec<Bytes> {
    if request.acks == 0 {
        return Vec::new();
    }
    let mut response = ProduceResponse::default();
    response.responses = request
        .topic_data
        .iter()
        .map(|topic| {
            let mut topic_response = TopicProduceResponse::default();
            topic_response.name = topic.name.clone();
            topic_response.partition_responses = topic
                .partition_data
                .iter()
                .map(|partition| {
                    let mut partition_response = PartitionProduceResponse::default();
                    partition_response.index = partition.index;
                    partition_response.error_code = code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
                    partition_response.base_offset = -1;
                    partition_response.log_append_time_ms = -1;
                    if header.request_api_version >= 5 {
                        partition_response.log_start_offset = -1;
                    }
                    partition_response
                })
                .collect();
            topic_response
        })
        .collect();
    encode(&response, header.request_api_version)
}

pub async fn handle(
    broker: &Rc<Broker>,
    header: &RequestHeader,
    request: ProduceRequest,
) -> Option<Vec<Bytes>> {
    let transactional_records = request.topic_data.iter().any(|topic| {
        topic.partition_data.iter().any(|partition| {
            partition
                .records
                .as_deref()
                .is_some_and(first_batch_is_transactional)
        })
    });
    if transactional_records && request.transactional_id.is_none() {
        return Some(refuse_without_transactional_id(header, &request));
    }
    let acks = request.acks;
    let valid_acks = (-1..=1).contains(&acks);
    // Positions of every partition in the request, grouped by owner shard.
    let mut per_shard: PerShard<ProduceEntry> = (0..broker.shards())
        .map(|_| (Vec::new(), Vec::new()))
        .collect();
    let mut outcomes: Vec<Vec<ProduceOutcome>> = Vec::with_capacity(request.topic_data.len());
    for (topic_index, topic) in request.topic_data.iter().enumerate() {
        let name = topic.name.0.as_str();
        let mut topic_outcomes = Vec::with_capacity(topic.partition_data.len());
        for (partition_index, partition) in topic.partition_data.iter().enumerate() {
            let mut outcome = ProduceOutcome {
                base_offset: -1,
                log_append_time: -1,
                log_start_offset: -1,
                ..Default::default()
            };
            if !valid_acks {
                outcome.error_code = code::INVALID_REQUIRED_ACKS;
            } else if name == crate::groups::OFFSETS_TOPIC || name == crate::txn::TXN_TOPIC {
                // Only the coordinators write their records there, as Kafka
                // refuses client writes to internal topics.
                outcome.error_code = code::INVALID_TOPIC_EXCEPTION;
            } else {
                outcome.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
                let known =
                    broker.metadata().topics.get(name).is_some_and(|meta| {
                        partition.index >= 0 && partition.index < meta.partitions
                    });
                if known {
                    let shard = broker.owner(name, partition.index);
                    let (positions, entries) = &mut per_shard[shard.0 as usize];
                    positions.push((topic_index, partition_index));
                    entries.push(ProduceEntry {
                        topic: name.to_string(),
                        partition: partition.index,
                        records: partition.records.clone(),
                        transactional_id: request
                            .transactional_id
                            .as_ref()
                            .map(|id| id.to_string()),
                        version: header.request_api_version,
                    });
                }
            }
            topic_outcomes.push(outcome);
        }
        outcomes.push(topic_outcomes);
    }
    let mut calls = Vec::new();
    let mut call_positions = Vec::new();
    for (shard, (positions, entries)) in per_shard.into_iter().enumerate() {
        if entries.is_empty() {
            continue;
        }
        call_positions.push(positions);
        calls.push(broker.mesh.call(
            ShardId(shard as u16),
            ShardRequest::Produce {
                entries,
                acks,
                timeout_ms: request.timeout_ms,
            },
        ));
    }
    let answers = futures_lite_join_all(calls).await;
    for (positions, answer) in call_positions.into_iter().zip(answers) {
        match answer {
            Some(ShardResponse::Produce(results)) => {
                for ((topic_index, partition_index), result) in positions.into_iter().zip(results) {
                    outcomes[topic_index][partition_index] = result;
                }
            }
            _ => {
                for (topic_index, partition_index) in positions {
                    outcomes[topic_index][partition_index].error_code =
                        code::NOT_LEADER_OR_FOLLOWER;
                }
            }
        }
    }
    if acks == 0 {
        return None;
    }
    let mut response = ProduceResponse::default();
    response.responses = request
        .topic_data
        .iter()
        .zip(outcomes)
        .map(|(topic, topic_outcomes)| {
            let mut topic_response = TopicProduceResponse::default();
            topic_response.name = topic.name.clone();
            topic_response.partition_responses = topic
                .partition_data
                .iter()
                .zip(topic_outcomes)
                .map(|(partition, outcome)| {
                    let mut partition_response = PartitionProduceResponse::default();
                    partition_response.index = partition.index;
                    partition_response.error_code = outcome.error_code;
                    partition_response.base_offset = outcome.base_offset;
                    partition_response.log_append_time_ms = outcome.log_append_time;
                    if header.request_api_version >= 5 {
                        partition_response.log_start_offset = outcome.log_start_offset;
                    }
                    if header.request_api_version >= 8 {
                        partition_response.error_message =
                            outcome.error_message.as_deref().map(str_bytes);
                    }
                    partition_response
                })
                .collect();
            topic_response
        })
        .collect();
    Some(encode(&response, header.request_api_version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::txn_produce_error;
    use sluice_engine::batch::{build_batch, build_batch_with, BuildBatch};

    #[test]
    fn only_a_v2_transactional_first_batch_counts() {
        let transactional = build_batch_with(
            BuildBatch {
                producer_id: 7,
                producer_epoch: 0,
                base_sequence: 0,
                attributes: batch::attributes::TRANSACTIONAL,
                ..BuildBatch::default()
            },
            &[b"x"],
        );
        assert!(first_batch_is_transactional(&transactional));
        assert!(!first_batch_is_transactional(&build_batch(0, &[b"x"])));
        // Too short for the attributes, or another magic: left to validation.
        assert!(!first_batch_is_transactional(
            &transactional[..batch::ATTRIBUTES_AT + 1]
        ));
        assert!(!first_batch_is_transactional(&[]));
        let mut old_magic = transactional.clone();
        old_magic[batch::MAGIC_AT] = 1;
        assert!(!first_batch_is_transactional(&old_magic));
    }

    #[test]
    fn coordinator_answers_become_kafkas_produce_errors() {
        let error = |version, coordinator| txn_produce_error(version, coordinator).0;
        for version in [3, 9, 11, 12] {
            assert_eq!(
                error(version, code::PRODUCER_FENCED),
                code::INVALID_PRODUCER_EPOCH
            );
            for retriable in [
                code::COORDINATOR_LOAD_IN_PROGRESS,
                code::COORDINATOR_NOT_AVAILABLE,
                code::NOT_COORDINATOR,
            ] {
                assert_eq!(error(version, retriable), code::NOT_ENOUGH_REPLICAS);
            }
            assert_eq!(
                error(version, code::INVALID_PRODUCER_ID_MAPPING),
                code::INVALID_PRODUCER_ID_MAPPING
            );
        }
        assert_eq!(
            error(10, code::TRANSACTION_ABORTABLE),
            code::INVALID_TXN_STATE
        );
        assert_eq!(
            error(11, code::TRANSACTION_ABORTABLE),
            code::TRANSACTION_ABORTABLE
        );
        assert_eq!(
            error(11, code::CONCURRENT_TRANSACTIONS),
            code::NOT_ENOUGH_REPLICAS
        );
        assert_eq!(
            error(12, code::CONCURRENT_TRANSACTIONS),
            code::CONCURRENT_TRANSACTIONS
        );
    }
}
