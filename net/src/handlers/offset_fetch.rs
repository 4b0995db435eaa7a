//! OffsetFetch: one group (v1–v7) or a batch of groups (v8+), each answered
//! by its coordinator shard; a batch is split once per shard.
//!
//! v10 (KIP-848) names topics by id, as Kafka answers it: each requested id
//! is named from the metadata image before the coordinator sees it, an id
//! no topic has is UNKNOWN_TOPIC_ID for its partitions, and the topics of
//! an all-topics answer carry their ids (one whose topic no longer exists
//! has none and is left out). The kafka-protocol crate stops at v9, so
//! v10's response (v9's with ids for names) is written here.

use std::rc::Rc;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, OffsetFetchRequest, OffsetFetchResponse, RequestHeader, TopicName,
};

use super::compact::{
    put_compact_len, put_compact_nullable_string, put_compact_string, put_no_tags,
};
use super::Session;
use super::{encode, str_bytes};
use crate::acl::Operation;
use crate::broker::{futures_lite_join_all, Broker};
use crate::errors::code;
use crate::groups::{
    self, FetchGroup, FetchedGroup, FetchedPartition, GroupRequest, GroupResponse,
};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (1, 10);

/// First version with a response-level error code.
const TOP_LEVEL_ERROR_VERSION: i16 = 2;
/// First version with committed leader epochs.
const LEADER_EPOCH_VERSION: i16 = 5;
/// First version with a batch of groups.
const BATCHED_VERSION: i16 = 8;
/// First version that names topics by id.
const TOPIC_ID_VERSION: i16 = 10;

/// What to answer for a group whose coordinator could not be asked.
fn failed(request: &FetchGroup, error_code: i16) -> FetchedGroup {
    let topics = request
        .topics
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|partition| FetchedPartition {
                    partition,
                    offset: -1,
                    leader_epoch: -1,
                    metadata: Some(String::new()),
                    error_code,
                })
                .collect();
            (topic, partitions)
        })
        .collect();
    FetchedGroup {
        group_id: request.group_id.clone(),
        error_code,
        topics,
    }
}

/// Fetches every group, one mesh message per coordinator shard, answers in
/// request order. A group takes DESCRIBE on it, each topic DESCRIBE on the
/// topic: a named topic the sender may not describe is answered
/// TOPIC_AUTHORIZATION_FAILED, and left out of an answer for every topic.
async fn fetch_all(
    broker: &Rc<Broker>,
    session: &Session,
    wanted: Vec<FetchGroup>,
) -> Vec<FetchedGroup> {
    let mut fetched = fetch_groups(broker, session, &wanted).await;
    for (group, request) in fetched.iter_mut().zip(&wanted) {
        let may_describe = |topic: &str| session.may_on_topic(broker, Operation::Describe, topic);
        if request.topics.is_none() {
            group.topics.retain(|(topic, _)| may_describe(topic));
            continue;
        }
        for (topic, partitions) in group.topics.iter_mut() {
            if !may_describe(topic) {
                for partition in partitions.iter_mut() {
                    *partition = FetchedPartition {
                        partition: partition.partition,
                        offset: -1,
                        leader_epoch: -1,
                        metadata: Some(String::new()),
                        error_code: code::TOPIC_AUTHORIZATION_FAILED,
                    };
                }
            }
        }
    }
    fetched
}

