//! Requests from this broker to another one, beyond replication's fetches:
//! a transaction coordinator writes its markers to partitions led
//! elsewhere (WriteTxnMarkers), and a partition leader asks a coordinator
//! elsewhere whether a transactional batch's partition is in its
//! transaction (AddPartitionsToTxn v4+, KIP-890). Each shard keeps one
//! connection per peer broker and opens it again when it fails.

use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, ApiKey, ProducerId, TopicName, TransactionalId,
    WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::{Broker, MarkerEntry};
use crate::codec::write_txn_markers::WriteTxnMarkers;
use crate::constants::{PEER_CONNECT_TIMEOUT, PEER_IN_FLIGHT, PEER_REQUEST_TIMEOUT};
use crate::errors::code;
use crate::glommio_client::connection::{self, Connection, ConnectionConfig};
use crate::glommio_client::error::ClientError;
use crate::glommio_client::protocol::{
    decode_add_partitions_to_txn, decode_write_txn_markers, encode_write_txn_markers,
};

/// This shard's connections to other brokers, by node id.
#[derive(Default)]
pub(super) struct Peers {
    connections: std::cell::RefCell<HashMap<i32, Rc<Connection>>>,
}

impl Broker {
    /// A new connection to broker `node`, at the endpoint it registered,
    /// with up to `in_flight` requests in flight. `purpose` names the
    /// connection in the peer's logs.
    pub(super) async fn connect_to(
        &self,
        node: i32,
        purpose: &str,
        in_flight: usize,
    ) -> Result<Rc<Connection>, String> {
        let address = {
            let metadata = self.metadata.borrow();
            let broker = metadata
                .brokers
                .get(&node)
                .ok_or_else(|| format!("broker {node} is not registered"))?;
            format!("{}:{}", broker.host, broker.port)
        };
        let protocol = self.config.security_protocol;
        let config = ConnectionConfig {
            client_id: format!("sluice-{purpose}-{}", self.config.node_id),
            connect_timeout: PEER_CONNECT_TIMEOUT,
            request_timeout: PEER_REQUEST_TIMEOUT,
            in_flight_max: in_flight,
            tls: protocol.is_tls().then(|| self.peer_tls()).transpose()?,
        };
        let connection = Connection::connect(&address, &config)
            .await
            .map_err(|error| error.to_string())?;
        if protocol.is_sasl() {
            let credentials = self
                .config
                .inter_broker_sasl
                .credentials
                .as_ref()
                .ok_or("no inter-broker SASL login is configured")?;
            crate::glommio_client::sasl::authenticate(&connection, credentials).await?;
        }
        Ok(connection)
    }

    /// The TLS client side of a connection to another broker: it checks
    /// the peer's certificate against the truststore and shows its own
    /// keystore's certificate, which a listener that asks for client
    /// certificates maps to this broker's principal. Read at each connect
    /// (connections to peers are long-lived), so a keystore replaced on
    /// disk and reloaded with SIGHUP is shown from the next one on.
    fn peer_tls(&self) -> Result<crate::tls::ClientTls, String> {
        let settings = &self.config.tls_settings;
        let truststore = settings
            .truststore_location
            .as_deref()
            .ok_or("no ssl_truststore_location to check other brokers' certificates with")?;
        let identity =
            settings
                .keystore_location
                .as_deref()
                .map(|keystore| crate::tls::ClientIdentity {
                    certificate: keystore,
                    key: keystore,
                });
        crate::tls::client_config(truststore, identity)
    }

    /// Sends `request` to broker `node` over this shard's connection to it
    /// and returns the response's version and body.
    async fn call_peer<R: Encodable>(
        &self,
        node: i32,
        api: ApiKey,
        request: &R,
    ) -> Result<(i16, Bytes), String> {
        self.call_peer_with(node, api, |version| {
            connection::encode(api, version, request)
        })
        .await
    }

    /// As [`Broker::call_peer`], with a body `encode_at` writes for the
    /// version agreed with the peer.
    async fn call_peer_with(
        &self,
        node: i32,
        api: ApiKey,
        encode_at: impl FnOnce(i16) -> Result<Bytes, ClientError>,
    ) -> Result<(i16, Bytes), String> {
        let known = self
            .peers
            .connections
            .borrow()
            .get(&node)
            .filter(|connection| connection.is_usable())
            .cloned();
        let connection = match known {
            Some(connection) => connection,
            None => {
                let connected = self.connect_to(node, "peer", PEER_IN_FLIGHT).await?;
                self.peers
                    .connections
                    .borrow_mut()
                    .insert(node, Rc::clone(&connected));
                connected
            }
        };
        connection
            .call_with(api, encode_at)
            .await
            .map_err(|error| error.to_string())
    }

