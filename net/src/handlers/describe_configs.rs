//! DescribeConfigs: topic configs (overrides, and the broker settings or
//! defaults they fall back to) and the broker's settings, each with its
//! source, its synonyms when asked (v1+), and from v3 its type and, when
//! asked, its documentation, as Kafka answers it (`config_catalog`).

use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse, RequestHeader};

use super::Session;
use super::{encode, str_bytes};
use crate::acl::Operation;
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::config_catalog::{
    self, broker_setting, broker_synonym, broker_values, defaults_of, source, ConfigType, Sourced,
    BROKER_SETTINGS,
};
use crate::errors::code;
use crate::topic_config;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (1, 4);

/// Kafka's ConfigResource types.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// What a request asks to be told besides the values.
#[derive(Clone, Copy)]
struct Asked {
    synonyms: bool,
    documentation: bool,
}

/// One config's entry: `values` is the value in use first, then the
/// values it would fall back to (its synonyms).
fn entry(
    name: &str,
    values: &[Sourced],
    kind: ConfigType,
    doc: &str,
    read_only: bool,
    asked: Asked,
) -> DescribeConfigsResourceResult {
    let mut result = DescribeConfigsResourceResult::default();
    result.name = str_bytes(name);
    if let Some(first) = values.first() {
        result.value = first.value.as_deref().map(str_bytes);
        result.config_source = first.source;
    }
    result.read_only = read_only;
    result.is_sensitive = false;
    result.config_type = kind as i8;
    if asked.documentation {
        result.documentation = Some(str_bytes(doc));
    }
    if asked.synonyms {
        result.synonyms = values
            .iter()
            .map(|value| {
                let mut synonym = DescribeConfigsSynonym::default();
                synonym.name = str_bytes(value.name);
                synonym.value = value.value.as_deref().map(str_bytes);
                synonym.source = value.source;
                synonym
            })
            .collect();
    }
    result
}

/// The broker's configuration with the addresses it has in fact: a listen
/// port of 0 is the port the kernel picked, and clients are told the
/// advertised address the broker registered.
fn bound_config(broker: &Broker) -> BrokerConfig {
    let mut config = BrokerConfig::clone(&broker.config);
    let (host, port) = broker.advertised();
    if config.listen.port() == 0 && config.advertised_port.is_none() {
        config.listen.set_port(port);
    }
    config.advertised_host = Some(host);
    config.advertised_port = Some(port);
    config
}

/// A topic config's value and its synonyms: the topic's own value, then
/// the broker setting it falls back to (the operator's value, its
/// default), or Kafka's default when there is no such setting.
fn topic_values(
    broker: &Broker,
    defaults: &BrokerConfig,
    name: &'static str,
    own: Option<&String>,
) -> Option<Vec<Sourced>> {
    let mut values = Vec::new();
    if let Some(value) = own {
        values.push(Sourced {
            name,
            value: Some(value.clone()),
            source: source::TOPIC,
        });
    }
    match broker_synonym(name).and_then(broker_setting) {
        Some(setting) => values.extend(broker_values(setting, &broker.config, defaults)),
        None if values.is_empty() => values.push(Sourced {
            name,
            value: Some(topic_config::default_value(name, &broker.config.log)?),
            source: source::DEFAULT,
        }),
        None => {}
    }
    Some(values)
}

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: DescribeConfigsRequest,
) -> Option<Pieces> {
    let metadata = broker.metadata();
    let mut response = DescribeConfigsResponse::default();
    let asked = Asked {
        synonyms: request.include_synonyms,
        documentation: request.include_documentation,
    };
    for resource in &request.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        if let Some(error_code) = session.config_refusal(
            broker,
            resource.resource_type,
            resource.resource_name.as_str(),
            Operation::DescribeConfigs,
        ) {
            result.error_code = error_code;
            response.results.push(result);
            continue;
        }
        let wanted = |name: &str| {
            resource
                .configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|key| key.as_str() == name))
        };
        match resource.resource_type {
            RESOURCE_TOPIC => match metadata.topics.get(resource.resource_name.as_str()) {
                Some(topic) => {
                    let defaults = defaults_of(&broker.config);
                    for name in topic_config::names().filter(|name| wanted(name)) {
                        let Some(values) =
                            topic_values(broker, &defaults, name, topic.configs.get(name))
                        else {
                            continue;
                        };
                        let (kind, doc) = config_catalog::topic_info(name);
                        result
                            .configs
                            .push(entry(name, &values, kind, doc, false, asked));
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
                    result.error_message = Some(str_bytes(&format!(
                        "Unexpected broker id, expected {} but received {name}.",
                        broker.config.node_id
                    )));
                } else {
                    let config = bound_config(broker);
                    let defaults = defaults_of(&config);
                    for setting in BROKER_SETTINGS
                        .iter()
                        .filter(|setting| wanted(setting.name))
                    {
                        let values = broker_values(setting, &config, &defaults);
                        result.configs.push(entry(
                            setting.name,
                            &values,
                            setting.kind,
                            setting.doc,
                            true,
                            asked,
                        ));
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
