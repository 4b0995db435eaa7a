//! TxnOffsetCommit: offsets committed inside a transaction, sent to the
//! group's coordinator shard; they become visible with the commit marker.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{RequestHeader, TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::add_partitions_to_txn::fenced_for;
use super::encode;
use crate::broker::Broker;
use crate::errors::code;
use crate::groups::{self, GroupRequest, GroupResponse};

pub const VERSIONS: (i16, i16) = (0, 5);

pub async fn handle(
    broker: &Rc<Broker>,
    header: &RequestHeader,
    request: TxnOffsetCommitRequest,
) -> Option<Vec<Bytes>> {
    let version = header.request_api_version;
    let group_id = request.group_id.to_string();
    let shape: Vec<(kafka_protocol::messages::TopicName, Vec<i32>)> = request
        .topics
        .iter()
        .map(|topic| {
            (
                topic.name.clone(),
                topic
                    .partitions
                    .iter()
                    .map(|partition| partition.partition_index)
                    .collect(),
            )
        })
        .collect();
    let errors: Vec<Vec<i16>> = match groups::route(
        broker,
        &group_id,
        GroupRequest::TxnOffsetCommit { request, version },
    )
    .await
    {
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
    let mut response = TxnOffsetCommitResponse::default();
    response.topics = shape
        .into_iter()
        .zip(errors)
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