async fn fetch_groups(
    broker: &Rc<Broker>,
    session: &Session,
    wanted: &[FetchGroup],
) -> Vec<FetchedGroup> {
    let ids: Vec<String> = wanted.iter().map(|group| group.group_id.clone()).collect();
    let (per_shard, unrouted) = groups::split_by_shard(broker, &ids, |group| {
        session.may_on_group(broker, Operation::Describe, group)
    });
    let mut answers: Vec<Option<FetchedGroup>> = vec![None; wanted.len()];
    for (index, error_code) in unrouted {
        answers[index] = Some(failed(&wanted[index], error_code));
    }
    let mut calls = Vec::new();
    let mut positions = Vec::new();
    for (shard, indexes) in per_shard {
        let subset: Vec<FetchGroup> = indexes.iter().map(|index| wanted[*index].clone()).collect();
        calls.push(groups::call(
            broker,
            shard,
            GroupRequest::OffsetFetch { groups: subset },
        ));
        positions.push(indexes);
    }
    for (indexes, answer) in positions
        .into_iter()
        .zip(futures_lite_join_all(calls).await)
    {
        match answer {
            Some(GroupResponse::OffsetFetch(fetched)) if fetched.len() == indexes.len() => {
                for (index, group) in indexes.into_iter().zip(fetched) {
                    answers[index] = Some(group);
                }
            }
            _ => {
                for index in indexes {
                    answers[index] = Some(failed(&wanted[index], code::COORDINATOR_NOT_AVAILABLE));
                }
            }
        }
    }
    answers
        .into_iter()
        .zip(wanted.iter())
        .map(|(answer, request)| {
            answer.unwrap_or_else(|| failed(request, code::UNKNOWN_SERVER_ERROR))
        })
        .collect()
}

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: OffsetFetchRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let mut response = OffsetFetchResponse::default();
    // require_stable (v7+) reports offsets of unfinished transactions as
    // UNSTABLE_OFFSET_COMMIT; the client retries until they end.
    let require_stable = request.require_stable;
    if version >= BATCHED_VERSION {
        let by_id = version >= TOPIC_ID_VERSION;
        let metadata = broker.metadata();
        // v10: per group, the requested topics whose ids name none.
        let mut unknown_ids: Vec<Vec<OffsetFetchResponseTopics>> = Vec::new();
        let wanted: Vec<FetchGroup> = request
            .groups
            .iter()
            .map(|group| FetchGroup {
                group_id: group.group_id.to_string(),
                topics: group.topics.as_ref().map(|topics| {
                    let mut unknown = Vec::new();
                    let named = topics
                        .iter()
                        .filter_map(|topic| {
                            if !by_id {
                                return Some((
                                    topic.name.to_string(),
                                    topic.partition_indexes.clone(),
                                ));
                            }
                            match broker.topic_by_id(&metadata, topic.topic_id.as_bytes()) {
                                Some(meta) => {
                                    Some((meta.name.clone(), topic.partition_indexes.clone()))
                                }
                                None => {
                                    unknown.push(unknown_topic(
                                        topic.topic_id,
                                        &topic.partition_indexes,
                                    ));
                                    None
                                }
                            }
                        })
                        .collect();
                    unknown_ids.push(unknown);
                    named
                }),
                // v9: KIP-848 members say who they are.
                member: group
                    .member_id
                    .as_ref()
                    .map(|member| (member.to_string(), group.member_epoch)),
                require_stable,
            })
            .collect();
        // Groups that asked for every topic have no unknown ids.
        let mut unknown_ids = unknown_ids.into_iter();
        let unknown_of: Vec<Vec<OffsetFetchResponseTopics>> = wanted
            .iter()
            .map(|group| {
                group
                    .topics
                    .as_ref()
                    .and_then(|_| unknown_ids.next())
                    .unwrap_or_default()
            })
            .collect();
        response.groups = fetch_all(broker, session, wanted)
            .await
            .into_iter()
            .zip(unknown_of)
            .map(|(fetched, unknown)| {
                let mut group = OffsetFetchResponseGroup::default();
                group.group_id = GroupId(str_bytes(&fetched.group_id));
                group.error_code = fetched.error_code;
                group.topics = fetched
                    .topics
                    .into_iter()
                    .filter_map(|(name, partitions)| {
                        let mut topic = OffsetFetchResponseTopics::default();
                        if by_id {
                            // A topic deleted since its commit has no id to
                            // answer with, and is left out, as Kafka does.
                            let meta = metadata.topics.get(&name)?;
                            topic.topic_id = uuid::Uuid::from_bytes(meta.id);
                        }
                        topic.name = TopicName(str_bytes(&name));
                        topic.partitions = partitions
                            .into_iter()
                            .map(|found| {
                                let mut partition = OffsetFetchResponsePartitions::default();
                                partition.partition_index = found.partition;
                                partition.committed_offset = found.offset;
                                partition.committed_leader_epoch = found.leader_epoch;
                                partition.metadata = found.metadata.as_deref().map(str_bytes);
                                // A group-level error is reported once, at
                                // the group.
                                partition.error_code = if fetched.error_code != code::NONE {
                                    code::NONE
                                } else {
                                    found.error_code
                                };
                                partition
                            })
                            .collect();
                        Some(topic)
                    })
                    .collect();
                group.topics.extend(unknown);
                group
            })
            .collect();
        if by_id {
            return Some(encode_by_id(&response));
        }
        return Some(encode(&response, version));
    }
    let wanted = FetchGroup {
        group_id: request.group_id.to_string(),
        topics: request.topics.as_ref().map(|topics| {
            topics
                .iter()
                .map(|topic| (topic.name.to_string(), topic.partition_indexes.clone()))
                .collect()
        }),
        member: None,
        require_stable,
    };
    let fetched = fetch_all(broker, session, vec![wanted])
        .await
        .into_iter()
        .next()?;
    if version >= TOP_LEVEL_ERROR_VERSION {
        response.error_code = fetched.error_code;
    }
    response.topics = fetched
        .topics
        .into_iter()
        .map(|(name, partitions)| {
            let mut topic = OffsetFetchResponseTopic::default();
            topic.name = TopicName(str_bytes(&name));
            topic.partitions = partitions
                .into_iter()
                .map(|found| {
                    let mut partition = OffsetFetchResponsePartition::default();
                    partition.partition_index = found.partition;
                    partition.committed_offset = found.offset;
                    if version >= LEADER_EPOCH_VERSION {
                        partition.committed_leader_epoch = found.leader_epoch;
                    }
                    partition.metadata = found.metadata.as_deref().map(str_bytes);
                    partition.error_code = found.error_code;
                    partition
                })
                .collect();
            topic
        })
        .collect();
    Some(encode(&response, version))
}

