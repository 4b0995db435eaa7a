//! OffsetDelete: removes committed offsets of partitions the group no
//! longer consumes (tombstones in `__consumer_offsets`).

use std::rc::Rc;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, RequestHeader};

use super::encode;
use super::{group_call, kept_topics, with_refused_topics, Session};
use crate::acl::Operation;
use crate::broker::Broker;
use crate::errors::code;
use crate::groups::{self, GroupRequest, GroupResponse};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 0);

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    mut request: OffsetDeleteRequest,
) -> Option<Pieces> {
    let group_id = request.group_id.to_string();
    // A topic the sender may not READ is answered TOPIC_AUTHORIZATION_FAILED
    // and its offsets are kept, as Kafka does.
    let topic_refused: Vec<bool> = request
        .topics
        .iter()
        .map(|topic| !session.may_on_topic(broker, Operation::Read, topic.name.0.as_str()))
        .collect();
    let all_topics: Vec<(kafka_protocol::messages::TopicName, Vec<i32>)> = request
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
    let mut kept = topic_refused.iter();
    request
        .topics
        .retain(|_| kept.next().is_some_and(|refused| !refused));
    let shape = kept_topics(&all_topics, &topic_refused);
    let mut response = OffsetDeleteResponse::default();
    let errors = match group_call(
        session.may_on_group(broker, Operation::Delete, &group_id),
        groups::route(broker, &group_id, GroupRequest::OffsetDelete { request }),
    )
    .await
    {
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
        let answered = with_refused_topics(
            all_topics,
            &topic_refused,
            shape.into_iter().zip(errors).collect(),
            code::TOPIC_AUTHORIZATION_FAILED,
        );
        response.topics = answered
            .into_iter()
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
