//! CreateTopics: validated by the controller, which saves and publishes the
//! new metadata; every owner shard has opened the new partitions' logs by
//! the time the response is sent.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, RequestHeader};
use uuid::Uuid;

use super::{encode, str_bytes};
use super::{MutationQuota, Session};
use crate::acl::Operation;
use crate::broker::{Broker, ControllerRequest, NewTopic, ShardResponse};
use crate::errors::code;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (2, 7);
/// From this version a topic over the partition-mutation quota is refused
/// (KIP-599); before it, it is created and the answer throttled.
const STRICT_QUOTA_VERSION: i16 = 6;

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: CreateTopicsRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let mut results: Vec<CreatableTopicResult> = Vec::with_capacity(request.topics.len());
    let mut to_create = Vec::new();
    let mut positions = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.as_str().to_string();
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        let duplicate = request
            .topics
            .iter()
            .filter(|other| other.name == topic.name)
            .count()
            > 1;
        let partitions = if topic.num_partitions == -1 {
            broker.config.default_partitions
        } else {
            topic.num_partitions
        };
        let mut configs = BTreeMap::new();
        let mut invalid_config = None;
        for config in &topic.configs {
            match &config.value {
                Some(value) => {
                    configs.insert(config.name.as_str().to_string(), value.as_str().to_string());
                }
                None => {
                    invalid_config = Some(format!("config '{}' has no value", config.name.as_str()))
                }
            }
        }
        let may_create = session.may_on_cluster(broker, Operation::Create)
            || session.may_on_topic(broker, Operation::Create, &name);
        if !may_create {
            result.error_code = code::TOPIC_AUTHORIZATION_FAILED;
            result.error_message = Some(str_bytes(
                "Authorization failed: creating a topic takes CREATE on the cluster or on the topic.",
            ));
        } else if duplicate {
            result.error_code = code::INVALID_REQUEST;
            result.error_message = Some(str_bytes("Duplicate topic name in the request."));
        } else if !topic.assignments.is_empty() {
            // Kafka: with explicit assignments, the partition count and the
            // replication factor must be left at -1, and the partitions are
            // numbered 0.. in order.
            let numbered = topic
                .assignments
                .iter()
                .enumerate()
                .all(|(index, assignment)| assignment.partition_index == index as i32);
            if numbered && topic.num_partitions == -1 && topic.replication_factor == -1 {
                positions.push(results.len());
                to_create.push(NewTopic {
                    name,
                    partitions: topic.assignments.len() as i32,
                    replication_factor: -1,
                    assignments: topic
                        .assignments
                        .iter()
                        .map(|assignment| assignment.broker_ids.iter().map(|id| id.0).collect())
                        .collect(),
                    configs,
                    validate_only: request.validate_only,
                });
            } else {
                result.error_code = code::INVALID_REQUEST;
                result.error_message = Some(str_bytes(
                    "With replica assignments, numPartitions and replicationFactor must be -1 and partitions numbered from 0.",
                ));
            }
        } else if let Some(message) = invalid_config {
            result.error_code = code::INVALID_CONFIG;
            result.error_message = Some(str_bytes(&message));
        } else {
            positions.push(results.len());
            to_create.push(NewTopic {
                name,
                partitions,
                replication_factor: topic.replication_factor,
                assignments: Vec::new(),
                configs,
                validate_only: request.validate_only,
            });
        }
        results.push(result);
    }
    // The partitions to create count against the sender's mutation quota
    // (a validation creates nothing and is not counted, as in Kafka).
    let quota = session.mutation_quota(broker, header, STRICT_QUOTA_VERSION);
    if !request.validate_only {
        let mut admitted = (Vec::new(), Vec::new());
        for (position, topic) in positions.into_iter().zip(to_create) {
            if quota.admit(topic.partitions.max(0) as u64) {
                admitted.0.push(position);
                admitted.1.push(topic);
            } else {
                results[position].error_code = code::THROTTLING_QUOTA_EXCEEDED;
                results[position].error_message = Some(str_bytes(MutationQuota::REFUSAL));
            }
        }
        (positions, to_create) = admitted;
    }
    if !to_create.is_empty() {
        match broker
            .controller_call_within(
                ControllerRequest::CreateTopics(to_create),
                request.timeout_ms,
            )
            .await
        {
            Some(Some(ShardResponse::Topics(outcomes))) => {
                for (position, outcome) in positions.into_iter().zip(outcomes) {
                    let result = &mut results[position];
                    result.error_code = outcome.error_code;
                    result.error_message = outcome.error_message.as_deref().map(str_bytes);
                    if outcome.error_code == code::NONE && version >= 7 {
                        result.topic_id = Uuid::from_bytes(outcome.topic_id);
                    }
                    if outcome.error_code == code::NONE && version >= 5 {
                        result.num_partitions = outcome.partitions;
                        result.replication_factor = outcome.replication_factor;
                    }
                }
            }
            None => {
                for position in positions {
                    results[position].error_code = code::REQUEST_TIMED_OUT;
                }
            }
            Some(_) => {
                for position in positions {
                    results[position].error_code = code::UNKNOWN_SERVER_ERROR;
                }
            }
        }
    }
    if version < 1 {
        for result in &mut results {
            result.error_message = None;
        }
    }
    let mut response = CreateTopicsResponse::default();
    response.throttle_time_ms = quota.throttle_ms();
    response.topics = results;
    Some(encode(&response, version))
}
