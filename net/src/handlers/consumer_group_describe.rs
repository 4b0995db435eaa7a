//! ConsumerGroupDescribe (KIP-848): each group answered by its coordinator
//! shard, one mesh message per shard, in request order.

use std::rc::Rc;

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId, RequestHeader, TopicName,
};

use super::Session;
use super::{encode, str_bytes, AUTHORIZED_OPERATIONS_UNKNOWN, GROUP_OPERATIONS};
use crate::acl::Operation;
use crate::broker::{futures_lite_join_all, Broker};
use crate::errors::code;
use crate::groups::{self, DescribedConsumerGroup, GroupRequest, GroupResponse};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 1);

/// ConsumerGroupDescribe v1's member type of a consumer-protocol member.
const MEMBER_TYPE_CONSUMER: i8 = 1;

fn failed(group_id: &str, error_code: i16) -> DescribedConsumerGroup {
    DescribedConsumerGroup {
        group_id: group_id.to_string(),
        error_code,
        ..Default::default()
    }
}

fn assignment(partitions: Vec<([u8; 16], String, Vec<i32>)>) -> Assignment {
    let mut out = Assignment::default();
    out.topic_partitions = partitions
        .into_iter()
        .map(|(id, name, partitions)| {
            let mut topic = TopicPartitions::default();
            topic.topic_id = uuid::Uuid::from_bytes(id);
            topic.topic_name = TopicName(str_bytes(&name));
            topic.partitions = partitions;
            topic
        })
        .collect();
    out
}

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: ConsumerGroupDescribeRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let ids: Vec<String> = request
        .group_ids
        .iter()
        .map(|group| group.to_string())
        .collect();
    let (per_shard, unrouted) = groups::split_by_shard(broker, &ids, |group| {
        session.may_on_group(broker, Operation::Describe, group)
    });
    let mut answers: Vec<Option<DescribedConsumerGroup>> = vec![None; ids.len()];
    for (index, error_code) in unrouted {
        if let (Some(slot), Some(id)) = (answers.get_mut(index), ids.get(index)) {
            *slot = Some(failed(id, error_code));
        }
    }
    let mut calls = Vec::new();
    let mut positions = Vec::new();
    for (shard, indexes) in per_shard {
        let subset = indexes
            .iter()
            .filter_map(|index| ids.get(*index).cloned())
            .collect();
        calls.push(groups::call(
            broker,
            shard,
            GroupRequest::ConsumerDescribe { groups: subset },
        ));
        positions.push(indexes);
    }
    for (indexes, answer) in positions
        .into_iter()
        .zip(futures_lite_join_all(calls).await)
    {
        match answer {
            Some(GroupResponse::ConsumerDescribe(described))
                if described.len() == indexes.len() =>
            {
                for (index, group) in indexes.into_iter().zip(described) {
                    if let Some(slot) = answers.get_mut(index) {
                        *slot = Some(group);
                    }
                }
            }
            _ => {
                for index in indexes {
                    if let (Some(slot), Some(id)) = (answers.get_mut(index), ids.get(index)) {
                        *slot = Some(failed(id, code::COORDINATOR_NOT_AVAILABLE));
                    }
                }
            }
        }
    }
    let mut response = ConsumerGroupDescribeResponse::default();
    response.groups = answers
        .into_iter()
        .flatten()
        .map(|found| {
            let mut group = DescribedGroup::default();
            group.error_code = found.error_code;
            group.error_message = found.error_message.as_deref().map(str_bytes);
            group.group_id = GroupId(str_bytes(&found.group_id));
            group.group_state = str_bytes(found.state);
            group.group_epoch = found.epoch;
            group.assignment_epoch = found.assignment_epoch;
            group.assignor_name = str_bytes(&found.assignor);
            group.authorized_operations =
                if request.include_authorized_operations && found.error_code == code::NONE {
                    session.authorized_operations(
                        broker,
                        crate::acl::ResourceType::Group,
                        &found.group_id,
                        GROUP_OPERATIONS,
                    )
                } else {
                    AUTHORIZED_OPERATIONS_UNKNOWN
                };
            group.members = found
                .members
                .into_iter()
                .map(|found| {
                    let mut member = Member::default();
                    member.member_id = str_bytes(&found.member_id);
                    member.instance_id = found.instance_id.as_deref().map(str_bytes);
                    member.rack_id = found.rack_id.as_deref().map(str_bytes);
                    member.member_epoch = found.member_epoch;
                    member.client_id = str_bytes(&found.client_id);
                    member.client_host = str_bytes(&found.client_host);
                    member.subscribed_topic_names = found
                        .subscribed_topic_names
                        .iter()
                        .map(|name| TopicName(str_bytes(name)))
                        .collect();
                    member.subscribed_topic_regex =
                        found.subscribed_topic_regex.as_deref().map(str_bytes);
                    member.assignment = assignment(found.assignment);
                    member.target_assignment = assignment(found.target_assignment);
                    if version >= 1 {
                        member.member_type = MEMBER_TYPE_CONSUMER;
                    }
                    member
                })
                .collect();
            group
        })
        .collect();
    Some(encode(&response, version))
}