/// A requested topic whose id names none: each partition UNKNOWN_TOPIC_ID,
/// as Kafka answers it.
fn unknown_topic(id: uuid::Uuid, partitions: &[i32]) -> OffsetFetchResponseTopics {
    let mut topic = OffsetFetchResponseTopics::default();
    topic.topic_id = id;
    topic.partitions = partitions
        .iter()
        .map(|index| {
            let mut partition = OffsetFetchResponsePartitions::default();
            partition.partition_index = *index;
            partition.committed_offset = -1;
            partition.committed_leader_epoch = -1;
            partition.metadata = Some(str_bytes(""));
            partition.error_code = code::UNKNOWN_TOPIC_ID;
            partition
        })
        .collect();
    topic
}

/// The v10 response body: v9's layout (throttle time, groups, each with
/// its topics and an error code) with each topic's id where v9 has its
/// name, every level flexible.
fn encode_by_id(response: &OffsetFetchResponse) -> Pieces {
    let mut out = BytesMut::new();
    out.put_i32(response.throttle_time_ms);
    put_compact_len(&mut out, response.groups.len());
    for group in &response.groups {
        put_compact_string(&mut out, group.group_id.0.as_str());
        put_compact_len(&mut out, group.topics.len());
        for topic in &group.topics {
            out.put_slice(topic.topic_id.as_bytes());
            put_compact_len(&mut out, topic.partitions.len());
            for partition in &topic.partitions {
                out.put_i32(partition.partition_index);
                out.put_i64(partition.committed_offset);
                out.put_i32(partition.committed_leader_epoch);
                put_compact_nullable_string(&mut out, partition.metadata.as_deref());
                out.put_i16(partition.error_code);
                put_no_tags(&mut out);
            }
            put_no_tags(&mut out);
        }
        out.put_i16(group.error_code);
        put_no_tags(&mut out);
    }
    put_no_tags(&mut out);
    smallvec::smallvec![out.freeze()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::{Decodable, Encodable};

    use crate::codec::by_id::{name_to_id, NAME_OF_ID_LENGTH};

    /// v10's bytes are v9's with each topic's id where v9 has its name: the
    /// same response encoded at v9 by the crate, with a 15-byte name, equals
    /// the hand-written v10 once the name's bytes are swapped for the id.
    #[test]
    fn the_v10_response_is_v9_with_ids_for_names() {
        let id = uuid::Uuid::from_u128(0x0f0e_0d0c_0b0a_0908_0706_0504_0302_0100);
        let mut topic = unknown_topic(id, &[0, 2]);
        topic.partitions[1].error_code = code::NONE;
        topic.partitions[1].committed_offset = 77;
        topic.partitions[1].metadata = None;
        topic.name = TopicName(str_bytes(NAME_OF_ID_LENGTH));
        let mut group = OffsetFetchResponseGroup::default();
        group.group_id = GroupId(str_bytes("group"));
        group.topics = vec![topic];
        group.error_code = code::NONE;
        let mut response = OffsetFetchResponse::default();
        response.groups = vec![group];
        let mut v9 = BytesMut::new();
        response.encode(&mut v9, 9).expect("encodes");
        let expected = name_to_id(&v9, &id);
        assert_eq!(encode_by_id(&response).concat(), expected);
        // And the crate reads the v9 bytes back as written.
        let decoded = OffsetFetchResponse::decode(&mut v9.freeze(), 9).expect("decodes");
        assert_eq!(
            decoded.groups[0].topics[0].partitions[1].committed_offset,
            77
        );
    }
}
