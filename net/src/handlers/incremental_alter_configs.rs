//! IncrementalAlterConfigs: topic configs (SET, DELETE, and APPEND and
//! SUBTRACT on list configs, applied by the controller). Broker configs are
//! static (file, environment, flags) and refused with a message saying so.

use std::rc::Rc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, RequestHeader,
};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::Session;
use super::{encode, str_bytes};
use crate::acl::Operation;
use crate::broker::{Broker, ConfigChange, ControllerRequest, ShardResponse};
use crate::config_catalog::static_broker_configs;
use crate::errors::code;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 1);

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: IncrementalAlterConfigsRequest,
) -> Option<Pieces> {
    let mut response = IncrementalAlterConfigsResponse::default();
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
                let changes = resource
                    .configs
                    .iter()
                    .map(|config| ConfigChange {
                        name: config.name.as_str().to_string(),
                        operation: config.config_operation,
                        value: config
                            .value
                            .as_ref()
                            .map(|value| value.as_str().to_string()),
                    })
                    .collect();
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
