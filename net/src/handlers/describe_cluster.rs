//! DescribeCluster: this node as the cluster's only broker and controller.

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
    let (host, port) = broker.advertised();
    let mut response = DescribeClusterResponse::default();
    response.error_code = code::NONE;
    response.cluster_id = str_bytes(&broker.metadata().cluster_id);
    response.controller_id = BrokerId(broker.config.node_id);
    // Endpoint type 1 is "brokers"; 2 (controllers) is answered the same
    // way on a combined single node.
    response.endpoint_type = request.endpoint_type;
    let mut node = DescribeClusterBroker::default();
    node.broker_id = BrokerId(broker.config.node_id);
    node.host = str_bytes(&host);
    node.port = i32::from(port);
    response.brokers = vec![node];
    response.cluster_authorized_operations = if request.include_cluster_authorized_operations {
        0
    } else {
        AUTHORIZED_OPERATIONS_UNKNOWN
    };
    Some(encode(&response, header.request_api_version))
}
