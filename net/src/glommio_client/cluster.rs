//! What a client knows about the cluster: brokers, topics, partition
//! leaders; and the admin calls the benchmark needs (create and delete
//! topics, list offsets). Each producer and consumer owns one, as every
//! Kafka client instance keeps its own metadata.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, DeleteTopicsRequest, ListOffsetsRequest,
    MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::connection::{Connection, ConnectionConfig};
use super::constants::{
    ADMIN_OPERATION_TIMEOUT_MS, CONNECT_TIMEOUT_MS_DEFAULT, IN_FLIGHT_REQUESTS_DEFAULT,
    METADATA_ATTEMPTS_MAX, METADATA_RETRY_BACKOFF_MS, REQUEST_TIMEOUT_MS_DEFAULT,
};
use super::error::ClientError;
use super::protocol::{self, MetadataInfo, TopicInfo, TopicResult};

/// Kafka's error codes the metadata wait treats as "not ready yet".
const LEADER_NOT_AVAILABLE: i16 = 5;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// ListOffsets timestamps meaning "log end" and "log start".
const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;

/// Settings every client shares.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `host:port` of brokers to learn the cluster from.
    pub bootstrap: Vec<String>,
    pub client_id: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// TLS to the brokers (an SSL listener), or plaintext when `None`.
    pub tls: Option<crate::tls::ClientTls>,
}

impl ClientConfig {
    pub fn new(bootstrap: &str) -> ClientConfig {
        ClientConfig {
            bootstrap: bootstrap
                .split(',')
                .map(|address| address.trim().to_string())
                .collect(),
            client_id: "sluice-glommio-client".to_string(),
            connect_timeout: Duration::from_millis(CONNECT_TIMEOUT_MS_DEFAULT),
            request_timeout: Duration::from_millis(REQUEST_TIMEOUT_MS_DEFAULT),
            tls: None,
        }
    }

    /// Connection settings with `in_flight_max` requests in flight.
    pub fn connection(&self, in_flight_max: usize) -> ConnectionConfig {
        ConnectionConfig {
            client_id: self.client_id.clone(),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            in_flight_max,
            tls: self.tls.clone(),
        }
    }
}

/// A topic to create.
#[derive(Clone, Debug)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

/// Where to start reading a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
}

/// Brokers and admin connections of one client.
pub struct Cluster {
    config: ClientConfig,
    brokers: RefCell<HashMap<i32, String>>,
    controller_id: RefCell<i32>,
    /// Connections for metadata and admin calls, by node id (-1: the
    /// bootstrap connection).
    admin: RefCell<HashMap<i32, Rc<Connection>>>,
}

fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

