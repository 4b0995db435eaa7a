//! DescribeCluster: the live brokers and the active controller, from the
//! metadata image.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, RequestHeader,
};

use super::{encode, str_bytes};
use crate::broker::Broker;
use crate::errors::code;

pub const VERSIONS: (i16, i16) = (0, 1);

/// Kafka's "authorized operations not requested" marker.
const AUTHORIZED_OPERATIONS_UNKNOWN: i32 = i32::MIN;

pub async fn handle(
    broker: &Rc<Broker>,
    header: &RequestHeader,
    request: DescribeClusterRequest,
) -> Option<Vec<Bytes>> {
    let mut response = DescribeClusterResponse::default();
    response.error_code = code::NONE;
    response.cluster_id = str_bytes(&broker.metadata().cluster_id);
    response.controller_id = BrokerId(broker.controller_id());
    // Endpoint type 1 is "brokers"; 2 (controllers) is answered the same
    // way: every node is both (combined mode).
    response.endpoint_type = request.endpoint_type;
    response.brokers = broker
        .live_brokers()
        .into_iter()
        .map(|live| {
            let mut node = DescribeClusterBroker::default();
            node.broker_id = BrokerId(live.id);
            node.host = str_bytes(&live.host);
            node.port = i32::from(live.port);
            node.rack = live.rack.as_deref().map(str_bytes);
            node
        })
        .collect();
    response.cluster_authorized_operations = if request.include_cluster_authorized_operations {
        0
    } else {
        AUTHORIZED_OPERATIONS_UNKNOWN
    };
    Some(encode(&response, header.request_api_version))
}
