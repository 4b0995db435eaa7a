//! WriteTxnMarkers: another broker's transaction coordinator asks this
//! broker to write commit or abort markers to partitions it leads. Each
//! marker is appended, made durable and replicated like an acks=all write;
//! a partition this broker does not lead answers NOT_LEADER_OR_FOLLOWER and
//! is never passed on (the coordinator retries with newer metadata).
//!
//! v2 (KIP-1228) tells each marker's transaction version: from version 2 on
//! the coordinator ends a transaction at a bumped epoch, so the partition
//! refuses a marker at the epoch of the transaction open there
//! (INVALID_PRODUCER_EPOCH, as for an older epoch). Below v2 a marker is
//! checked as one of version 0.

use std::rc::Rc;

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{RequestHeader, WriteTxnMarkersResponse};
use sluice_engine::TxnMarker;

use super::encode;
use super::Session;
use crate::acl::Operation;
use crate::broker::Broker;
use crate::codec::write_txn_markers::{WriteTxnMarkers, WRITE_TXN_MARKERS_VERSIONS};
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = WRITE_TXN_MARKERS_VERSIONS;

/// The newest version the response encoder knows: v2 changed only the
/// request, and its response is v1's byte for byte.
const RESPONSE_ENCODING_MAX: i16 = 1;

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: WriteTxnMarkers,
) -> Option<Pieces> {
    let mut entries = Vec::new();
    for (written, transaction_version) in request.markers() {
        let marker = TxnMarker {
            producer_id: written.producer_id.0,
            producer_epoch: written.producer_epoch,
            commit: written.transaction_result,
            coordinator_epoch: written.coordinator_epoch,
            transaction_version,
        };
        for topic in &written.topics {
            for partition in &topic.partition_indexes {
                entries.push((topic.name.to_string(), *partition, marker));
            }
        }
    }
    // Markers come from transaction coordinators: CLUSTER_ACTION.
    let mut codes = if session.may_on_cluster(broker, Operation::ClusterAction) {
        broker.write_markers_here(entries).await
    } else {
        vec![crate::errors::code::CLUSTER_AUTHORIZATION_FAILED; entries.len()]
    }
    .into_iter();
    let mut response = WriteTxnMarkersResponse::default();
    response.markers = request
        .request
        .markers
        .iter()
        .map(|written| {
            let mut result = WritableTxnMarkerResult::default();
            result.producer_id = written.producer_id;
            result.topics = written
                .topics
                .iter()
                .map(|topic| {
                    let mut topic_result = WritableTxnMarkerTopicResult::default();
                    topic_result.name = topic.name.clone();
                    topic_result.partitions = topic
                        .partition_indexes
                        .iter()
                        .map(|partition| {
                            let mut partition_result = WritableTxnMarkerPartitionResult::default();
                            partition_result.partition_index = *partition;
                            partition_result.error_code = codes
                                .next()
                                .unwrap_or(crate::errors::code::UNKNOWN_SERVER_ERROR);
                            partition_result
                        })
                        .collect();
                    topic_result
                })
                .collect();
            result
        })
        .collect();
    Some(encode(
        &response,
        header.request_api_version.min(RESPONSE_ENCODING_MAX),
    ))
}
