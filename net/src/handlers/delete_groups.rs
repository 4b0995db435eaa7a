//! DeleteGroups: each empty group's offsets and metadata are tombstoned by
//! its coordinator shard, one mesh message per shard.

use std::rc::Rc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, GroupId, RequestHeader};

use super::Session;
use super::{encode, str_bytes};
use crate::acl::Operation;
use crate::broker::{futures_lite_join_all, Broker};
use crate::errors::code;
use crate::groups::{self, GroupRequest, GroupResponse};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 2);

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: DeleteGroupsRequest,
) -> Option<Pieces> {
    let ids: Vec<String> = request
        .groups_names
        .iter()
        .map(|group| group.to_string())
        .collect();
    let (per_shard, unrouted) = groups::split_by_shard(broker, &ids, |group| {
        session.may_on_group(broker, Operation::Delete, group)
    });
    let mut errors = vec![code::UNKNOWN_SERVER_ERROR; ids.len()];
    for (index, error_code) in unrouted {
        errors[index] = error_code;
    }
    let mut calls = Vec::new();
    let mut positions = Vec::new();
    for (shard, indexes) in per_shard {
        let subset = indexes.iter().map(|index| ids[*index].clone()).collect();
        calls.push(groups::call(
            broker,
            shard,
            GroupRequest::Delete { groups: subset },
        ));
        positions.push(indexes);
    }
    for (indexes, answer) in positions
        .into_iter()
        .zip(futures_lite_join_all(calls).await)
    {
        match answer {
            Some(GroupResponse::Delete(results)) if results.len() == indexes.len() => {
                for (index, error_code) in indexes.into_iter().zip(results) {
                    errors[index] = error_code;
                }
            }
            _ => {
                for index in indexes {
                    errors[index] = code::COORDINATOR_NOT_AVAILABLE;
                }
            }
        }
    }
    let mut response = DeleteGroupsResponse::default();
    response.results = ids
        .iter()
        .zip(errors)
        .map(|(id, error_code)| {
            let mut result = DeletableGroupResult::default();
            result.group_id = GroupId(str_bytes(id));
            result.error_code = error_code;
            result
        })
        .collect();
    Some(encode(&response, header.request_api_version))
}
