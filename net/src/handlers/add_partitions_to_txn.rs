//! AddPartitionsToTxn: a producer adds partitions to its transaction before
//! producing to them. v0–v3 carry one transaction; v4+ (broker to broker in
//! Kafka) carry many and may be `verify_only` (KIP-890). Each transaction
//! goes to its coordinator shard.

use std::rc::Rc;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ProducerId, RequestHeader,
    TransactionalId,
};

use super::encode;
use super::Session;
use crate::acl::Operation;
use crate::broker::Broker;
use crate::errors::code;
use crate::txn::{self, TxnRequest, TxnResponse};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 5);

/// First version with many transactions per request.
const BATCHED_VERSION: i16 = 4;
/// Versions below this know INVALID_PRODUCER_EPOCH, not PRODUCER_FENCED.
pub const PRODUCER_FENCED_VERSION: i16 = 2;

/// Kafka's answer to an old client for a fenced producer.
pub fn fenced_for(version: i16, error_code: i16) -> i16 {
    if error_code == code::PRODUCER_FENCED && version < PRODUCER_FENCED_VERSION {
        code::INVALID_PRODUCER_EPOCH
    } else {
        error_code
    }
}

/// The producer a transaction belongs to, as the request names it.
#[derive(Clone, Copy)]
struct Producer {
    id: ProducerId,
    epoch: i16,
}

/// Adds (or verifies) one transaction's partitions; errors per partition
/// in the request's order.
async fn add_one(
    broker: &Rc<Broker>,
    session: &Session,
    version: i16,
    transactional_id: &TransactionalId,
    producer: Producer,
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let metadata = broker.metadata();
    let mut partitions = Vec::new();
    let mut unknown = false;
    let mut errors: Vec<Vec<i16>> = Vec::with_capacity(topics.len());
    // Kafka's checks: WRITE on the transactional id refuses every
    // partition; a topic the sender may not WRITE is refused and, as with
    // an unknown partition, nothing else is attempted.
    let id_allowed = session.may_on_transactional_id(broker, Operation::Write, transactional_id);
    for topic in topics {
        let known = metadata.topics.get(topic.name.as_str());
        let topic_allowed = session.may_on_topic(broker, Operation::Write, topic.name.as_str());
        let mut topic_errors = Vec::with_capacity(topic.partitions.len());
        for partition in &topic.partitions {
            if !id_allowed {
                unknown = true;
                topic_errors.push(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
            } else if !topic_allowed {
                unknown = true;
                topic_errors.push(code::TOPIC_AUTHORIZATION_FAILED);
            } else if known.is_some_and(|meta| *partition >= 0 && *partition < meta.partitions) {
                partitions.push((topic.name.to_string(), *partition));
                topic_errors.push(code::NONE);
            } else {
                unknown = true;
                topic_errors.push(code::UNKNOWN_TOPIC_OR_PARTITION);
            }
        }
        errors.push(topic_errors);
    }
    let id = transactional_id.to_string();
    if unknown {
        // Kafka adds nothing when any partition is unknown: the others are
        // not attempted.
        for topic_errors in &mut errors {
            for error in topic_errors.iter_mut() {
                if *error == code::NONE {
                    *error = code::OPERATION_NOT_ATTEMPTED;
                }
            }
        }
    } else if id.is_empty() {
        for topic_errors in &mut errors {
            topic_errors.fill(code::INVALID_REQUEST);
        }
    } else {
        let request = TxnRequest::AddPartitions {
            transactional_id: id.clone(),
            producer_id: producer.id.0,
            producer_epoch: producer.epoch,
            partitions,
            verify_only,
        };
        let answer = match txn::route(broker, &id, request).await {
            Ok(TxnResponse::AddPartitions(answer)) => answer,
            Ok(_) => Err(code::UNKNOWN_SERVER_ERROR),
            Err(error_code) => Err(error_code),
        };
        let mut per_partition = match &answer {
            Ok(list) => list.clone().into_iter(),
            Err(_) => Vec::new().into_iter(),
        };
        for topic_errors in &mut errors {
            for error in topic_errors.iter_mut() {
                *error = match &answer {
                    Ok(_) => per_partition.next().unwrap_or(code::UNKNOWN_SERVER_ERROR),
                    Err(error_code) => *error_code,
                };
                *error = fenced_for(version, *error);
            }
        }
    }
    topics
        .iter()
        .zip(errors)
        .map(|(topic, topic_errors)| {
            let mut result = AddPartitionsToTxnTopicResult::default();
            result.name = topic.name.clone();
            result.results_by_partition = topic
                .partitions
                .iter()
                .zip(topic_errors)
                .map(|(partition, error_code)| {
                    let mut entry = AddPartitionsToTxnPartitionResult::default();
                    entry.partition_index = *partition;
                    entry.partition_error_code = error_code;
                    entry
                })
                .collect();
            result
        })
        .collect()
}

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: AddPartitionsToTxnRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let mut response = AddPartitionsToTxnResponse::default();
    if version < BATCHED_VERSION {
        response.results_by_topic_v3_and_below = add_one(
            broker,
            session,
            version,
            &request.v3_and_below_transactional_id,
            Producer {
                id: request.v3_and_below_producer_id,
                epoch: request.v3_and_below_producer_epoch,
            },
            &request.v3_and_below_topics,
            false,
        )
        .await;
    } else if !session.may_on_cluster(broker, Operation::ClusterAction) {
        // The batched versions are for brokers verifying transactions.
        response.error_code = code::CLUSTER_AUTHORIZATION_FAILED;
    } else {
        for transaction in &request.transactions {
            let mut result = AddPartitionsToTxnResult::default();
            result.transactional_id = transaction.transactional_id.clone();
            result.topic_results = add_one(
                broker,
                session,
                version,
                &transaction.transactional_id,
                Producer {
                    id: transaction.producer_id,
                    epoch: transaction.producer_epoch,
                },
                &transaction.topics,
                transaction.verify_only,
            )
            .await;
            response.results_by_transaction.push(result);
        }
    }
    Some(encode(&response, version))
}
