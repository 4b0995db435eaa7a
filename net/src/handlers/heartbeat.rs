//! Heartbeat: sent to the group's coordinator shard; the answer tells a
//! member whether to rejoin (REBALANCE_IN_PROGRESS).

use std::rc::Rc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse, RequestHeader};

use super::encode;
use super::{group_call, Session};
use crate::acl::Operation;
use crate::broker::Broker;
use crate::errors::code;
use crate::groups::{self, GroupRequest, GroupResponse};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 4);

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: HeartbeatRequest,
) -> Option<Pieces> {
    let group_id = request.group_id.to_string();
    let error_code = match group_call(
        session.may_on_group(broker, Operation::Read, &group_id),
        groups::route(broker, &group_id, GroupRequest::Heartbeat { request }),
    )
    .await
    {
        Ok(GroupResponse::Heartbeat(error_code)) => error_code,
        Ok(_) => code::UNKNOWN_SERVER_ERROR,
        Err(error_code) => error_code,
    };
    let mut response = HeartbeatResponse::default();
    response.error_code = error_code;
    Some(encode(&response, header.request_api_version))
}