    /// Writes markers to partitions broker `node` leads (WriteTxnMarkers,
    /// one marker entry per partition so that answers match by position).
    /// One Kafka error code per marker, in order; a broker that cannot be
    /// reached or answers badly gives NOT_LEADER_OR_FOLLOWER to all, which
    /// the coordinator retries after the metadata moves on. A peer that
    /// speaks v2 gets each marker's transaction version (KIP-1228); to one
    /// that stops at v1 the markers are of version 0, which a bumped epoch
    /// passes as well.
    pub(super) async fn write_markers_remote(
        &self,
        node: i32,
        markers: &[MarkerEntry],
    ) -> Vec<i16> {
        let mut request = WriteTxnMarkersRequest::default();
        request.markers = markers
            .iter()
            .map(|(topic, partition, marker)| {
                let mut written = WritableTxnMarker::default();
                written.producer_id = ProducerId(marker.producer_id);
                written.producer_epoch = marker.producer_epoch;
                written.transaction_result = marker.commit;
                written.coordinator_epoch = marker.coordinator_epoch;
                let mut topic_entry = WritableTxnMarkerTopic::default();
                topic_entry.name = TopicName(StrBytes::from_string(topic.clone()));
                topic_entry.partition_indexes = vec![*partition];
                written.topics = vec![topic_entry];
                written
            })
            .collect();
        let request = WriteTxnMarkers {
            request,
            transaction_versions: markers
                .iter()
                .map(|(_, _, marker)| marker.transaction_version)
                .collect(),
        };
        let answer = self
            .call_peer_with(node, ApiKey::WriteTxnMarkers, |version| {
                encode_write_txn_markers(version, &request)
            })
            .await
            .and_then(|(version, body)| {
                decode_write_txn_markers(version, body).map_err(|error| error.to_string())
            });
        match answer {
            Ok(codes) if codes.len() == markers.len() => codes,
            Ok(codes) => {
                tracing::warn!(
                    node,
                    sent = markers.len(),
                    answered = codes.len(),
                    "WriteTxnMarkers answer does not match the request"
                );
                vec![code::NOT_LEADER_OR_FOLLOWER; markers.len()]
            }
            Err(reason) => {
                tracing::debug!(node, %reason, "writing transaction markers on a peer failed");
                vec![code::NOT_LEADER_OR_FOLLOWER; markers.len()]
            }
        }
    }

    /// Asks the coordinator on broker `node` to add (or, `verify_only`,
    /// check) one partition in a producer's transaction, as a partition
    /// leader does for a transactional batch (AddPartitionsToTxn v4+).
    /// The coordinator's error code for the partition; a broker that
    /// cannot be reached gives COORDINATOR_NOT_AVAILABLE (retriable).
    pub(super) async fn add_partition_remote(
        &self,
        node: i32,
        request: &crate::txn::TxnRequest,
    ) -> i16 {
        let crate::txn::TxnRequest::AddPartitions {
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
            verify_only,
        } = request
        else {
            return code::UNKNOWN_SERVER_ERROR;
        };
        let mut transaction = AddPartitionsToTxnTransaction::default();
        transaction.transactional_id =
            TransactionalId(StrBytes::from_string(transactional_id.clone()));
        transaction.producer_id = ProducerId(*producer_id);
        transaction.producer_epoch = *producer_epoch;
        transaction.verify_only = *verify_only;
        transaction.topics = partitions
            .iter()
            .map(|(topic, partition)| {
                let mut entry = AddPartitionsToTxnTopic::default();
                entry.name = TopicName(StrBytes::from_string(topic.clone()));
                entry.partitions = vec![*partition];
                entry
            })
            .collect();
        let mut add = AddPartitionsToTxnRequest::default();
        add.transactions = vec![transaction];
        let answer = self
            .call_peer(node, ApiKey::AddPartitionsToTxn, &add)
            .await
            .and_then(|(version, body)| {
                decode_add_partitions_to_txn(version, body).map_err(|error| error.to_string())
            });
        match answer {
            Ok(errors) => errors
                .into_iter()
                .find(|error_code| *error_code != code::NONE)
                .unwrap_or(code::NONE),
            Err(reason) => {
                tracing::debug!(node, %reason, "asking a peer's transaction coordinator failed");
                code::COORDINATOR_NOT_AVAILABLE
            }
        }
    }
}
