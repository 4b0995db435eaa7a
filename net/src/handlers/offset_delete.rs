//! OffsetDelete: removes committed offsets of partitions the group no
//! longer consumes (tombstones in `__consumer_offsets`).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, RequestHeader};

use super::encode;
use super::Session;
use crate::broker::Broker;
use crate::errors::code;
use crate::groups::{self, GroupRequest, GroupResponse};

pub const VERSIONS: (i16, i16) = (0, 0);

pub async fn handle(
    broker: &Rc<Broker>,
    _session: &Session,
    header: &RequestHeader,
    request: OffsetDeleteRequest,
) -> Option<Vec<Bytes>> {
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
    let mut response = OffsetDeleteResponse::default();
    let errors =
        match groups::route(broker, &group_id, GroupRequest::OffsetDelete { request }).await {
            Ok(GroupResponse::OffsetDelete(outcome)) => {
                response.error_code = outcome.error_code;
                outcome.topics
            }
            other => {
                response.error_code = match other {
                    Err(error_code) => error_code,
                    Ok(_) => code::UNKNOWN_SERVER_ERROR,
                };
                shape
                    .iter()
                    .map(|(_, partitions)| vec![code::NONE; partitions.len()])
                    .collect()
            }
        };
    if response.error_code == code::NONE {
        response.topics = shape
            .into_iter()
            .zip(errors)
            .map(|((name, partitions), errors)| {
                let mut topic = OffsetDeleteResponseTopic::default();
                topic.name = name;
                topic.partitions = partitions
                    .into_iter()
                    .zip(errors)
                    .map(|(index, error_code)| {
                        let mut partition = OffsetDeleteResponsePartition::default();
                        partition.partition_index = index;
                        partition.error_code = error_code;
                        partition
                    })
                    .collect();
                topic
            })
            .collect();
    }
    Some(encode(&response, header.request_api_version))
}
