//! DeleteTopics: by name (all versions) or by topic id (v6+).

use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    DeleteTopicsRequest, DeleteTopicsResponse, RequestHeader, TopicName,
};
use uuid::Uuid;

use super::{encode, str_bytes};
use super::{MutationQuota, Session};
use crate::acl::Operation;
use crate::broker::{Broker, ControllerRequest, ShardResponse};
use crate::errors::code;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (1, 6);
/// From this version a topic over the partition-mutation quota is refused
/// (KIP-599); before it, it is deleted and the answer throttled.
const STRICT_QUOTA_VERSION: i16 = 5;

/// Whether a topic of the request may be deleted by its sender.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allowed,
    /// No DELETE on it.
    Unauthorized,
    /// Over the partition-mutation quota.
    Throttled,
}

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: DeleteTopicsRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let metadata = broker.metadata();
    // (name to delete or None, id, the name to report)
    let mut wanted: Vec<(Option<String>, Uuid, Option<TopicName>)> = Vec::new();
    if version >= 6 {
        for topic in &request.topics {
            match &topic.name {
                Some(name) => wanted.push((
                    Some(name.0.as_str().to_string()),
                    topic.topic_id,
                    Some(name.clone()),
                )),
                None => {
                    let found = broker
                        .topic_by_id(&metadata, topic.topic_id.as_bytes())
                        .map(|meta| meta.name.clone());
                    let report = found.as_deref().map(|name| TopicName(str_bytes(name)));
                    wanted.push((found, topic.topic_id, report));
                }
            }
        }
    } else {
        for name in &request.topic_names {
            wanted.push((
                Some(name.0.as_str().to_string()),
                Uuid::nil(),
                Some(name.clone()),
            ));
        }
    }
    // Each topic takes DELETE on it, and its partitions count against the
    // sender's mutation quota; the refused ones are not asked for.
    let quota = session.mutation_quota(broker, header, STRICT_QUOTA_VERSION);
    let verdicts: Vec<Verdict> = wanted
        .iter()
        .map(|(name, _, _)| {
            let Some(name) = name.as_deref() else {
                return Verdict::Allowed;
            };
            let partitions = metadata
                .topics
                .get(name)
                .map_or(0, |topic| topic.partitions);
            if !session.may_on_topic(broker, Operation::Delete, name) {
                Verdict::Unauthorized
            } else if !quota.admit(partitions.max(0) as u64) {
                Verdict::Throttled
            } else {
                Verdict::Allowed
            }
        })
        .collect();
    let names: Vec<String> = wanted
        .iter()
        .zip(&verdicts)
        .filter(|(_, verdict)| **verdict == Verdict::Allowed)
        .filter_map(|((name, _, _), _)| name.clone())
        .collect();
    let (outcomes, missing) = match broker
        .controller_call_within(ControllerRequest::DeleteTopics(names), request.timeout_ms)
        .await
    {
        Some(Some(ShardResponse::Topics(outcomes))) => (outcomes, code::UNKNOWN_SERVER_ERROR),
        Some(_) => (Vec::new(), code::UNKNOWN_SERVER_ERROR),
        None => (Vec::new(), code::REQUEST_TIMED_OUT),
    };
    let mut outcomes = outcomes.into_iter();
    let mut response = DeleteTopicsResponse::default();
    response.throttle_time_ms = quota.throttle_ms();
    for ((name, id, report), verdict) in wanted.into_iter().zip(verdicts) {
        let mut result = DeletableTopicResult::default();
        result.name = report;
        result.topic_id = id;
        match name {
            Some(_) if verdict == Verdict::Unauthorized => {
                result.error_code = code::TOPIC_AUTHORIZATION_FAILED
            }
            Some(_) if verdict == Verdict::Throttled => {
                result.error_code = code::THROTTLING_QUOTA_EXCEEDED;
                result.error_message = Some(str_bytes(MutationQuota::REFUSAL));
            }
            Some(_) => match outcomes.next() {
                Some(outcome) => {
                    result.error_code = outcome.error_code;
                    if version >= 6 && outcome.error_code == code::NONE {
                        result.topic_id = Uuid::from_bytes(outcome.topic_id);
                    }
                }
                None => result.error_code = missing,
            },
            None => result.error_code = code::UNKNOWN_TOPIC_ID,
        }
        response.responses.push(result);
    }
    Some(encode(&response, version))
}
