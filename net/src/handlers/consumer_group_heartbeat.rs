//! ConsumerGroupHeartbeat (KIP-848): sent to the group's coordinator shard,
//! which runs the membership, the server-side assignment and the member's
//! reconciliation (`groups::consumer`).

use std::rc::Rc;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, RequestHeader,
};

use super::{encode, str_bytes};
use super::{group_call, Session};
use crate::acl::Operation;
use crate::broker::Broker;
use crate::errors::code;
use crate::groups::{self, GroupRequest, GroupResponse, HeartbeatOutcome};
use crate::wire::Pieces;

/// v1 (KIP-1082) has the client generate its member id, and adds regex
/// subscriptions.
pub const VERSIONS: (i16, i16) = (0, 1);

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: ConsumerGroupHeartbeatRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let group_id = request.group_id.to_string();
    let client_id = header
        .client_id
        .as_ref()
        .map(|id| id.to_string())
        .unwrap_or_default();
    let outcome = if group_id.is_empty() {
        HeartbeatOutcome::error(code::INVALID_REQUEST, "GroupId can't be empty.".to_string())
    } else {
        match group_call(
            session.may_on_group(broker, Operation::Read, &group_id),
            groups::route(
                broker,
                &group_id,
                GroupRequest::ConsumerHeartbeat {
                    request: Box::new(request),
                    version,
                    client_id,
                },
            ),
        )
        .await
        {
            Ok(GroupResponse::ConsumerHeartbeat(outcome)) => outcome,
            Ok(_) => HeartbeatOutcome::error(code::UNKNOWN_SERVER_ERROR, None),
            Err(error_code) => HeartbeatOutcome::error(error_code, None),
        }
    };
    let mut response = ConsumerGroupHeartbeatResponse::default();
    response.error_code = outcome.error_code;
    response.error_message = outcome.error_message.as_deref().map(str_bytes);
    response.member_id = outcome.member_id.as_deref().map(str_bytes);
    response.member_epoch = outcome.member_epoch;
    response.heartbeat_interval_ms = outcome.heartbeat_interval_ms;
    response.assignment = outcome.assignment.map(|assignment| {
        let mut out = Assignment::default();
        out.topic_partitions = assignment
            .into_iter()
            .map(|(topic, partitions)| {
                let mut entry = TopicPartitions::default();
                entry.topic_id = uuid::Uuid::from_bytes(topic);
                entry.partitions = partitions.into_iter().collect();
                entry
            })
            .collect();
        out
    });
    Some(encode(&response, version))
}
