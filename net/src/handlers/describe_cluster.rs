//! DescribeCluster: the live brokers and the active controller, from the
//! metadata image. From v2 (KIP-1073) a client may ask for the fenced
//! brokers too, each marked as fenced, as Kafka 4 admin tools do to show
//! every registered broker.

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, RequestHeader,
};

use super::Session;
use super::{encode, str_bytes, AUTHORIZED_OPERATIONS_UNKNOWN, CLUSTER_OPERATIONS};
use crate::acl::Operation;
use crate::broker::Broker;
use crate::errors::code;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 2);

/// First version that may list fenced brokers.
const FENCED_BROKERS_VERSION: i16 = 2;

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: DescribeClusterRequest,
) -> Option<Pieces> {
    let mut response = DescribeClusterResponse::default();
    response.error_code = code::NONE;
    response.cluster_id = str_bytes(&broker.metadata().cluster_id);
    response.controller_id = BrokerId(broker.controller_id());
    // Endpoint type 1 is "brokers"; 2 (controllers) is answered the same
    // way: every node is both (combined mode).
    response.endpoint_type = request.endpoint_type;
    let version = header.request_api_version;
    let registered = if version >= FENCED_BROKERS_VERSION && request.include_fenced_brokers {
        session.registered_brokers(broker)
    } else {
        session.live_brokers(broker)
    };
    response.brokers = registered
        .into_iter()
        .map(|known| {
            let mut node = DescribeClusterBroker::default();
            node.broker_id = BrokerId(known.id);
            node.host = str_bytes(&known.host);
            node.port = i32::from(known.port);
            node.rack = known.rack.as_deref().map(str_bytes);
            if version >= FENCED_BROKERS_VERSION {
                node.is_fenced = known.fenced;
            }
            node
        })
        .collect();
    // As Kafka: anyone may describe the cluster; what the sender may do on
    // it is told to a sender that may DESCRIBE it, and nothing to others.
    response.cluster_authorized_operations = if request.include_cluster_authorized_operations {
        cluster_operations(broker, session)
    } else {
        AUTHORIZED_OPERATIONS_UNKNOWN
    };
    Some(encode(&response, version))
}

/// What the sender may do on the cluster, told to a sender that may
/// DESCRIBE it, and nothing (0) to others, as Kafka answers DescribeCluster
/// and Metadata.
pub fn cluster_operations(broker: &Broker, session: &Session) -> i32 {
    if session.may_on_cluster(broker, Operation::Describe) {
        session.authorized_operations(
            broker,
            crate::acl::ResourceType::Cluster,
            crate::acl::CLUSTER_NAME,
            CLUSTER_OPERATIONS,
        )
    } else {
        0
    }
}