impl Cluster {
    /// Connects to the first bootstrap broker that answers and loads the
    /// broker list.
    pub async fn connect(config: ClientConfig) -> Result<Rc<Cluster>, ClientError> {
        let mut last_error = ClientError::Config("no bootstrap address given".to_string());
        for address in &config.bootstrap {
            match Connection::connect(address, &config.connection(IN_FLIGHT_REQUESTS_DEFAULT)).await
            {
                Ok(connection) => {
                    let cluster = Rc::new(Cluster {
                        config: config.clone(),
                        brokers: RefCell::new(HashMap::new()),
                        controller_id: RefCell::new(-1),
                        admin: RefCell::new(HashMap::from([(-1, connection)])),
                    });
                    cluster.metadata(Some(&[])).await?;
                    return Ok(cluster);
                }
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The advertised address of broker `node_id`.
    pub fn broker_address(&self, node_id: i32) -> Option<String> {
        self.brokers.borrow().get(&node_id).cloned()
    }

    /// An admin connection to `node_id` (-1: any broker).
    async fn admin_connection(&self, node_id: i32) -> Result<Rc<Connection>, ClientError> {
        let existing = self.admin.borrow().get(&node_id).cloned();
        if let Some(connection) = existing.filter(|connection| !connection.is_failed()) {
            return Ok(connection);
        }
        let address = if node_id == -1 {
            // The bootstrap connection failed: any known broker will do.
            let brokers = self.brokers.borrow();
            brokers
                .values()
                .next()
                .cloned()
                .or_else(|| self.config.bootstrap.first().cloned())
        } else {
            self.broker_address(node_id)
        };
        let address =
            address.ok_or_else(|| ClientError::Config(format!("unknown broker {node_id}")))?;
        let connection = Connection::connect(
            &address,
            &self.config.connection(IN_FLIGHT_REQUESTS_DEFAULT),
        )
        .await?;
        self.admin
            .borrow_mut()
            .insert(node_id, Rc::clone(&connection));
        Ok(connection)
    }

    /// Fetches metadata for `topics` (`None`: all topics; empty: brokers
    /// only) and remembers the brokers.
    pub async fn metadata(&self, topics: Option<&[String]>) -> Result<MetadataInfo, ClientError> {
        let mut request = MetadataRequest::default();
        request.topics = topics.map(|topics| {
            topics
                .iter()
                .map(|name| {
                    let mut topic = MetadataRequestTopic::default();
                    topic.name = Some(TopicName(str_bytes(name)));
                    topic
                })
                .collect()
        });
        request.allow_auto_topic_creation = false;
        let connection = self.admin_connection(-1).await?;
        let (version, body) = connection.call(ApiKey::Metadata, &request).await?;
        let info = protocol::decode_metadata(version, body)?;
        let mut brokers = self.brokers.borrow_mut();
        for broker in &info.brokers {
            brokers.insert(broker.node_id, format!("{}:{}", broker.host, broker.port));
        }
        *self.controller_id.borrow_mut() = info.controller_id;
        Ok(info)
    }

    /// Metadata of one topic once every partition has a leader, asking
    /// again while leaders are being elected.
    pub async fn wait_for_topic(&self, name: &str) -> Result<TopicInfo, ClientError> {
        let names = [name.to_string()];
        let mut last_code = UNKNOWN_TOPIC_OR_PARTITION;
        for _ in 0..METADATA_ATTEMPTS_MAX {
            let info = self.metadata(Some(&names)).await?;
            if let Some(topic) = info.topics.into_iter().find(|topic| topic.name == name) {
                let not_ready =
                    |code| code == LEADER_NOT_AVAILABLE || code == UNKNOWN_TOPIC_OR_PARTITION;
                last_code = topic.error_code;
                let ready = topic.error_code == 0
                    && !topic.partitions.is_empty()
                    && topic
                        .partitions
                        .iter()
                        .all(|partition| partition.leader >= 0);
                if ready {
                    return Ok(topic);
                }
                if !not_ready(topic.error_code) && topic.error_code != 0 {
                    return Err(ClientError::kafka(
                        topic.error_code,
                        format!("metadata of topic {name}"),
                    ));
                }
            }
            glommio::timer::sleep(Duration::from_millis(METADATA_RETRY_BACKOFF_MS)).await;
        }
        Err(ClientError::kafka(
            last_code,
            format!("waiting for the leaders of topic {name}"),
        ))
    }

    /// Creates topics on the controller. Per-topic results are returned as
    /// they are (TOPIC_ALREADY_EXISTS is for the caller to judge).
    pub async fn create_topics(
        &self,
        topics: &[NewTopic],
    ) -> Result<Vec<TopicResult>, ClientError> {
        let mut request = CreateTopicsRequest::default();
        request.timeout_ms = ADMIN_OPERATION_TIMEOUT_MS;
        request.topics = topics
            .iter()
            .map(|topic| {
                let mut creatable = CreatableTopic::default();
                creatable.name = TopicName(str_bytes(&topic.name));
                creatable.num_partitions = topic.partitions;
                creatable.replication_factor = topic.replication_factor;
                creatable.configs = topic
                    .configs
                    .iter()
                    .map(|(name, value)| {
                        let mut config = CreatableTopicConfig::default();
                        config.name = str_bytes(name);
                        config.value = Some(str_bytes(value));
                        config
                    })
                    .collect();
                creatable
            })
            .collect();
        let controller = *self.controller_id.borrow();
        let connection = self
            .admin_connection(if controller >= 0 { controller } else { -1 })
            .await?;
        let (version, body) = connection
            .call_held(ApiKey::CreateTopics, &request, admin_operation_timeout())
            .await?;
        protocol::decode_create_topics(version, body)
    }

    /// Deletes topics on the controller.
    pub async fn delete_topics(&self, names: &[String]) -> Result<Vec<TopicResult>, ClientError> {
        let controller = *self.controller_id.borrow();
        let connection = self
            .admin_connection(if controller >= 0 { controller } else { -1 })
            .await?;
        let version = connection.version(ApiKey::DeleteTopics)?;
        let mut request = DeleteTopicsRequest::default();
        request.timeout_ms = ADMIN_OPERATION_TIMEOUT_MS;
        if version >= 6 {
            request.topics = names
                .iter()
                .map(|name| {
                    let mut state = DeleteTopicState::default();
                    state.name = Some(TopicName(str_bytes(name)));
                    state
                })
                .collect();
        } else {
            request.topic_names = names
                .iter()
                .map(|name| TopicName(str_bytes(name)))
                .collect();
        }
        let (version, body) = connection
            .call_held(ApiKey::DeleteTopics, &request, admin_operation_timeout())
            .await?;
        protocol::decode_delete_topics(version, body)
    }

    /// The earliest or latest offset of each of `partitions` of `topic`,
    /// asking each partition's leader.
    pub async fn list_offsets(
        &self,
        topic: &TopicInfo,
        spec: OffsetSpec,
    ) -> Result<HashMap<i32, i64>, ClientError> {
        let timestamp = match spec {
            OffsetSpec::Earliest => EARLIEST_TIMESTAMP,
            OffsetSpec::Latest => LATEST_TIMESTAMP,
        };
        let mut by_leader: HashMap<i32, Vec<i32>> = HashMap::new();
        for partition in &topic.partitions {
            by_leader
                .entry(partition.leader)
                .or_default()
                .push(partition.index);
        }
        let mut offsets = HashMap::new();
        for (leader, partitions) in by_leader {
            let mut request = ListOffsetsRequest::default();
            request.replica_id = BrokerId(-1);
            let mut listed = ListOffsetsTopic::default();
            listed.name = TopicName(str_bytes(&topic.name));
            listed.partitions = partitions
                .iter()
                .map(|index| {
                    let mut partition = ListOffsetsPartition::default();
                    partition.partition_index = *index;
                    partition.current_leader_epoch = -1;
                    partition.timestamp = timestamp;
                    partition
                })
                .collect();
            request.topics = vec![listed];
            let connection = self.admin_connection(leader).await?;
            let (version, body) = connection.call(ApiKey::ListOffsets, &request).await?;
            for (_, answers) in protocol::decode_list_offsets(version, body)? {
                for answer in answers {
                    if answer.error_code != 0 {
                        return Err(ClientError::kafka(
                            answer.error_code,
                            format!("ListOffsets of {}-{}", topic.name, answer.index),
                        ));
                    }
                    offsets.insert(answer.index, answer.offset);
                }
            }
        }
        Ok(offsets)
    }

    /// The topic's metadata and the earliest or latest offset of each of
    /// its partitions, waiting for leaders and trying again after a
    /// retriable error (a leader that moved between the metadata and the
    /// request, or a new leader whose high watermark has not caught up
    /// yet, KIP-207's OFFSET_NOT_AVAILABLE), as Kafka's clients do.
    pub async fn topic_offsets(
        &self,
        name: &str,
        spec: OffsetSpec,
    ) -> Result<(TopicInfo, HashMap<i32, i64>), ClientError> {
        let mut attempt = 0;
        loop {
            let info = self.wait_for_topic(name).await?;
            match self.list_offsets(&info, spec).await {
                Ok(offsets) => return Ok((info, offsets)),
                Err(error) if error.is_retriable() && attempt + 1 < METADATA_ATTEMPTS_MAX => {
                    attempt += 1;
                    glommio::timer::sleep(Duration::from_millis(METADATA_RETRY_BACKOFF_MS)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// An InitProducerId for an idempotent (non-transactional) producer.
    pub async fn init_producer_id(&self) -> Result<(i64, i16), ClientError> {
        let mut request = kafka_protocol::messages::InitProducerIdRequest::default();
        request.transactional_id = None;
        request.transaction_timeout_ms = -1;
        request.producer_id = kafka_protocol::messages::ProducerId(-1);
        request.producer_epoch = -1;
        let connection = self.admin_connection(-1).await?;
        let (version, body) = connection.call(ApiKey::InitProducerId, &request).await?;
        protocol::decode_init_producer_id(version, body)
    }
}

/// How long the broker may hold a CreateTopics or DeleteTopics.
fn admin_operation_timeout() -> Duration {
    Duration::from_millis(ADMIN_OPERATION_TIMEOUT_MS.unsigned_abs().into())
}
