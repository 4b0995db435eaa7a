//! ListGroups: every shard lists the groups it coordinates; v4+ filters by
//! state, v5+ by type ("classic" or "consumer").

use std::rc::Rc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse, RequestHeader};
use sluice_engine::ShardId;

use super::Session;
use super::{encode, str_bytes};
use crate::acl::Operation;
use crate::broker::{futures_lite_join_all, Broker};
use crate::errors::code;
use crate::groups::{self, GroupRequest, GroupResponse};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 5);

/// First version with group states (and the states filter).
const STATE_VERSION: i16 = 4;
/// First version with group types (and the types filter).
const TYPE_VERSION: i16 = 5;

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: ListGroupsRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let calls = (0..broker.shards())
        .map(|shard| groups::call(broker, ShardId(shard as u16), GroupRequest::List))
        .collect();
    let mut response = ListGroupsResponse::default();
    let may_list_all = session.may_on_cluster(broker, Operation::Describe);
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|state| state.to_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|kind| kind.to_lowercase())
        .collect();
    for answer in futures_lite_join_all(calls).await {
        let Some(GroupResponse::List(listed)) = answer else {
            response.error_code = code::COORDINATOR_NOT_AVAILABLE;
            continue;
        };
        if listed.error_code != code::NONE {
            response.error_code = listed.error_code;
        }
        for found in listed.groups {
            // DESCRIBE on the cluster lists every group; else only the
            // groups the sender may describe.
            if !may_list_all && !session.may_on_group(broker, Operation::Describe, &found.group_id)
            {
                continue;
            }
            if !states.is_empty() && !states.contains(&found.state.to_lowercase()) {
                continue;
            }
            if !types.is_empty() && !types.iter().any(|kind| kind == found.group_type) {
                continue;
            }
            let mut group = ListedGroup::default();
            group.group_id = GroupId(str_bytes(&found.group_id));
            group.protocol_type = str_bytes(&found.protocol_type);
            if version >= STATE_VERSION {
                group.group_state = str_bytes(found.state);
            }
            if version >= TYPE_VERSION {
                group.group_type = str_bytes(found.group_type);
            }
            response.groups.push(group);
        }
    }
    Some(encode(&response, version))
}
