//! CreatePartitions: grows a topic; shrinking is INVALID_PARTITIONS.

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse, RequestHeader};

use super::{encode, str_bytes};
use super::{MutationQuota, Session};
use crate::acl::Operation;
use crate::broker::{futures_lite_join_all, Broker, ControllerRequest, ShardResponse};
use crate::errors::code;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 3);
/// From this version a topic over the partition-mutation quota is refused
/// (KIP-599); before it, it grows and the answer is throttled.
const STRICT_QUOTA_VERSION: i16 = 3;

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: CreatePartitionsRequest,
) -> Option<Pieces> {
    let mut response = CreatePartitionsResponse::default();
    let quota = session.mutation_quota(broker, header, STRICT_QUOTA_VERSION);
    let metadata = broker.metadata();
    // The controller's calls, all sent before any is waited for: the
    // request's `timeout_ms` bounds the whole request, as in Kafka, not
    // each topic in turn (one after the other, a request of ten topics
    // behind a busy controller took ten timeouts to answer).
    let mut calls = Vec::new();
    for topic in &request.topics {
        // The partitions it would add, counted against the sender's
        // mutation quota unless it only validates.
        let added = metadata
            .topics
            .get(topic.name.0.as_str())
            .map_or(0, |known| (topic.count - known.partitions).max(0));
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        let assignments_valid = topic.assignments.as_ref().is_none_or(|assignments| {
            assignments.iter().all(|assignment| {
                assignment.broker_ids.len() == 1
                    && assignment.broker_ids[0].0 == broker.config.node_id
            })
        });
        if !session.may_on_topic(broker, Operation::Alter, topic.name.0.as_str()) {
            result.error_code = code::TOPIC_AUTHORIZATION_FAILED;
        } else if !assignments_valid {
            result.error_code = code::INVALID_REPLICA_ASSIGNMENT;
            result.error_message =
                Some(str_bytes("Replica assignments must name only this broker."));
        } else if !request.validate_only && !quota.admit(added as u64) {
            result.error_code = code::THROTTLING_QUOTA_EXCEEDED;
            result.error_message = Some(str_bytes(MutationQuota::REFUSAL));
        } else {
            let call = ControllerRequest::CreatePartitions {
                topic: topic.name.0.as_str().to_string(),
                count: topic.count,
                validate_only: request.validate_only,
            };
            calls.push((
                response.results.len(),
                broker.controller_call_within(call, request.timeout_ms),
            ));
        }
        response.results.push(result);
    }
    let (positions, calls): (Vec<usize>, Vec<_>) = calls.into_iter().unzip();
    for (position, answer) in positions
        .into_iter()
        .zip(futures_lite_join_all(calls).await)
    {
        let result = &mut response.results[position];
        match answer {
            Some(Some(ShardResponse::Topics(outcomes))) if !outcomes.is_empty() => {
                result.error_code = outcomes[0].error_code;
                result.error_message = outcomes[0].error_message.as_deref().map(str_bytes);
            }
            None => result.error_code = code::REQUEST_TIMED_OUT,
            Some(_) => result.error_code = code::UNKNOWN_SERVER_ERROR,
        }
    }
    response.throttle_time_ms = quota.throttle_ms();
    Some(encode(&response, header.request_api_version))
}
