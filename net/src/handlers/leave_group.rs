//! LeaveGroup: one member (v0–v2) or a batch (v3+, KIP-345), sent to the
//! group's coordinator shard.

use std::rc::Rc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse, RequestHeader};

use super::{encode, str_bytes};
use super::{group_call, Session};
use crate::acl::Operation;
use crate::broker::Broker;
use crate::errors::code;
use crate::groups::{self, GroupRequest, GroupResponse, LeaveOutcome};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 5);

/// First version with a batch of members.
const BATCH_VERSION: i16 = 3;

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: LeaveGroupRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let group_id = request.group_id.to_string();
    let identities: Vec<(String, Option<String>)> = if version < BATCH_VERSION {
        vec![(request.member_id.to_string(), None)]
    } else {
        request
            .members
            .iter()
            .map(|member| {
                (
                    member.member_id.to_string(),
                    member.group_instance_id.as_ref().map(|id| id.to_string()),
                )
            })
            .collect()
    };
    let outcome = match group_call(
        session.may_on_group(broker, Operation::Read, &group_id),
        groups::route(broker, &group_id, GroupRequest::Leave { request, version }),
    )
    .await
    {
        Ok(GroupResponse::Leave(outcome)) => outcome,
        other => {
            let error_code = match other {
                Err(error_code) => error_code,
                Ok(_) => code::UNKNOWN_SERVER_ERROR,
            };
            LeaveOutcome {
                error_code,
                members: identities
                    .into_iter()
                    .map(|(id, instance)| (id, instance, error_code))
                    .collect(),
            }
        }
    };
    let mut response = LeaveGroupResponse::default();
    response.error_code = outcome.error_code;
    if version >= BATCH_VERSION {
        response.members = outcome
            .members
            .into_iter()
            .map(|(member_id, instance_id, error_code)| {
                let mut member = MemberResponse::default();
                member.member_id = str_bytes(&member_id);
                member.group_instance_id = instance_id.as_deref().map(str_bytes);
                member.error_code = error_code;
                member
            })
            .collect();
    }
    Some(encode(&response, version))
}
