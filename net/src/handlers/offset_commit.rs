//! OffsetCommit: one group, many partitions; the whole request goes to the
//! group's coordinator shard, which answers once the commit is durable.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, RequestHeader};

use super::encode;
use crate::broker::Broker;
use crate::errors::code;
use crate::groups::{self, GroupRequest, GroupResponse};

pub const VERSIONS: (i16, i16) = (2, 9);

pub async fn handle(
    broker: &Rc<Broker>,
    header: &RequestHeader,
    request: OffsetCommitRequest,
) -> Option<Vec<Bytes>> {
    let version = header.request_api_version;
    let group_id = request.group_id.to_string();
    // The response mirrors the request's topics and partitions.
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
        GroupRequest::OffsetCommit { request, version },
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
    let mut response = OffsetCommitResponse::default();
    response.topics = shape
        .into_iter()
        .zip(errors)
        .map(|((name, partitions), errors)| {
            let mut topic = OffsetCommitResponseTopic::default();
            topic.name = name;
            topic.partitions = partitions
                .into_iter()
                .zip(errors)
                .map(|(index, error_code)| {
                    let mut partition = OffsetCommitResponsePartition::default();
                    partition.partition_index = index;
                    partition.error_code = error_code;
                    partition
                })
                .collect();
            topic
        })
        .collect();
    Some(encode(&response, version))
}
