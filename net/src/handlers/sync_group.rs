//! SyncGroup: sent to the group's coordinator shard; members wait there for
//! the leader's assignment.

use std::rc::Rc;

use kafka_protocol::messages::{RequestHeader, SyncGroupRequest, SyncGroupResponse};

use super::{encode, str_bytes};
use super::{group_call, Session};
use crate::acl::Operation;
use crate::broker::Broker;
use crate::errors::code;
use crate::groups::{self, GroupRequest, GroupResponse, SyncOutcome};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 5);

/// First version carrying the protocol type and name.
const PROTOCOL_VERSION: i16 = 5;

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: SyncGroupRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let group_id = request.group_id.to_string();
    let outcome = match group_call(
        session.may_on_group(broker, Operation::Read, &group_id),
        groups::route(broker, &group_id, GroupRequest::Sync { request, version }),
    )
    .await
    {
        Ok(GroupResponse::Sync(outcome)) => outcome,
        Ok(_) => SyncOutcome::error(code::UNKNOWN_SERVER_ERROR),
        Err(error_code) => SyncOutcome::error(error_code),
    };
    Some(encode(&response(outcome, version), version))
}

pub fn response(outcome: SyncOutcome, version: i16) -> SyncGroupResponse {
    let mut response = SyncGroupResponse::default();
    response.error_code = outcome.error_code;
    if version >= PROTOCOL_VERSION {
        response.protocol_type = outcome.protocol_type.as_deref().map(str_bytes);
        response.protocol_name = outcome.protocol_name.as_deref().map(str_bytes);
    }
    response.assignment = outcome.assignment;
    response
}
