//! DeleteTopics: by name (all versions) or by topic id (v6+).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    DeleteTopicsRequest, DeleteTopicsResponse, RequestHeader, TopicName,
};
use uuid::Uuid;

use super::Session;
use super::{encode, str_bytes};
use crate::acl::Operation;
use crate::broker::{Broker, ControllerRequest, ShardResponse};
use crate::errors::code;

pub const VERSIONS: (i16, i16) = (1, 6);

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: DeleteTopicsRequest,
) -> Option<Vec<Bytes>> {
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
    // Each topic takes DELETE on it; the refused ones are not asked for.
    let allowed: Vec<bool> = wanted
        .iter()
        .map(|(name, _, _)| {
            name.as_deref()
                .is_none_or(|name| session.may_on_topic(broker, Operation::Delete, name))
        })
        .collect();
    let names: Vec<String> = wanted
        .iter()
        .zip(&allowed)
        .filter(|(_, allowed)| **allowed)
        .filter_map(|((name, _, _), _)| name.clone())
        .collect();
    let outcomes = match broker
        .controller_call(ControllerRequest::DeleteTopics(names))
        .await
    {
        Some(ShardResponse::Topics(outcomes)) => outcomes,
        _ => Vec::new(),
    };
    let mut outcomes = outcomes.into_iter();
    let mut response = DeleteTopicsResponse::default();
    for ((name, id, report), allowed) in wanted.into_iter().zip(allowed) {
        let mut result = DeletableTopicResult::default();
        result.name = report;
        result.topic_id = id;
        match name {
            Some(_) if !allowed => result.error_code = code::TOPIC_AUTHORIZATION_FAILED,
            Some(_) => match outcomes.next() {
                Some(outcome) => {
                    result.error_code = outcome.error_code;
                    if version >= 6 && outcome.error_code == code::NONE {
                        result.topic_id = Uuid::from_bytes(outcome.topic_id);
                    }
                }
                None => result.error_code = code::UNKNOWN_SERVER_ERROR,
            },
            None => result.error_code = code::UNKNOWN_TOPIC_ID,
        }
        response.responses.push(result);
    }
    Some(encode(&response, version))
}
