//! DescribeGroups: each group answered by its coordinator shard, one mesh
//! message per shard, in request order.
//!
//! A group that does not exist is described as Dead with no error before
//! v6; from v6 (KIP-1043) it gets GROUP_ID_NOT_FOUND and a message, as
//! Kafka answers, so that admin tools can tell "no such group" from an
//! empty one.

use std::rc::Rc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, RequestHeader,
};

use super::Session;
use super::{encode, str_bytes, AUTHORIZED_OPERATIONS_UNKNOWN, GROUP_OPERATIONS};
use crate::acl::Operation;
use crate::broker::{futures_lite_join_all, Broker};
use crate::errors::code;
use crate::groups::{self, DescribedGroupOutcome, GroupRequest, GroupResponse, GroupState};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 6);

/// First version that reports an unknown group as GROUP_ID_NOT_FOUND, with
/// an error message.
const GROUP_ID_NOT_FOUND_VERSION: i16 = 6;

/// First version with group instance ids of members.
const INSTANCE_ID_VERSION: i16 = 4;
/// First version with authorized operations.
const AUTHORIZED_OPERATIONS_VERSION: i16 = 3;

fn failed(group_id: &str, error_code: i16) -> DescribedGroupOutcome {
    DescribedGroupOutcome {
        group_id: group_id.to_string(),
        error_code,
        state: "",
        protocol_type: String::new(),
        protocol_data: String::new(),
        members: Vec::new(),
    }
}

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: DescribeGroupsRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let ids: Vec<String> = request
        .groups
        .iter()
        .map(|group| group.to_string())
        .collect();
    let (per_shard, unrouted) = groups::split_by_shard(broker, &ids, |group| {
        session.may_on_group(broker, Operation::Describe, group)
    });
    let mut answers: Vec<Option<DescribedGroupOutcome>> = vec![None; ids.len()];
    for (index, error_code) in unrouted {
        answers[index] = Some(failed(&ids[index], error_code));
    }
    let mut calls = Vec::new();
    let mut positions = Vec::new();
    for (shard, indexes) in per_shard {
        let subset = indexes.iter().map(|index| ids[*index].clone()).collect();
        calls.push(groups::call(
            broker,
            shard,
            GroupRequest::Describe { groups: subset },
        ));
        positions.push(indexes);
    }
    for (indexes, answer) in positions
        .into_iter()
        .zip(futures_lite_join_all(calls).await)
    {
        match answer {
            Some(GroupResponse::Describe(described)) if described.len() == indexes.len() => {
                for (index, group) in indexes.into_iter().zip(described) {
                    answers[index] = Some(group);
                }
            }
            _ => {
                for index in indexes {
                    answers[index] = Some(failed(&ids[index], code::COORDINATOR_NOT_AVAILABLE));
                }
            }
        }
    }
    let mut response = DescribeGroupsResponse::default();
    response.groups = answers
        .into_iter()
        .zip(ids.iter())
        .map(|(answer, id)| {
            let outcome = answer.unwrap_or_else(|| failed(id, code::UNKNOWN_SERVER_ERROR));
            let mut group = DescribedGroup::default();
            group.error_code = outcome.error_code;
            // The coordinator describes a group it does not have as Dead
            // with no error (what Kafka answers before v6).
            let not_found = outcome.error_code == code::NONE
                && outcome.state == GroupState::Dead.name()
                && outcome.members.is_empty();
            if not_found && version >= GROUP_ID_NOT_FOUND_VERSION {
                group.error_code = code::GROUP_ID_NOT_FOUND;
                group.error_message =
                    Some(str_bytes(&format!("Group {} not found.", outcome.group_id)));
            }
            group.group_id = GroupId(str_bytes(&outcome.group_id));
            group.group_state = str_bytes(outcome.state);
            group.protocol_type = str_bytes(&outcome.protocol_type);
            group.protocol_data = str_bytes(&outcome.protocol_data);
            group.authorized_operations = if version < AUTHORIZED_OPERATIONS_VERSION {
                DescribedGroup::default().authorized_operations
            } else if request.include_authorized_operations && group.error_code == code::NONE {
                session.authorized_operations(
                    broker,
                    crate::acl::ResourceType::Group,
                    &outcome.group_id,
                    GROUP_OPERATIONS,
                )
            } else {
                AUTHORIZED_OPERATIONS_UNKNOWN
            };
            group.members = outcome
                .members
                .into_iter()
                .map(|described| {
                    let mut member = DescribedGroupMember::default();
                    member.member_id = str_bytes(&described.member_id);
                    if version >= INSTANCE_ID_VERSION {
                        member.group_instance_id = described.instance_id.as_deref().map(str_bytes);
                    }
                    member.client_id = str_bytes(&described.client_id);
                    member.client_host = str_bytes(&described.client_host);
                    member.member_metadata = described.metadata;
                    member.member_assignment = described.assignment;
                    member
                })
                .collect();
            group
        })
        .collect();
    Some(encode(&response, version))
}
