//! Metadata: brokers, topics, partitions and leaders; creates requested
//! topics that do not exist when `auto.create.topics.enable` allows.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, RequestHeader, TopicName,
};
use sluice_engine::TopicMetadata;
use uuid::Uuid;

use super::{encode, str_bytes};
use crate::broker::{validate_topic_name, Broker, ControllerRequest, NewTopic, ShardResponse};
use crate::errors::code;
use crate::groups;

pub const VERSIONS: (i16, i16) = (0, 12);

/// Marks "authorized operations not requested" in Kafka's responses.
const AUTHORIZED_OPERATIONS_UNKNOWN: i32 = i32::MIN;

fn topic_response(broker: &Broker, topic: &TopicMetadata, version: i16) -> MetadataResponseTopic {
    let node = BrokerId(broker.config.node_id);
    let mut response = MetadataResponseTopic::default();
    response.error_code = code::NONE;
    response.name = Some(TopicName(str_bytes(&topic.name)));
    if version >= 10 {
        response.topic_id = Uuid::from_bytes(topic.id);
    }
    if version >= 1 {
        response.is_internal = topic.name.starts_with("__");
    }
    response.topic_authorized_operations = AUTHORIZED_OPERATIONS_UNKNOWN;
    response.partitions = (0..topic.partitions)
        .map(|index| {
            let mut partition = MetadataResponsePartition::default();
            partition.error_code = code::NONE;
            partition.partition_index = index;
            partition.leader_id = node;
            if version >= 7 {
                partition.leader_epoch = 0;
            }
            partition.replica_nodes = vec![node];
            partition.isr_nodes = vec![node];
            partition
        })
        .collect();
    response
}

fn missing_topic(
    name: Option<TopicName>,
    topic_id: Uuid,
    error_code: i16,
) -> MetadataResponseTopic {
    let mut response = MetadataResponseTopic::default();
    response.error_code = error_code;
    response.name = name;
    response.topic_id = topic_id;
    response.topic_authorized_operations = AUTHORIZED_OPERATIONS_UNKNOWN;
    response
}

pub async fn handle(
    broker: &Rc<Broker>,
    header: &RequestHeader,
    request: MetadataRequest,
) -> Option<Vec<Bytes>> {
    let version = header.request_api_version;
    // Before v4 every request may auto-create; from v4 the client says.
    let allow_create =
        broker.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let mut topics = Vec::new();
    match request.topics {
        None => {
            let metadata = broker.metadata();
            topics.extend(
                metadata
                    .topics
                    .values()
                    .map(|topic| topic_response(broker, topic, version)),
            );
        }
        Some(requested) => {
            // Names first: create the missing ones in one controller call.
            let metadata = broker.metadata();
            // `__consumer_offsets` is created by the group coordinator with
            // its own settings (compacted, never time-retained), never as a
            // plain auto-created topic.
            let offsets_wanted = requested.iter().any(|topic| {
                topic
                    .name
                    .as_ref()
                    .is_some_and(|name| name.0.as_str() == groups::OFFSETS_TOPIC)
            });
            if allow_create
                && offsets_wanted
                && !metadata.topics.contains_key(groups::OFFSETS_TOPIC)
            {
                let _ = groups::ensure_offsets_topic(broker).await;
            }
            let to_create: Vec<String> = requested
                .iter()
                .filter_map(|topic| topic.name.as_ref().map(|name| name.0.as_str().to_string()))
                .filter(|name| {
                    !metadata.topics.contains_key(name) && validate_topic_name(name).is_ok()
                })
                .filter(|name| name != groups::OFFSETS_TOPIC)
                .collect();
            if allow_create && !to_create.is_empty() {
                let new_topics = to_create
                    .iter()
                    .map(|name| NewTopic {
                        name: name.clone(),
                        partitions: broker.config.default_partitions,
                        configs: BTreeMap::new(),
                        validate_only: false,
                    })
                    .collect();
                match broker
                    .controller_call(ControllerRequest::CreateTopics(new_topics))
                    .await
                {
                    Some(ShardResponse::Topics(_)) => {}
                    other => tracing::warn!(?other, "auto-creating topics failed"),
                }
            }
            let metadata = broker.metadata();
            for topic in requested {
                match &topic.name {
                    Some(name) => match metadata.topics.get(name.0.as_str()) {
                        Some(found) => topics.push(topic_response(broker, found, version)),
                        None => {
                            let error = if validate_topic_name(name.0.as_str()).is_err() {
                                code::INVALID_TOPIC_EXCEPTION
                            } else {
                                code::UNKNOWN_TOPIC_OR_PARTITION
                            };
                            topics.push(missing_topic(Some(name.clone()), Uuid::nil(), error));
                        }
                    },
                    None => {
                        let id = *topic.topic_id.as_bytes();
                        match metadata
                            .topics
                            .values()
                            .find(|candidate| candidate.id == id)
                        {
                            Some(found) => topics.push(topic_response(broker, found, version)),
                            None => {
                                let id = if version >= 10 {
                                    topic.topic_id
                                } else {
                                    Uuid::nil()
                                };
                                topics.push(missing_topic(None, id, code::UNKNOWN_TOPIC_ID))
                            }
                        }
                    }
                }
            }
        }
    }
    let (host, port) = broker.advertised();
    let mut node = MetadataResponseBroker::default();
    node.node_id = BrokerId(broker.config.node_id);
    node.host = str_bytes(&host);
    node.port = i32::from(port);
    let mut response = MetadataResponse::default();
    response.brokers = vec![node];
    if version >= 2 {
        response.cluster_id = Some(str_bytes(&broker.metadata().cluster_id));
    }
    if version >= 1 {
        response.controller_id = BrokerId(broker.config.node_id);
    }
    response.topics = topics;
    response.cluster_authorized_operations = AUTHORIZED_OPERATIONS_UNKNOWN;
    Some(encode(&response, version))
}
