//! TxnOffsetCommit: offsets committed inside a transaction, sent to the
//! group's coordinator shard; they become visible with the commit marker.
//!
//! Before the group writes anything, the transaction coordinator is asked
//! about the group's `__consumer_offsets` partition, as Kafka 4 does: from
//! v5 (transaction version 2, no AddOffsetsToTxn) it adds the partition to
//! the transaction; below v5 it only verifies that AddOffsetsToTxn added it
//! (KIP-890 part 1), else the transaction's end would write no marker there
//! and the offsets would stay pending for ever.

use std::rc::Rc;

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{RequestHeader, TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::add_partitions_to_txn::fenced_for;
use super::encode;
use super::{kept_topics, with_refused_topics, Session};
use crate::acl::Operation;
use crate::broker::Broker;
use crate::errors::code;
use crate::groups::{self, GroupRequest, GroupResponse};
use crate::txn::{self, TxnRequest};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 5);

/// First version of transaction version 2: the group's offsets partition
/// is added to the transaction implicitly.
pub const ADD_PARTITION_VERSION: i16 = 5;
/// First version that knows TRANSACTION_ABORTABLE (KIP-1050).
pub const TRANSACTION_ABORTABLE_VERSION: i16 = 4;

/// Adds (v5+) or verifies (below) the group's offsets partition in the
/// transaction. `Err` is the error every partition gets, converted as
/// Kafka converts the coordinator's answer: a fenced epoch is
/// INVALID_PRODUCER_EPOCH, and "not in the transaction" is
/// TRANSACTION_ABORTABLE for clients that know it, else INVALID_TXN_STATE.
async fn add_offsets_partition(
    broker: &Rc<Broker>,
    version: i16,
    request: &TxnOffsetCommitRequest,
) -> Result<(), i16> {
    let id = request.transactional_id.to_string();
    if id.is_empty() {
        return Err(code::INVALID_REQUEST);
    }
    let partitions = groups::ensure_offsets_topic(broker).await?;
    let partition =
        sluice_engine::shard::coordinator_partition(request.group_id.as_str(), partitions);
    let add = TxnRequest::AddPartitions {
        transactional_id: id.clone(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        partitions: vec![(groups::OFFSETS_TOPIC.to_string(), partition)],
        verify_only: version < ADD_PARTITION_VERSION,
    };
    // The transaction coordinator may be on another broker than the
    // group's: asked where it is, as a partition leader asks it about a
    // transactional batch. No state topic yet answers TRANSACTION_ABORTABLE
    // (no transaction can hold the partition).
    let error = match txn::coordinator_location(broker, &id) {
        Ok(coordinator) => broker.ask_coordinator(coordinator, &add).await,
        Err(error) => error,
    };
    if error == code::NONE {
        return Ok(());
    }
    Err(match error {
        code::PRODUCER_FENCED => code::INVALID_PRODUCER_EPOCH,
        code::TRANSACTION_ABORTABLE if version < TRANSACTION_ABORTABLE_VERSION => {
            code::INVALID_TXN_STATE
        }
        other => other,
    })
}

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    mut request: TxnOffsetCommitRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let group_id = request.group_id.to_string();
    // Kafka's checks, in its order: WRITE on the transactional id and READ
    // on the group refuse every partition; a topic the sender may not READ
    // is answered TOPIC_AUTHORIZATION_FAILED and not committed.
    let refused = if !session.may_on_transactional_id(
        broker,
        Operation::Write,
        request.transactional_id.as_str(),
    ) {
        Some(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    } else if !session.may_on_group(broker, Operation::Read, &group_id) {
        Some(code::GROUP_AUTHORIZATION_FAILED)
    } else {
        None
    };
    let topic_refused: Vec<bool> = request
        .topics
        .iter()
        .map(|topic| !session.may_on_topic(broker, Operation::Read, topic.name.0.as_str()))
        .collect();
    let all_shapes: Vec<(kafka_protocol::messages::TopicName, Vec<i32>)> = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| partition.partition_index)
                .collect();
            (topic.name.clone(), partitions)
        })
        .collect();
    let mut kept = topic_refused.iter();
    request
        .topics
        .retain(|_| kept.next().is_some_and(|refused| !refused));
    let shape = kept_topics(&all_shapes, &topic_refused);
    let answer = if let Some(error_code) = refused {
        Err(error_code)
    } else if request.topics.is_empty() && !all_shapes.is_empty() {
        // Every topic was refused: nothing to add to the transaction.
        Ok(GroupResponse::OffsetCommit(Default::default()))
    } else {
        match add_offsets_partition(broker, version, &request).await {
            Err(error_code) => Err(error_code),
            Ok(()) => {
                groups::route(
                    broker,
                    &group_id,
                    GroupRequest::TxnOffsetCommit { request, version },
                )
                .await
            }
        }
    };
    let errors: Vec<Vec<i16>> = match answer {
        Ok(GroupResponse::OffsetCommit(outcome)) => outcome.topics,
        other => {
            let error_code = match other {
                Err(error_code) => error_code,
                Ok(_) => code::UNKNOWN_SERVER_ERROR,
            };
            shape
                .iter()
                .map(|(_, partitions)| vec![error_code; partitions.len()])
                .collect()
        }
    };
    let answered = with_refused_topics(
        all_shapes,
        &topic_refused,
        shape.into_iter().zip(errors).collect(),
        code::TOPIC_AUTHORIZATION_FAILED,
    );
    let mut response = TxnOffsetCommitResponse::default();
    response.topics = answered
        .into_iter()
        .map(|((name, partitions), errors)| {
            let mut topic = TxnOffsetCommitResponseTopic::default();
            topic.name = name;
            topic.partitions = partitions
                .into_iter()
                .zip(errors)
                .map(|(index, error_code)| {
                    let mut partition = TxnOffsetCommitResponsePartition::default();
                    partition.partition_index = index;
                    partition.error_code = fenced_for(version, error_code);
                    partition
                })
                .collect();
            topic
        })
        .collect();
    Some(encode(&response, version))
}
