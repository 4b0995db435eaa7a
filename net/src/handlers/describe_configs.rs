//! DescribeConfigs: topic configs (overrides and defaults) and the broker
//! configs in use.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse, RequestHeader};

use super::{encode, str_bytes};
use crate::broker::Broker;
use crate::constants::REQUEST_BYTES_MAX;
use crate::errors::code;
use crate::topic_config;

pub const VERSIONS: (i16, i16) = (1, 4);

/// Kafka's ConfigResource types.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
/// Kafka's config sources.
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn entry(name: &str, value: String, source: i8, read_only: bool) -> DescribeConfigsResourceResult {
    let mut result = DescribeConfigsResourceResult::default();
    result.name = str_bytes(name);
    result.value = Some(str_bytes(&value));
    result.config_source = source;
    result.read_only = read_only;
    result
}

/// The broker's configs, as `(name, value)`, for DescribeConfigs.
pub fn broker_configs(broker: &Broker) -> Vec<(&'static str, String)> {
    let config = &broker.config;
    vec![
        (
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
        ),
        ("broker.id", config.node_id.to_string()),
        (
            "connections.max.idle.ms",
            config.connections_max_idle_ms.to_string(),
        ),
        (
            "delete.topic.enable",
            config.delete_topic_enable.to_string(),
        ),
        ("log.dirs", config.data_dir.display().to_string()),
        (
            "log.retention.bytes",
            config.log.retention_bytes.to_string(),
        ),
        (
            "log.retention.check.interval.ms",
            config.retention_check_interval_ms.to_string(),
        ),
        ("log.retention.ms", config.log.retention_ms.to_string()),
        ("log.segment.bytes", config.log.segment_bytes.to_string()),
        ("log.roll.ms", config.log.segment_ms.to_string()),
        ("max.connections", config.max_connections.to_string()),
        (
            "max.connections.per.ip",
            config.max_connections_per_ip.to_string(),
        ),
        (
            "message.max.bytes",
            config.log.max_message_bytes.to_string(),
        ),
        ("node.id", config.node_id.to_string()),
        ("num.partitions", config.default_partitions.to_string()),
        ("socket.request.max.bytes", REQUEST_BYTES_MAX.to_string()),
    ]
}

pub async fn handle(
    broker: &Rc<Broker>,
    header: &RequestHeader,
    request: DescribeConfigsRequest,
) -> Option<Vec<Bytes>> {
    let metadata = broker.metadata();
    let mut response = DescribeConfigsResponse::default();
    for resource in &request.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let wanted = |name: &str| {
            resource
                .configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|key| key.as_str() == name))
        };
        match resource.resource_type {
            RESOURCE_TOPIC => match metadata.topics.get(resource.resource_name.as_str()) {
                Some(topic) => {
                    for name in topic_config::names().filter(|name| wanted(name)) {
                        let (value, source) = match topic.configs.get(name) {
                            Some(value) => (value.clone(), SOURCE_DYNAMIC_TOPIC),
                            None => match topic_config::default_value(name, &broker.config.log) {
                                Some(value) => (value, SOURCE_DEFAULT),
                                None => continue,
                            },
                        };
                        result.configs.push(entry(name, value, source, false));
                    }
                }
                None => {
                    result.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
                    result.error_message = Some(str_bytes("Topic does not exist."));
                }
            },
            RESOURCE_BROKER => {
                let name = resource.resource_name.as_str();
                if !name.is_empty() && name != broker.config.node_id.to_string() {
                    result.error_code = code::INVALID_REQUEST;
                    result.error_message = Some(str_bytes("Unknown broker id."));
                } else {
                    for (config, value) in broker_configs(broker)
                        .into_iter()
                        .filter(|(name, _)| wanted(name))
                    {
                        result
                            .configs
                            .push(entry(config, value, SOURCE_STATIC_BROKER, true));
                    }
                }
            }
            other => {
                result.error_code = code::INVALID_REQUEST;
                result.error_message =
                    Some(str_bytes(&format!("Unsupported resource type {other}.")));
            }
        }
        response.results.push(result);
    }
    Some(encode(&response, header.request_api_version))
}
