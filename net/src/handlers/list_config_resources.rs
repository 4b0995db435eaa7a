//! ListConfigResources (API key 74, KIP-1142): the config resources a
//! client may describe. v0 (once ListClientMetricsResources) asks for the
//! client-metrics resources, of which Sluice has none. v1 asks for the
//! resources of the listed types, every type when none is listed: each
//! topic and each registered broker; Sluice has no client-metrics or group
//! config resources, and no broker loggers to configure, so those types
//! list nothing. A type Kafka does not have is UNSUPPORTED_VERSION, as
//! Kafka answers it.

use std::rc::Rc;

use kafka_protocol::messages::list_config_resources_response::ConfigResource;
use kafka_protocol::messages::{
    ListConfigResourcesRequest, ListConfigResourcesResponse, RequestHeader,
};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::Session;
use super::{encode, str_bytes};
use crate::acl::Operation;
use crate::broker::Broker;
use crate::errors::code;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 1);

/// Kafka's other ConfigResource types, which Sluice lists nothing of.
const RESOURCE_BROKER_LOGGER: i8 = 8;
const RESOURCE_CLIENT_METRICS: i8 = 16;
const RESOURCE_GROUP: i8 = 32;
/// The types a v1 request may ask for, and what an empty list means.
const KAFKA_TYPES: [i8; 5] = [
    RESOURCE_TOPIC,
    RESOURCE_BROKER,
    RESOURCE_BROKER_LOGGER,
    RESOURCE_CLIENT_METRICS,
    RESOURCE_GROUP,
];

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: ListConfigResourcesRequest,
) -> Option<Pieces> {
    let mut response = ListConfigResourcesResponse::default();
    if !session.may_on_cluster(broker, Operation::DescribeConfigs) {
        response.error_code = code::CLUSTER_AUTHORIZATION_FAILED;
        return Some(encode(&response, header.request_api_version));
    }
    // v0 lists client-metrics resources only.
    let wanted: Vec<i8> = if header.request_api_version == 0 {
        vec![RESOURCE_CLIENT_METRICS]
    } else if request.resource_types.is_empty() {
        KAFKA_TYPES.to_vec()
    } else {
        request.resource_types.clone()
    };
    if let Some(unknown) = wanted.iter().find(|kind| !KAFKA_TYPES.contains(kind)) {
        response.error_code = code::UNSUPPORTED_VERSION;
        tracing::debug!(
            resource_type = unknown,
            "ListConfigResources: unknown resource type"
        );
        return Some(encode(&response, header.request_api_version));
    }
    let metadata = broker.metadata();
    let resource = |name: &str, kind: i8| {
        let mut resource = ConfigResource::default();
        resource.resource_name = str_bytes(name);
        resource.resource_type = kind;
        resource
    };
    for kind in wanted {
        match kind {
            RESOURCE_TOPIC => response.config_resources.extend(
                metadata
                    .topics
                    .keys()
                    .map(|name| resource(name, RESOURCE_TOPIC)),
            ),
            RESOURCE_BROKER => response.config_resources.extend(
                metadata
                    .brokers
                    .keys()
                    .map(|id| resource(&id.to_string(), RESOURCE_BROKER)),
            ),
            _ => {}
        }
    }
    Some(encode(&response, header.request_api_version))
}
