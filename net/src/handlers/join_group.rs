//! JoinGroup: sent whole to the group's coordinator shard, where it waits
//! for the rebalance to complete (`groups::classic`).

use std::rc::Rc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, RequestHeader};

use super::{encode, str_bytes};
use super::{group_call, Session};
use crate::acl::Operation;
use crate::broker::Broker;
use crate::errors::code;
use crate::groups::{self, GroupRequest, GroupResponse, JoinOutcome};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 9);

/// First version reporting the group instance ids of members.
const INSTANCE_ID_VERSION: i16 = 5;
/// First version with a nullable protocol name and the protocol type.
const PROTOCOL_TYPE_VERSION: i16 = 7;
/// First version with `skip_assignment`.
const SKIP_ASSIGNMENT_VERSION: i16 = 9;

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: JoinGroupRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let group_id = request.group_id.to_string();
    let member_id = request.member_id.to_string();
    let client_id = header
        .client_id
        .as_ref()
        .map(|id| id.to_string())
        .unwrap_or_default();
    let outcome = match group_call(
        session.may_on_group(broker, Operation::Read, &group_id),
        groups::route(
            broker,
            &group_id,
            GroupRequest::Join {
                request,
                version,
                client_id,
            },
        ),
    )
    .await
    {
        Ok(GroupResponse::Join(outcome)) => outcome,
        Ok(_) => JoinOutcome::error(code::UNKNOWN_SERVER_ERROR, &member_id),
        Err(error_code) => JoinOutcome::error(error_code, &member_id),
    };
    Some(encode(&response(outcome, version), version))
}

/// The response for `version` (fields a version lacks stay at defaults).
pub fn response(outcome: JoinOutcome, version: i16) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default();
    response.error_code = outcome.error_code;
    response.generation_id = outcome.generation;
    if version >= PROTOCOL_TYPE_VERSION {
        response.protocol_type = outcome.protocol_type.as_deref().map(str_bytes);
        response.protocol_name = outcome.protocol_name.as_deref().map(str_bytes);
    } else {
        // Not nullable before v7.
        response.protocol_name = Some(str_bytes(outcome.protocol_name.as_deref().unwrap_or("")));
    }
    response.leader = str_bytes(&outcome.leader);
    if version >= SKIP_ASSIGNMENT_VERSION {
        response.skip_assignment = outcome.skip_assignment;
    }
    response.member_id = str_bytes(&outcome.member_id);
    response.members = outcome
        .members
        .into_iter()
        .map(|member| {
            let mut joined = JoinGroupResponseMember::default();
            joined.member_id = str_bytes(&member.member_id);
            if version >= INSTANCE_ID_VERSION {
                joined.group_instance_id = member.instance_id.as_deref().map(str_bytes);
            }
            joined.metadata = member.metadata;
            joined
        })
        .collect();
    response
}
