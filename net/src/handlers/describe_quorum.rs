//! DescribeQuorum: the metadata quorum as this node's member knows it (the
//! leader, its epoch, the committed index and each voter's replicated
//! index). Like Kafka, only the quorum's leader answers for the partition;
//! other nodes say NOT_LEADER_OR_FOLLOWER and name the leader.

use std::rc::Rc;

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, RequestHeader,
};
use sluice_engine::ShardId;

use super::Session;
use super::{encode, str_bytes};
use crate::acl::Operation;
use crate::broker::{Broker, ShardRequest, ShardResponse};
use crate::errors::code;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 2);

/// The metadata log's name in Kafka's KRaft, which tools ask for.
const METADATA_TOPIC: &str = "__cluster_metadata";
/// The listener name Kafka's tools show for controller endpoints.
const CONTROLLER_LISTENER: &str = "CONTROLLER";

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: DescribeQuorumRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    if !session.may_on_cluster(broker, Operation::Describe) {
        let mut response = DescribeQuorumResponse::default();
        response.error_code = code::CLUSTER_AUTHORIZATION_FAILED;
        return Some(encode(&response, version));
    }
    let status = match broker
        .mesh
        .call(ShardId(0), ShardRequest::QuorumStatus)
        .await
    {
        Some(ShardResponse::Quorum(status)) => status,
        _ => None,
    };
    let voters: Vec<i32> = if broker.config.cluster.voters.is_empty() {
        vec![broker.config.node_id]
    } else {
        broker
            .config
            .cluster
            .voters
            .iter()
            .map(|(id, _)| *id)
            .collect()
    };
    let mut response = DescribeQuorumResponse::default();
    response.error_code = code::NONE;
    response.topics = request
        .topics
        .iter()
        .map(|topic| {
            let mut data = TopicData::default();
            data.topic_name = topic.topic_name.clone();
            data.partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let mut answer = PartitionData::default();
                    answer.partition_index = partition.partition_index;
                    let known = topic.topic_name.0.as_str() == METADATA_TOPIC
                        && partition.partition_index == 0;
                    match &status {
                        _ if !known => answer.error_code = code::UNKNOWN_TOPIC_OR_PARTITION,
                        Some(status) => {
                            answer.leader_id = BrokerId(status.leader.unwrap_or(-1));
                            answer.leader_epoch = status.term as i32;
                            answer.high_watermark = status.applied as i64;
                            if status.is_leader {
                                answer.error_code = code::NONE;
                                answer.current_voters = voters
                                    .iter()
                                    .map(|id| {
                                        let mut voter = ReplicaState::default();
                                        voter.replica_id = BrokerId(*id);
                                        voter.log_end_offset = status
                                            .progress
                                            .get(id)
                                            .map_or(-1, |index| *index as i64);
                                        voter.last_fetch_timestamp = -1;
                                        voter.last_caught_up_timestamp = -1;
                                        voter
                                    })
                                    .collect();
                            } else {
                                answer.error_code = code::NOT_LEADER_OR_FOLLOWER;
                            }
                        }
                        None => answer.error_code = code::NOT_LEADER_OR_FOLLOWER,
                    }
                    answer
                })
                .collect();
            data
        })
        .collect();
    if version >= 2 {
        response.nodes = broker
            .config
            .cluster
            .voters
            .iter()
            .map(|(id, address)| {
                let mut node = Node::default();
                node.node_id = BrokerId(*id);
                let mut listener = Listener::default();
                listener.name = str_bytes(CONTROLLER_LISTENER);
                listener.host = str_bytes(&address.ip().to_string());
                listener.port = address.port();
                node.listeners = vec![listener];
                node
            })
            .collect();
    }
    Some(encode(&response, version))
}
