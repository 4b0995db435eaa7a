//! OffsetCommit: one group, many partitions; the whole request goes to the
//! group's coordinator shard, which answers once the commit is durable.
//!
//! v10 (KIP-848) names topics by id: each is named from the metadata image
//! before the coordinator sees it, as Kafka does, and an id no topic has is
//! UNKNOWN_TOPIC_ID for each of its partitions. The kafka-protocol crate
//! stops at v9, so v10's response (v9's with each topic's name replaced by
//! its id) is written here.

use std::rc::Rc;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, RequestHeader, TopicName,
};
use uuid::Uuid;

use super::compact::{put_compact_len, put_no_tags};
use super::{encode, str_bytes};
use super::{group_call, Session};
use crate::acl::Operation;
use crate::broker::Broker;
use crate::errors::code;
use crate::groups::{self, GroupRequest, GroupResponse};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (2, 10);

/// First version that names topics by id.
const TOPIC_ID_VERSION: i16 = 10;

/// One topic of the answer, in request order: its name and id, and each
/// partition's index and error code.
struct TopicAnswer {
    name: TopicName,
    id: Uuid,
    partitions: Vec<(i32, i16)>,
}

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    mut request: OffsetCommitRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let group_id = request.group_id.to_string();
    // The response mirrors the request's topics and partitions; a topic
    // whose id names none is answered here and not sent on.
    let mut answers = Vec::with_capacity(request.topics.len());
    let mut unknown = Vec::with_capacity(request.topics.len());
    if version >= TOPIC_ID_VERSION {
        let metadata = broker.metadata();
        for topic in &mut request.topics {
            let found = broker.topic_by_id(&metadata, topic.topic_id.as_bytes());
            if let Some(meta) = found {
                topic.name = TopicName(str_bytes(&meta.name));
            }
            unknown.push(found.is_none());
        }
    } else {
        unknown.resize(request.topics.len(), false);
    }
    // A topic the sender may not READ is answered here too, as Kafka
    // answers it, and not sent on.
    for (topic, unknown) in request.topics.iter().zip(unknown.iter_mut()) {
        let error_code = if *unknown {
            code::UNKNOWN_TOPIC_ID
        } else if !session.may_on_topic(broker, Operation::Read, topic.name.0.as_str()) {
            *unknown = true;
            code::TOPIC_AUTHORIZATION_FAILED
        } else {
            code::NONE
        };
        answers.push(TopicAnswer {
            name: topic.name.clone(),
            id: topic.topic_id,
            partitions: topic
                .partitions
                .iter()
                .map(|partition| (partition.partition_index, error_code))
                .collect(),
        });
    }
    let mut kept = unknown.iter();
    request
        .topics
        .retain(|_| kept.next().is_some_and(|unknown| !unknown));
    // The coordinator's answer fills in the topics that were sent on.
    let sent: Vec<&mut TopicAnswer> = answers
        .iter_mut()
        .zip(&unknown)
        .filter(|(_, unknown)| !**unknown)
        .map(|(answer, _)| answer)
        .collect();
    let errors: Option<Vec<Vec<i16>>> = if request.topics.is_empty() {
        None
    } else {
        Some(
            match group_call(
                session.may_on_group(broker, Operation::Read, &group_id),
                groups::route(
                    broker,
                    &group_id,
                    GroupRequest::OffsetCommit { request, version },
                ),
            )
            .await
            {
                Ok(GroupResponse::OffsetCommit(outcome)) => outcome.topics,
                other => {
                    let error_code = match other {
                        Err(error_code) => error_code,
                        Ok(_) => code::UNKNOWN_SERVER_ERROR,
                    };
                    sent.iter()
                        .map(|answer| vec![error_code; answer.partitions.len()])
                        .collect()
                }
            },
        )
    };
    for (answer, errors) in sent.into_iter().zip(errors.unwrap_or_default()) {
        for ((_, error_code), error) in answer.partitions.iter_mut().zip(errors) {
            *error_code = error;
        }
    }
    if version >= TOPIC_ID_VERSION {
        return Some(encode_by_id(&answers));
    }
    let mut response = OffsetCommitResponse::default();
    response.topics = answers
        .into_iter()
        .map(|answer| {
            let mut topic = OffsetCommitResponseTopic::default();
            topic.name = answer.name;
            topic.partitions = answer
                .partitions
                .into_iter()
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

/// The v10 response body: throttle time, then per topic its id and each
/// partition's index and error code, every level flexible.
fn encode_by_id(answers: &[TopicAnswer]) -> Pieces {
    let mut out = BytesMut::new();
    out.put_i32(0); // throttle_time_ms
    put_compact_len(&mut out, answers.len());
    for answer in answers {
        out.put_slice(answer.id.as_bytes());
        put_compact_len(&mut out, answer.partitions.len());
        for (index, error_code) in &answer.partitions {
            out.put_i32(*index);
            out.put_i16(*error_code);
            put_no_tags(&mut out);
        }
        put_no_tags(&mut out);
    }
    put_no_tags(&mut out);
    smallvec::smallvec![out.freeze()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    use crate::codec::by_id::{name_to_id, NAME_OF_ID_LENGTH};

    /// v10's bytes are v9's with each topic's id where v9 has its name: the
    /// same response encoded at v9 by the crate, with a 15-byte name, equals
    /// the hand-written v10 once the name's bytes are swapped for the id.
    #[test]
    fn the_v10_response_is_v9_with_ids_for_names() {
        let id = Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let partitions = vec![(0, code::NONE), (7, code::UNKNOWN_TOPIC_ID)];
        let answers = [TopicAnswer {
            name: TopicName(str_bytes(NAME_OF_ID_LENGTH)),
            id,
            partitions: partitions.clone(),
        }];
        let mut topic = OffsetCommitResponseTopic::default();
        topic.name = TopicName(str_bytes(NAME_OF_ID_LENGTH));
        topic.partitions = partitions
            .iter()
            .map(|(index, error_code)| {
                let mut partition = OffsetCommitResponsePartition::default();
                partition.partition_index = *index;
                partition.error_code = *error_code;
                partition
            })
            .collect();
        let mut response = OffsetCommitResponse::default();
        response.topics = vec![topic];
        let mut v9 = BytesMut::new();
        response.encode(&mut v9, 9).expect("encodes");
        assert_eq!(encode_by_id(&answers).concat(), name_to_id(&v9, &id));
    }
}
