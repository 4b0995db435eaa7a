//! AlterConfigs: the legacy config change, which replaces a topic's whole set
//! of overrides (a config not named goes back to its default). librdkafka's
//! `rd_kafka_AlterConfigs`, and so the `rdkafka` crate's AdminClient, can
//! only change configs this way. It runs as one IncrementalAlterConfigs
//! change on the controller: SET for every named config, DELETE for every
//! other known one, validated as a whole before anything changes.

use std::rc::Rc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, RequestHeader};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::Session;
use super::{encode, str_bytes};
use crate::acl::Operation;
use crate::broker::{config_operation, Broker, ConfigChange, ControllerRequest, ShardResponse};
use crate::config_catalog::static_broker_configs;
use crate::errors::code;
use crate::topic_config;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 2);

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: AlterConfigsRequest,
) -> Option<Pieces> {
    let mut response = AlterConfigsResponse::default();
    for resource in &request.resources {
        let mut result = AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        if let Some(error_code) = session.config_refusal(
            broker,
            resource.resource_type,
            resource.resource_name.as_str(),
            Operation::AlterConfigs,
        ) {
            result.error_code = error_code;
            response.responses.push(result);
            continue;
        }
        match resource.resource_type {
            RESOURCE_TOPIC => {
                let mut changes: Vec<ConfigChange> = resource
                    .configs
                    .iter()
                    .map(|config| ConfigChange {
                        name: config.name.as_str().to_string(),
                        operation: config_operation::SET,
                        value: config
                            .value
                            .as_ref()
                            .map(|value| value.as_str().to_string()),
                    })
                    .collect();
                let named: Vec<String> = changes.iter().map(|change| change.name.clone()).collect();
                changes.extend(
                    topic_config::names()
                        .filter(|name| !named.iter().any(|named| named == name))
                        .map(|name| ConfigChange {
                            name: name.to_string(),
                            operation: config_operation::DELETE,
                            value: None,
                        }),
                );
                let call = ControllerRequest::AlterTopicConfigs {
                    topic: resource.resource_name.as_str().to_string(),
                    changes,
                    validate_only: request.validate_only,
                };
                match broker.controller_call(call).await {
                    Some(ShardResponse::Topics(outcomes)) if !outcomes.is_empty() => {
                        result.error_code = outcomes[0].error_code;
                        result.error_message = outcomes[0].error_message.as_deref().map(str_bytes);
                    }
                    _ => result.error_code = code::UNKNOWN_SERVER_ERROR,
                }
            }
            RESOURCE_BROKER => {
                result.error_code = code::INVALID_REQUEST;
                result.error_message = Some(str_bytes(&static_broker_configs(
                    resource.configs.iter().map(|config| config.name.as_str()),
                )));
            }
            other => {
                result.error_code = code::INVALID_REQUEST;
                result.error_message =
                    Some(str_bytes(&format!("Unsupported resource type {other}.")));
            }
        }
        response.responses.push(result);
    }
    Some(encode(&response, header.request_api_version))
}
