//! OffsetFetch: one group (v1–v7) or a batch of groups (v8+), each answered
//! by its coordinator shard; a batch is split once per shard.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, OffsetFetchRequest, OffsetFetchResponse, RequestHeader, TopicName,
};

use super::{encode, str_bytes};
use crate::broker::{futures_lite_join_all, Broker};
use crate::errors::code;
use crate::groups::{
    self, FetchGroup, FetchedGroup, FetchedPartition, GroupRequest, GroupResponse,
};

pub const VERSIONS: (i16, i16) = (1, 9);

/// First version with a response-level error code.
const TOP_LEVEL_ERROR_VERSION: i16 = 2;
/// First version with committed leader epochs.
const LEADER_EPOCH_VERSION: i16 = 5;
/// First version with a batch of groups.
const BATCHED_VERSION: i16 = 8;

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
/// request order.
async fn fetch_all(broker: &Rc<Broker>, wanted: Vec<FetchGroup>) -> Vec<FetchedGroup> {
    let ids: Vec<String> = wanted.iter().map(|group| group.group_id.clone()).collect();
    let (per_shard, unrouted) = groups::split_by_shard(broker, &ids);
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
    header: &RequestHeader,
    request: OffsetFetchRequest,
) -> Option<Vec<Bytes>> {
    let version = header.request_api_version;
    let mut response = OffsetFetchResponse::default();
    // require_stable (v7+) reports offsets of unfinished transactions as
    // UNSTABLE_OFFSET_COMMIT; the client retries until they end.
    let require_stable = request.require_stable;
    if version >= BATCHED_VERSION {
        let wanted: Vec<FetchGroup> = request
            .groups
            .iter()
            .map(|group| FetchGroup {
                group_id: group.group_id.to_string(),
                topics: group.topics.as_ref().map(|topics| {
                    topics
                        .iter()
                        .map(|topic| (topic.name.to_string(), topic.partition_indexes.clone()))
                        .collect()
                }),
                // v9: KIP-848 members say who they are.
                member: group
                    .member_id
                    .as_ref()
                    .map(|member| (member.to_string(), group.member_epoch)),
                require_stable,
            })
            .collect();
        response.groups = fetch_all(broker, wanted)
            .await
            .into_iter()
            .map(|fetched| {
                let mut group = OffsetFetchResponseGroup::default();
                group.group_id = GroupId(str_bytes(&fetched.group_id));
                group.error_code = fetched.error_code;
                group.topics = fetched
                    .topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        let mut topic = OffsetFetchResponseTopics::default();
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
                        topic
                    })
                    .collect();
                group
            })
            .collect();
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
    let fetched = fetch_all(broker, vec![wanted]).await.into_iter().next()?;
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
