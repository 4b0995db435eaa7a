//! Metadata: brokers, topics, partitions and leaders; creates requested
//! topics that do not exist when `auto.create.topics.enable` allows.
//!
//! v13 (KIP-1102) adds a top-level error code for REBOOTSTRAP_REQUIRED,
//! which a broker sends when the client's bootstrap servers no longer lead
//! it anywhere; a Sluice broker always answers for itself, so it is NONE.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, RequestHeader, TopicName,
};
use sluice_engine::{ClusterMetadata, TopicMetadata};
use uuid::Uuid;

use super::Session;
use super::{encode, str_bytes, AUTHORIZED_OPERATIONS_UNKNOWN};
use crate::acl::Operation;
use crate::broker::{validate_topic_name, Broker, ControllerRequest, NewTopic, ShardResponse};
use crate::constants::AUTO_CREATE_WAIT_MS;
use crate::errors::code;
use crate::groups;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 13);

fn topic_response(
    metadata: &ClusterMetadata,
    topic: &TopicMetadata,
    version: i16,
) -> MetadataResponseTopic {
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
    let live = |id: &i32| {
        metadata
            .brokers
            .get(id)
            .is_some_and(|broker| !broker.fenced)
    };
    response.partitions = topic
        .placement
        .iter()
        .enumerate()
        .map(|(index, state)| {
            let mut partition = MetadataResponsePartition::default();
            partition.partition_index = index as i32;
            partition.error_code = if state.leader >= 0 {
                code::NONE
            } else {
                code::LEADER_NOT_AVAILABLE
            };
            partition.leader_id = BrokerId(state.leader);
            if version >= 7 {
                partition.leader_epoch = state.leader_epoch;
            }
            partition.replica_nodes = state.replicas.iter().map(|id| BrokerId(*id)).collect();
            partition.isr_nodes = state.isr.iter().map(|id| BrokerId(*id)).collect();
            if version >= 5 {
                partition.offline_replicas = state
                    .replicas
                    .iter()
                    .filter(|id| !live(id))
                    .map(|id| BrokerId(*id))
                    .collect();
            }
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
    session: &Session,
    header: &RequestHeader,
    request: MetadataRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    // Before v4 every request may auto-create; from v4 the client says.
    let allow_create =
        broker.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let may_describe = |name: &str| session.may_on_topic(broker, Operation::Describe, name);
    // Kafka's auto-creation needs CREATE on the cluster or on the topic; a
    // topic the sender may not create is answered as unauthorized.
    let may_create = |name: &str| {
        session.may_on_cluster(broker, Operation::Create)
            || session.may_on_topic(broker, Operation::Create, name)
    };
    let mut topics = Vec::new();
    match request.topics {
        None => {
            // Every topic the sender may describe; the others are not named.
            let metadata = broker.metadata();
            topics.extend(
                metadata
                    .topics
                    .values()
                    .filter(|topic| may_describe(&topic.name))
                    .map(|topic| topic_response(&metadata, topic, version)),
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
            // Kafka asks the same CREATE of it as of any auto-created topic.
            if allow_create
                && offsets_wanted
                && !metadata.topics.contains_key(groups::OFFSETS_TOPIC)
                && may_describe(groups::OFFSETS_TOPIC)
                && may_create(groups::OFFSETS_TOPIC)
            {
                let _ = groups::ensure_offsets_topic(broker).await;
            }
            // Topics whose creation is still under way when the answer
            // goes: LEADER_NOT_AVAILABLE, as Kafka answers a topic it is
            // auto-creating; the client asks again.
            let mut being_created: Vec<String> = Vec::new();
            let to_create: Vec<String> = requested
                .iter()
                .filter_map(|topic| topic.name.as_ref().map(|name| name.0.as_str().to_string()))
                .filter(|name| {
                    !metadata.topics.contains_key(name) && validate_topic_name(name).is_ok()
                })
                .filter(|name| may_describe(name) && may_create(name))
                .filter(|name| name != groups::OFFSETS_TOPIC)
                .collect();
            if allow_create && !to_create.is_empty() {
                let new_topics = to_create
                    .iter()
                    .map(|name| NewTopic {
                        name: name.clone(),
                        partitions: broker.config.default_partitions,
                        replication_factor: -1,
                        assignments: Vec::new(),
                        configs: BTreeMap::new(),
                        validate_only: false,
                    })
                    .collect();
                match broker
                    .controller_call_within(
                        ControllerRequest::CreateTopics(new_topics),
                        AUTO_CREATE_WAIT_MS,
                    )
                    .await
                {
                    Some(Some(ShardResponse::Topics(_))) => {}
                    Some(other) => tracing::warn!(?other, "auto-creating topics failed"),
                    None => being_created = to_create,
                }
            }
            let metadata = broker.metadata();
            for topic in requested {
                match &topic.name {
                    Some(name) if !may_describe(name.0.as_str()) => topics.push(missing_topic(
                        Some(name.clone()),
                        Uuid::nil(),
                        code::TOPIC_AUTHORIZATION_FAILED,
                    )),
                    Some(name) => match metadata.topics.get(name.0.as_str()) {
                        Some(found) => topics.push(topic_response(&metadata, found, version)),
                        None => {
                            let error = if validate_topic_name(name.0.as_str()).is_err() {
                                code::INVALID_TOPIC_EXCEPTION
                            } else if being_created
                                .iter()
                                .any(|created| created == name.0.as_str())
                            {
                                code::LEADER_NOT_AVAILABLE
                            } else if allow_create && !may_create(name.0.as_str()) {
                                code::TOPIC_AUTHORIZATION_FAILED
                            } else {
                                code::UNKNOWN_TOPIC_OR_PARTITION
                            };
                            topics.push(missing_topic(Some(name.clone()), Uuid::nil(), error));
                        }
                    },
                    None => match broker.topic_by_id(&metadata, topic.topic_id.as_bytes()) {
                        Some(found) if !may_describe(&found.name) => topics.push(missing_topic(
                            None,
                            topic.topic_id,
                            code::TOPIC_AUTHORIZATION_FAILED,
                        )),
                        Some(found) => topics.push(topic_response(&metadata, found, version)),
                        None => {
                            let id = if version >= 10 {
                                topic.topic_id
                            } else {
                                Uuid::nil()
                            };
                            topics.push(missing_topic(None, id, code::UNKNOWN_TOPIC_ID))
                        }
                    },
                }
            }
        }
    }
    let mut response = MetadataResponse::default();
    response.brokers = session
        .live_brokers(broker)
        .into_iter()
        .map(|live| {
            let mut node = MetadataResponseBroker::default();
            node.node_id = BrokerId(live.id);
            node.host = str_bytes(&live.host);
            node.port = i32::from(live.port);
            if version >= 1 {
                node.rack = live.rack.as_deref().map(str_bytes);
            }
            node
        })
        .collect();
    if version >= 2 {
        response.cluster_id = Some(str_bytes(&broker.metadata().cluster_id));
    }
    if version >= 1 {
        response.controller_id = BrokerId(broker.controller_id());
    }
    response.topics = topics;
    // Asked for from v8; the cluster's field went in v11.
    if request.include_topic_authorized_operations {
        for topic in &mut response.topics {
            if let (code::NONE, Some(name)) = (topic.error_code, &topic.name) {
                topic.topic_authorized_operations = session.topic_operations(broker, name);
            }
        }
    }
    response.cluster_authorized_operations = if request.include_cluster_authorized_operations {
        super::describe_cluster::cluster_operations(broker, session)
    } else {
        AUTHORIZED_OPERATIONS_UNKNOWN
    };
    response.error_code = code::NONE;
    Some(encode(&response, version))
}
