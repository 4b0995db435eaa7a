//! Admin calls: topics, configs, offsets and the cluster, as plain structs.
//!
//! Requests go where Kafka wants them: Metadata, DescribeCluster and topic
//! configs to the bootstrap broker; CreateTopics and DeleteTopics to the
//! controller (brokers of Kafka 2.8 and later forward them, older ones answer
//! NOT_CONTROLLER, after which the call is retried once with fresh metadata);
//! ListOffsets (and DeleteRecords, in [`super::records`]) to each partition's
//! leader; a broker's configs to that broker.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiKey, BrokerId, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, ElectLeadersRequest,
    IncrementalAlterConfigsRequest, ListOffsetsRequest, ListPartitionReassignmentsRequest,
    MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::connection::Connection;
use super::error::{ClientError, KafkaError};
use super::ClientOptions;

/// The metadata log's name in DescribeQuorum (Kafka's KRaft name).
const METADATA_LOG_TOPIC: &str = "__cluster_metadata";
/// Kafka's NOT_CONTROLLER error code.
const NOT_CONTROLLER: i16 = 41;
/// Kafka's UNKNOWN_TOPIC_OR_PARTITION error code.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// Kafka's LEADER_NOT_AVAILABLE error code, for partitions without a leader.
const LEADER_NOT_AVAILABLE: i16 = 5;

/// Kafka's ConfigResource type ids.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// IncrementalAlterConfigs operation ids.
const OPERATION_SET: i8 = 0;
const OPERATION_DELETE: i8 = 1;
const OPERATION_APPEND: i8 = 2;
const OPERATION_SUBTRACT: i8 = 3;

/// ListOffsets timestamps that ask for the earliest and the latest offset.
const TIMESTAMP_EARLIEST: i64 = -2;
const TIMESTAMP_LATEST: i64 = -1;

/// ListOffsets `replica_id` of an ordinary client (not a follower).
const CONSUMER_REPLICA_ID: i32 = -1;

/// CreateTopics v4 and later accept -1 for "the broker's default"; earlier
/// versions need a number, and these are Kafka's own defaults.
const CREATE_TOPICS_DEFAULTS_VERSION_MIN: i16 = 4;
const PARTITIONS_FALLBACK: i32 = 1;
const REPLICATION_FACTOR_FALLBACK: i16 = 1;

/// DeleteTopics names its topics in `topics` (with optional ids) from v6 on.
const DELETE_TOPICS_STATES_VERSION_MIN: i16 = 6;

/// AlterPartitionReassignments can refuse replication-factor changes from
/// v1 on (KIP-860); v0 always allows them.
const REASSIGNMENT_FACTOR_GUARD_VERSION_MIN: i16 = 1;

/// ElectLeaders carries an election type from v1 on (KIP-460); v0 can ask
/// for preferred elections only.
const ELECTION_TYPE_VERSION_MIN: i16 = 1;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn text(value: &StrBytes) -> String {
    value.as_str().to_string()
}

/// `host:port`, with brackets around an IPv6 host.
fn socket_address(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A broker as the cluster describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerNode {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerNode {
    pub fn address(&self) -> String {
        socket_address(&self.host, self.port)
    }
}

/// One partition of [`TopicMetadata`].
#[derive(Clone, Debug)]
pub struct PartitionMetadata {
    pub partition: i32,
    /// `None` while the partition has no leader.
    pub leader: Option<i32>,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline_replicas: Vec<i32>,
    /// A partition-level error such as LEADER_NOT_AVAILABLE.
    pub error: Option<KafkaError>,
}

/// A topic in a Metadata response.
#[derive(Clone, Debug)]
pub struct TopicMetadata {
    pub name: String,
    pub topic_id: Option<Uuid>,
    pub internal: bool,
    /// Sorted by partition number.
    pub partitions: Vec<PartitionMetadata>,
    /// A topic-level error such as UNKNOWN_TOPIC_OR_PARTITION.
    pub error: Option<KafkaError>,
}

impl TopicMetadata {
    /// The replication factor: the replica count of the first partition,
    /// which Kafka keeps the same for every partition of a topic.
    pub fn replication_factor(&self) -> usize {
        self.partitions
            .first()
            .map_or(0, |partition| partition.replicas.len())
    }

    /// The leader of `partition`, or the error a broker would give for it:
    /// LEADER_NOT_AVAILABLE, or UNKNOWN_TOPIC_OR_PARTITION for a partition
    /// the topic lacks.
    pub fn leader_of(&self, partition: i32) -> Result<i32, KafkaError> {
        let known = self
            .partitions
            .iter()
            .find(|known| known.partition == partition)
            .ok_or_else(|| {
                KafkaError::new(
                    UNKNOWN_TOPIC_OR_PARTITION,
                    Some(format!(
                        "Topic '{}' has no partition {partition} (it has {}).",
                        self.name,
                        self.partitions.len()
                    )),
                )
            })?;
        known
            .leader
            .ok_or_else(|| KafkaError::new(LEADER_NOT_AVAILABLE, None))
    }
}

/// A Metadata response.
#[derive(Clone, Debug)]
pub struct ClusterMetadata {
    pub cluster_id: Option<String>,
    pub controller_id: Option<i32>,
    pub brokers: Vec<BrokerNode>,
    pub topics: Vec<TopicMetadata>,
}

/// The cluster's identity and members.
#[derive(Clone, Debug)]
pub struct ClusterInfo {
    pub cluster_id: Option<String>,
    pub controller_id: Option<i32>,
    /// Sorted by node id.
    pub brokers: Vec<BrokerNode>,
    /// True when the broker lacked DescribeCluster and Metadata answered.
    pub from_metadata: bool,
}

/// The metadata quorum as its leader describes it (DescribeQuorum).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumInfo {
    pub leader: i32,
    /// The leader's Raft term (Kafka's leader epoch of the metadata log).
    pub epoch: i32,
    /// The committed index.
    pub high_watermark: i64,
    /// Each voter and how far its log is replicated (-1: unknown).
    pub voters: Vec<(i32, i64)>,
}

/// A topic to create. `None` leaves the choice to the broker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: Option<i32>,
    pub replication_factor: Option<i16>,
    pub configs: Vec<(String, String)>,
}

/// What the broker reports about a created topic; fields the negotiated
/// CreateTopics version does not carry are `None`.
#[derive(Clone, Debug)]
pub struct CreatedTopic {
    pub name: String,
    pub topic_id: Option<Uuid>,
    pub partitions: Option<i32>,
    pub replication_factor: Option<i16>,
}

/// The thing whose configs are described or altered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigResource {
    Topic(String),
    Broker(i32),
}

impl ConfigResource {
    fn kind_and_name(&self) -> (i8, String) {
        match self {
            ConfigResource::Topic(name) => (RESOURCE_TOPIC, name.clone()),
            ConfigResource::Broker(node_id) => (RESOURCE_BROKER, node_id.to_string()),
        }
    }
}

/// Where a config value comes from (Kafka's `ConfigSource` ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    Unknown,
    DynamicTopic,
    DynamicBroker,
    DynamicDefaultBroker,
    StaticBroker,
    Default,
    DynamicBrokerLogger,
    ClientMetrics,
    Group,
    Other(i8),
}

impl ConfigSource {
    pub fn from_id(id: i8) -> ConfigSource {
        match id {
            0 => ConfigSource::Unknown,
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            6 => ConfigSource::DynamicBrokerLogger,
            7 => ConfigSource::ClientMetrics,
            8 => ConfigSource::Group,
            other => ConfigSource::Other(other),
        }
    }

    /// Kafka's name for the source, as `kafka-configs.sh` prints it.
    pub fn name(&self) -> &'static str {
        match self {
            ConfigSource::Unknown => "UNKNOWN",
            ConfigSource::DynamicTopic => "DYNAMIC_TOPIC_CONFIG",
            ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG",
            ConfigSource::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG",
            ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG",
            ConfigSource::Default => "DEFAULT_CONFIG",
            ConfigSource::DynamicBrokerLogger => "DYNAMIC_BROKER_LOGGER_CONFIG",
            ConfigSource::ClientMetrics => "CLIENT_METRICS_CONFIG",
            ConfigSource::Group => "GROUP_CONFIG",
            ConfigSource::Other(_) => "OTHER",
        }
    }
}

/// One config of a described resource.
#[derive(Clone, Debug)]
pub struct ConfigEntry {
    pub name: String,
    /// `None` for sensitive values, which brokers do not reveal.
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
}

/// One change of an incremental config alteration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigChange {
    Set {
        name: String,
        value: String,
    },
    /// Removes an override, so the default applies again.
    Delete {
        name: String,
    },
    /// Adds the comma-separated `value`'s items that a list config (such
    /// as `cleanup.policy`) lacks.
    Append {
        name: String,
        value: String,
    },
    /// Removes the comma-separated `value`'s items from a list config.
    Subtract {
        name: String,
        value: String,
    },
}

/// Which offset ListOffsets asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark: the offset the next committed record will get.
    Latest,
    /// The first offset whose record timestamp is at or after this many
    /// milliseconds since the epoch; -1 when there is none.
    Timestamp(i64),
}

/// A partition's offset, or the broker's error for that partition.
#[derive(Clone, Debug)]
pub struct PartitionOffset {
    pub partition: i32,
    pub offset: Result<i64, KafkaError>,
}

/// One partition's reassignment to ask for: the replicas it should end with
/// (the first is the preferred leader), or `None` to cancel the one in
/// progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionReassignment {
    pub topic: String,
    pub partition: i32,
    pub replicas: Option<Vec<i32>>,
}

/// What the controller said about one [`PartitionReassignment`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReassignmentResult {
    pub topic: String,
    pub partition: i32,
    pub result: Result<(), KafkaError>,
}

/// A reassignment in progress (ListPartitionReassignments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OngoingReassignment {
    pub topic: String,
    pub partition: i32,
    /// The union of the old and new replicas while the move runs.
    pub replicas: Vec<i32>,
    /// Replicas being added, not yet caught up.
    pub adding: Vec<i32>,
    /// Replicas to be removed once every added one is in sync.
    pub removing: Vec<i32>,
}

impl OngoingReassignment {
    /// The replicas the partition will end with.
    pub fn target(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|id| !self.removing.contains(id))
            .collect()
    }
}

/// Which leader election to ask for (ElectLeaders' election types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElectionType {
    /// The leadership goes back to the partition's first replica, when that
    /// replica is live and in sync.
    Preferred,
    /// A partition without a live in-sync replica gets any live replica as
    /// leader, losing the records that replica lacks.
    Unclean,
}

impl ElectionType {
    /// Kafka's id of the type.
    fn id(self) -> i8 {
        match self {
            ElectionType::Preferred => 0,
            ElectionType::Unclean => 1,
        }
    }

    /// Kafka's name for the type, as `kafka-leader-election.sh` takes it.
    pub fn name(self) -> &'static str {
        match self {
            ElectionType::Preferred => "preferred",
            ElectionType::Unclean => "unclean",
        }
    }
}

/// What the controller said about one partition's election: `Ok` when the
/// leadership moved; ELECTION_NOT_NEEDED (84) when it already was where the
/// election would put it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionResult {
    pub topic: String,
    pub partition: i32,
    pub result: Result<(), KafkaError>,
}

/// An admin client: a bootstrap connection, plus connections to particular
/// brokers opened on first use.
pub struct Admin {
    options: ClientOptions,
    bootstrap: Connection,
    /// Connections to brokers other than the bootstrap one, by node id.
    brokers: BTreeMap<i32, Connection>,
    /// Broker addresses from the latest Metadata response, by node id.
    addresses: BTreeMap<i32, String>,
    controller_id: Option<i32>,
}

impl Admin {
    /// Connects to `bootstrap` and negotiates API versions. `bootstrap` is
    /// `host:port`, or several separated by commas as in Kafka's
    /// `bootstrap.servers`: they are tried in order and the first that
    /// answers is used, so a cluster stays reachable with one broker down.
    pub fn connect(bootstrap: &str, options: ClientOptions) -> Result<Admin, ClientError> {
        let mut last_error = None;
        for address in bootstrap.split(',').map(str::trim) {
            if address.is_empty() {
                continue;
            }
            match Connection::connect(address, &options) {
                Ok(bootstrap) => {
                    return Ok(Admin {
                        options,
                        bootstrap,
                        brokers: BTreeMap::new(),
                        addresses: BTreeMap::new(),
                        controller_id: None,
                    })
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or(ClientError::Resolve {
            address: bootstrap.to_string(),
            source: None,
        }))
    }

    /// The bootstrap connection, for requests this type has no method for.
    pub fn bootstrap(&mut self) -> &mut Connection {
        &mut self.bootstrap
    }

    /// The settings the client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// A connection to broker `node_id`: the bootstrap connection when the
    /// broker advertises the bootstrap address, otherwise a cached or new one.
    pub fn connection_to(&mut self, node_id: i32) -> Result<&mut Connection, ClientError> {
        if !self.addresses.contains_key(&node_id) {
            self.metadata(Some(&[]))?;
        }
        let Some(address) = self.addresses.get(&node_id).cloned() else {
            return Err(ClientError::Protocol {
                address: self.bootstrap.address().to_string(),
                api: ApiKey::Metadata,
                message: format!("broker {node_id} is not in the cluster metadata"),
            });
        };
        if address == self.bootstrap.address() {
            return Ok(&mut self.bootstrap);
        }
        match self.brokers.entry(node_id) {
            Entry::Occupied(entry) => Ok(entry.into_mut()),
            Entry::Vacant(entry) => Ok(entry.insert(Connection::connect(&address, &self.options)?)),
        }
    }

    /// The controller's connection, or the bootstrap one when the cluster
    /// names no controller (brokers then forward controller requests).
    fn controller(&mut self) -> Result<&mut Connection, ClientError> {
        if self.controller_id.is_none() {
            self.metadata(Some(&[]))?;
        }
        match self.controller_id {
            Some(node_id) => self.connection_to(node_id),
            None => Ok(&mut self.bootstrap),
        }
    }

    /// Metadata for `topics` (`None`: all topics; empty: brokers only).
    /// Never auto-creates a topic. Topic and partition errors are reported
    /// in the result, not as `Err`.
    pub fn metadata(&mut self, topics: Option<&[&str]>) -> Result<ClusterMetadata, ClientError> {
        let connection = &mut self.bootstrap;
        let version = connection.version(ApiKey::Metadata)?;
        let mut request = MetadataRequest::default();
        request.topics = topics.map(|names| {
            names
                .iter()
                .map(|name| {
                    let mut topic = MetadataRequestTopic::default();
                    topic.name = Some(topic_name(name));
                    topic
                })
                .collect()
        });
        // Always present: the client's Metadata versions start at 4.
        request.allow_auto_topic_creation = false;
        let response = connection.send(&request, version)?;
        // v13 moved errors such as authorization failures to the top level.
        KafkaError::check(response.error_code, None)?;
        let mut brokers: Vec<BrokerNode> = response
            .brokers
            .iter()
            .map(|broker| BrokerNode {
                node_id: broker.node_id.0,
                host: text(&broker.host),
                port: broker.port,
                rack: broker.rack.as_ref().map(text),
            })
            .collect();
        brokers.sort_by_key(|broker| broker.node_id);
        let controller_id = Some(response.controller_id.0).filter(|id| *id >= 0);
        let topics = response
            .topics
            .into_iter()
            .map(|topic| {
                let mut partitions: Vec<PartitionMetadata> = topic
                    .partitions
                    .into_iter()
                    .map(|partition| PartitionMetadata {
                        partition: partition.partition_index,
                        leader: Some(partition.leader_id.0).filter(|id| *id >= 0),
                        leader_epoch: partition.leader_epoch,
                        replicas: partition.replica_nodes.iter().map(|id| id.0).collect(),
                        isr: partition.isr_nodes.iter().map(|id| id.0).collect(),
                        offline_replicas: partition
                            .offline_replicas
                            .iter()
                            .map(|id| id.0)
                            .collect(),
                        error: KafkaError::check(partition.error_code, None).err(),
                    })
                    .collect();
                partitions.sort_by_key(|partition| partition.partition);
                TopicMetadata {
                    name: topic
                        .name
                        .as_ref()
                        .map(|name| text(&name.0))
                        .unwrap_or_default(),
                    topic_id: Some(topic.topic_id).filter(|id| !id.is_nil()),
                    internal: topic.is_internal,
                    partitions,
                    error: KafkaError::check(topic.error_code, None).err(),
                }
            })
            .collect();
        self.addresses = brokers
            .iter()
            .map(|broker| (broker.node_id, broker.address()))
            .collect();
        self.controller_id = controller_id;
        Ok(ClusterMetadata {
            cluster_id: response.cluster_id.as_ref().map(text),
            controller_id,
            brokers,
            topics,
        })
    }

    /// One topic's metadata; a topic-level error (such as the topic not
    /// existing) is an `Err`.
    pub fn describe_topic(&mut self, name: &str) -> Result<TopicMetadata, ClientError> {
        let metadata = self.metadata(Some(&[name]))?;
        let topic = metadata
            .topics
            .into_iter()
            .find(|topic| topic.name == name)
            .ok_or_else(|| ClientError::Protocol {
                address: self.bootstrap.address().to_string(),
                api: ApiKey::Metadata,
                message: format!("no result for topic '{name}'"),
            })?;
        match topic.error {
            // Metadata carries no error messages; this one is common enough
            // to deserve a sentence.
            Some(error) if error.code == UNKNOWN_TOPIC_OR_PARTITION && error.message.is_none() => {
                let message = format!("Topic '{name}' does not exist.");
                Err(ClientError::Broker(KafkaError::new(
                    error.code,
                    Some(message),
                )))
            }
            Some(error) => Err(ClientError::Broker(error)),
            None => Ok(topic),
        }
    }

    /// Creates one topic.
    pub fn create_topic(&mut self, topic: &NewTopic) -> Result<CreatedTopic, ClientError> {
        match self.create_topic_once(topic) {
            Err(ClientError::Broker(error)) if error.code == NOT_CONTROLLER => {
                self.metadata(Some(&[]))?;
                self.create_topic_once(topic)
            }
            other => other,
        }
    }

    fn create_topic_once(&mut self, topic: &NewTopic) -> Result<CreatedTopic, ClientError> {
        let timeout_ms = self.options.operation_timeout_ms;
        let connection = self.controller()?;
        let version = connection.version(ApiKey::CreateTopics)?;
        let broker_defaults = version >= CREATE_TOPICS_DEFAULTS_VERSION_MIN;
        let mut creatable = CreatableTopic::default();
        creatable.name = topic_name(&topic.name);
        creatable.num_partitions = topic.partitions.unwrap_or(if broker_defaults {
            -1
        } else {
            PARTITIONS_FALLBACK
        });
        creatable.replication_factor = topic.replication_factor.unwrap_or(if broker_defaults {
            -1
        } else {
            REPLICATION_FACTOR_FALLBACK
        });
        creatable.configs = topic
            .configs
            .iter()
            .map(|(name, value)| {
                let mut config = CreatableTopicConfig::default();
                config.name = StrBytes::from_string(name.clone());
                config.value = Some(StrBytes::from_string(value.clone()));
                config
            })
            .collect();
        let mut request = CreateTopicsRequest::default();
        request.topics = vec![creatable];
        request.timeout_ms = timeout_ms;
        let response = connection.send(&request, version)?;
        let result = response
            .topics
            .into_iter()
            .find(|result| result.name.0.as_str() == topic.name)
            .ok_or_else(|| ClientError::Protocol {
                address: connection.address().to_string(),
                api: ApiKey::CreateTopics,
                message: format!("no result for topic '{}'", topic.name),
            })?;
        KafkaError::check(result.error_code, result.error_message.as_ref().map(text))?;
        Ok(CreatedTopic {
            name: topic.name.clone(),
            topic_id: Some(result.topic_id).filter(|id| !id.is_nil()),
            partitions: Some(result.num_partitions).filter(|count| *count > 0),
            replication_factor: Some(result.replication_factor).filter(|count| *count > 0),
        })
    }

    /// Deletes one topic by name.
    pub fn delete_topic(&mut self, name: &str) -> Result<(), ClientError> {
        match self.delete_topic_once(name) {
            Err(ClientError::Broker(error)) if error.code == NOT_CONTROLLER => {
                self.metadata(Some(&[]))?;
                self.delete_topic_once(name)
            }
            other => other,
        }
    }

    fn delete_topic_once(&mut self, name: &str) -> Result<(), ClientError> {
        let timeout_ms = self.options.operation_timeout_ms;
        let connection = self.controller()?;
        let version = connection.version(ApiKey::DeleteTopics)?;
        let mut request = DeleteTopicsRequest::default();
        if version >= DELETE_TOPICS_STATES_VERSION_MIN {
            let mut state = DeleteTopicState::default();
            state.name = Some(topic_name(name));
            request.topics = vec![state];
        } else {
            request.topic_names = vec![topic_name(name)];
        }
        request.timeout_ms = timeout_ms;
        let response = connection.send(&request, version)?;
        let result = response
            .responses
            .into_iter()
            .find(|result| {
                result
                    .name
                    .as_ref()
                    .is_some_and(|found| found.0.as_str() == name)
            })
            .ok_or_else(|| ClientError::Protocol {
                address: connection.address().to_string(),
                api: ApiKey::DeleteTopics,
                message: format!("no result for topic '{name}'"),
            })?;
        KafkaError::check(result.error_code, result.error_message.as_ref().map(text))?;
        Ok(())
    }

    /// Every config of a topic or broker, with where its value comes from.
    pub fn describe_configs(
        &mut self,
        resource: &ConfigResource,
    ) -> Result<Vec<ConfigEntry>, ClientError> {
        let (kind, name) = resource.kind_and_name();
        // A broker answers for its own configs only.
        let connection = match resource {
            ConfigResource::Topic(_) => &mut self.bootstrap,
            ConfigResource::Broker(node_id) => self.connection_to(*node_id)?,
        };
        let version = connection.version(ApiKey::DescribeConfigs)?;
        let mut described = DescribeConfigsResource::default();
        described.resource_type = kind;
        described.resource_name = StrBytes::from_string(name.clone());
        described.configuration_keys = None;
        let mut request = DescribeConfigsRequest::default();
        request.resources = vec![described];
        let response = connection.send(&request, version)?;
        let result = response
            .results
            .into_iter()
            .find(|result| result.resource_type == kind && result.resource_name.as_str() == name)
            .ok_or_else(|| ClientError::Protocol {
                address: connection.address().to_string(),
                api: ApiKey::DescribeConfigs,
                message: format!("no result for resource '{name}'"),
            })?;
        KafkaError::check(result.error_code, result.error_message.as_ref().map(text))?;
        let mut entries: Vec<ConfigEntry> = result
            .configs
            .iter()
            .map(|config| ConfigEntry {
                name: text(&config.name),
                value: config.value.as_ref().map(text),
                source: ConfigSource::from_id(config.config_source),
                read_only: config.read_only,
                sensitive: config.is_sensitive,
            })
            .collect();
        entries.sort_by(|left, right| left.name.cmp(&right.name));
        Ok(entries)
    }

    /// Sets, deletes, appends to and subtracts from configs of a topic or
    /// broker in one request.
    pub fn alter_configs(
        &mut self,
        resource: &ConfigResource,
        changes: &[ConfigChange],
    ) -> Result<(), ClientError> {
        let (kind, name) = resource.kind_and_name();
        let connection = match resource {
            ConfigResource::Topic(_) => &mut self.bootstrap,
            ConfigResource::Broker(node_id) => self.connection_to(*node_id)?,
        };
        let version = connection.version(ApiKey::IncrementalAlterConfigs)?;
        let mut altered = AlterConfigsResource::default();
        altered.resource_type = kind;
        altered.resource_name = StrBytes::from_string(name.clone());
        altered.configs = changes
            .iter()
            .map(|change| {
                let (name, operation, value) = match change {
                    ConfigChange::Set { name, value } => (name, OPERATION_SET, Some(value)),
                    ConfigChange::Delete { name } => (name, OPERATION_DELETE, None),
                    ConfigChange::Append { name, value } => (name, OPERATION_APPEND, Some(value)),
                    ConfigChange::Subtract { name, value } => {
                        (name, OPERATION_SUBTRACT, Some(value))
                    }
                };
                let mut config = AlterableConfig::default();
                config.name = StrBytes::from_string(name.clone());
                config.config_operation = operation;
                config.value = value.map(|value| StrBytes::from_string(value.clone()));
                config
            })
            .collect();
        let mut request = IncrementalAlterConfigsRequest::default();
        request.resources = vec![altered];
        let response = connection.send(&request, version)?;
        let result = response
            .responses
            .into_iter()
            .find(|result| result.resource_type == kind && result.resource_name.as_str() == name)
            .ok_or_else(|| ClientError::Protocol {
                address: connection.address().to_string(),
                api: ApiKey::IncrementalAlterConfigs,
                message: format!("no result for resource '{name}'"),
            })?;
        KafkaError::check(result.error_code, result.error_message.as_ref().map(text))?;
        Ok(())
    }

    /// The cluster id, controller and brokers: from DescribeCluster, or from
    /// Metadata when the broker predates DescribeCluster (Kafka < 2.8).
    pub fn describe_cluster(&mut self) -> Result<ClusterInfo, ClientError> {
        if !self.bootstrap.supports(ApiKey::DescribeCluster) {
            let metadata = self.metadata(Some(&[]))?;
            return Ok(ClusterInfo {
                cluster_id: metadata.cluster_id,
                controller_id: metadata.controller_id,
                brokers: metadata.brokers,
                from_metadata: true,
            });
        }
        let connection = &mut self.bootstrap;
        let version = connection.version(ApiKey::DescribeCluster)?;
        // The default request asks for brokers (endpoint type 1), without
        // authorized operations or fenced brokers.
        let request = DescribeClusterRequest::default();
        let response = connection.send(&request, version)?;
        KafkaError::check(
            response.error_code,
            response.error_message.as_ref().map(text),
        )?;
        let mut brokers: Vec<BrokerNode> = response
            .brokers
            .iter()
            .map(|broker| BrokerNode {
                node_id: broker.broker_id.0,
                host: text(&broker.host),
                port: broker.port,
                rack: broker.rack.as_ref().map(text),
            })
            .collect();
        brokers.sort_by_key(|broker| broker.node_id);
        Ok(ClusterInfo {
            cluster_id: Some(text(&response.cluster_id)).filter(|id| !id.is_empty()),
            controller_id: Some(response.controller_id.0).filter(|id| *id >= 0),
            brokers,
            from_metadata: false,
        })
    }

    /// The metadata quorum, asked of the active controller; `None` when the
    /// broker does not offer DescribeQuorum.
    pub fn describe_quorum(&mut self) -> Result<Option<QuorumInfo>, ClientError> {
        use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
        use kafka_protocol::messages::DescribeQuorumRequest;
        if !self.bootstrap.supports(ApiKey::DescribeQuorum) {
            return Ok(None);
        }
        let mut topic = TopicData::default();
        topic.topic_name = TopicName(StrBytes::from_static_str(METADATA_LOG_TOPIC));
        topic.partitions = vec![PartitionData::default()];
        let mut request = DescribeQuorumRequest::default();
        request.topics = vec![topic];
        let connection = self.controller()?;
        let version = connection.version(ApiKey::DescribeQuorum)?;
        let response = connection.send(&request, version)?;
        KafkaError::check(
            response.error_code,
            response.error_message.as_ref().map(text),
        )?;
        let Some(partition) = response
            .topics
            .first()
            .and_then(|topic| topic.partitions.first())
        else {
            return Ok(None);
        };
        KafkaError::check(
            partition.error_code,
            partition.error_message.as_ref().map(text),
        )?;
        Ok(Some(QuorumInfo {
            leader: partition.leader_id.0,
            epoch: partition.leader_epoch,
            high_watermark: partition.high_watermark,
            voters: partition
                .current_voters
                .iter()
                .map(|voter| (voter.replica_id.0, voter.log_end_offset))
                .collect(),
        }))
    }

    /// The earliest or latest offset of every partition of `topic`, asking
    /// each partition's leader. Sorted by partition.
    pub fn list_offsets(
        &mut self,
        topic: &TopicMetadata,
        spec: OffsetSpec,
    ) -> Result<Vec<PartitionOffset>, ClientError> {
        let timestamp = match spec {
            OffsetSpec::Earliest => TIMESTAMP_EARLIEST,
            OffsetSpec::Latest => TIMESTAMP_LATEST,
            OffsetSpec::Timestamp(timestamp) => timestamp,
        };
        let timeout_ms = self.options.operation_timeout_ms;
        let mut offsets = Vec::with_capacity(topic.partitions.len());
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for partition in &topic.partitions {
            match partition.leader {
                Some(leader) => by_leader
                    .entry(leader)
                    .or_default()
                    .push(partition.partition),
                None => offsets.push(PartitionOffset {
                    partition: partition.partition,
                    offset: Err(KafkaError::new(LEADER_NOT_AVAILABLE, None)),
                }),
            }
        }
        for (leader, partitions) in by_leader {
            let connection = self.connection_to(leader)?;
            let version = connection.version(ApiKey::ListOffsets)?;
            let mut listed = ListOffsetsTopic::default();
            listed.name = topic_name(&topic.name);
            listed.partitions = partitions
                .iter()
                .map(|partition| {
                    let mut asked = ListOffsetsPartition::default();
                    asked.partition_index = *partition;
                    asked.timestamp = timestamp;
                    asked
                })
                .collect();
            let mut request = ListOffsetsRequest::default();
            request.replica_id = BrokerId(CONSUMER_REPLICA_ID);
            request.topics = vec![listed];
            // Only v10 carries it; earlier versions leave it out when encoding.
            request.timeout_ms = timeout_ms;
            let response = connection.send(&request, version)?;
            let answered: Vec<_> = response
                .topics
                .into_iter()
                .filter(|answer| answer.name.0.as_str() == topic.name)
                .flat_map(|answer| answer.partitions)
                .collect();
            for partition in partitions {
                let answer = answered
                    .iter()
                    .find(|answer| answer.partition_index == partition)
                    .ok_or_else(|| ClientError::Protocol {
                        address: connection.address().to_string(),
                        api: ApiKey::ListOffsets,
                        message: format!("no result for partition {}-{partition}", topic.name),
                    })?;
                let offset = KafkaError::check(answer.error_code, None).map(|()| answer.offset);
                offsets.push(PartitionOffset { partition, offset });
            }
        }
        offsets.sort_by_key(|offset| offset.partition);
        Ok(offsets)
    }

    /// Starts or cancels partition reassignments (AlterPartitionReassignments,
    /// sent to the controller) and returns the controller's answer for each,
    /// in the order asked. With `allow_replication_factor_change` false, a
    /// broker of Kafka 3.9 or later (request v1) refuses a target whose size
    /// differs from the partition's replica count; older brokers cannot be
    /// asked to refuse.
    ///
    /// Entries answered NOT_CONTROLLER (the controller moved while the
    /// request was on its way) are asked once more of the new controller:
    /// asking for the same target twice is harmless.
    pub fn alter_partition_reassignments(
        &mut self,
        reassignments: &[PartitionReassignment],
        allow_replication_factor_change: bool,
    ) -> Result<Vec<ReassignmentResult>, ClientError> {
        let mut results =
            self.alter_reassignments_round(reassignments, allow_replication_factor_change)?;
        let moved = |result: &ReassignmentResult| matches!(&result.result, Err(error) if error.code == NOT_CONTROLLER);
        let again: Vec<PartitionReassignment> = reassignments
            .iter()
            .zip(&results)
            .filter(|(_, result)| moved(result))
            .map(|(asked, _)| asked.clone())
            .collect();
        if again.is_empty() {
            return Ok(results);
        }
        self.metadata(Some(&[]))?;
        let mut answers = self
            .alter_reassignments_round(&again, allow_replication_factor_change)?
            .into_iter();
        for result in results.iter_mut().filter(|result| moved(result)) {
            if let Some(answer) = answers.next() {
                *result = answer;
            }
        }
        Ok(results)
    }

    /// One AlterPartitionReassignments request (sent again once if the
    /// whole request was answered NOT_CONTROLLER), its answers matched to
    /// the entries asked.
    fn alter_reassignments_round(
        &mut self,
        reassignments: &[PartitionReassignment],
        allow_replication_factor_change: bool,
    ) -> Result<Vec<ReassignmentResult>, ClientError> {
        let answers =
            match self.alter_reassignments_once(reassignments, allow_replication_factor_change) {
                Err(ClientError::Broker(error)) if error.code == NOT_CONTROLLER => {
                    self.metadata(Some(&[]))?;
                    self.alter_reassignments_once(reassignments, allow_replication_factor_change)
                }
                other => other,
            }?;
        reassignments
            .iter()
            .map(|asked| {
                let result = answers
                    .iter()
                    .find(|(topic, partition, _)| {
                        *topic == asked.topic && *partition == asked.partition
                    })
                    .map(|(_, _, result)| result.clone())
                    .ok_or_else(|| ClientError::Protocol {
                        address: self.bootstrap.address().to_string(),
                        api: ApiKey::AlterPartitionReassignments,
                        message: format!(
                            "no result for partition {}-{}",
                            asked.topic, asked.partition
                        ),
                    })?;
                Ok(ReassignmentResult {
                    topic: asked.topic.clone(),
                    partition: asked.partition,
                    result,
                })
            })
            .collect()
    }

    /// One AlterPartitionReassignments exchange with the controller: each
    /// answered partition with its result.
    #[allow(clippy::type_complexity)]
    fn alter_reassignments_once(
        &mut self,
        reassignments: &[PartitionReassignment],
        allow_replication_factor_change: bool,
    ) -> Result<Vec<(String, i32, Result<(), KafkaError>)>, ClientError> {
        let mut topics: Vec<ReassignableTopic> = Vec::new();
        for reassignment in reassignments {
            let mut partition = ReassignablePartition::default();
            partition.partition_index = reassignment.partition;
            partition.replicas = reassignment
                .replicas
                .as_ref()
                .map(|replicas| replicas.iter().copied().map(BrokerId).collect());
            let name = topic_name(&reassignment.topic);
            match topics.iter_mut().find(|topic| topic.name == name) {
                Some(topic) => topic.partitions.push(partition),
                None => {
                    let mut topic = ReassignableTopic::default();
                    topic.name = name;
                    topic.partitions = vec![partition];
                    topics.push(topic);
                }
            }
        }
        let timeout_ms = self.options.operation_timeout_ms;
        let connection = self.controller()?;
        let version = connection.version(ApiKey::AlterPartitionReassignments)?;
        let mut request = AlterPartitionReassignmentsRequest::default();
        request.timeout_ms = timeout_ms;
        // v0 has no such field, and its encoder refuses anything but true.
        request.allow_replication_factor_change =
            allow_replication_factor_change || version < REASSIGNMENT_FACTOR_GUARD_VERSION_MIN;
        request.topics = topics;
        let response = connection.send(&request, version)?;
        KafkaError::check(
            response.error_code,
            response.error_message.as_ref().map(text),
        )?;
        Ok(response
            .responses
            .iter()
            .flat_map(|topic| {
                topic.partitions.iter().map(|partition| {
                    (
                        text(&topic.name.0),
                        partition.partition_index,
                        KafkaError::check(
                            partition.error_code,
                            partition.error_message.as_ref().map(text),
                        ),
                    )
                })
            })
            .collect())
    }

    /// The reassignments in progress (ListPartitionReassignments, asked of
    /// the controller): all of them, or those of the `partitions` named.
    /// Sorted by topic and partition.
    pub fn list_partition_reassignments(
        &mut self,
        partitions: Option<&[(&str, i32)]>,
    ) -> Result<Vec<OngoingReassignment>, ClientError> {
        let timeout_ms = self.options.operation_timeout_ms;
        let mut request = ListPartitionReassignmentsRequest::default();
        request.timeout_ms = timeout_ms;
        request.topics = partitions.map(|partitions| {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (topic, partition) in partitions {
                by_topic.entry(topic).or_default().push(*partition);
            }
            by_topic
                .into_iter()
                .map(|(name, indexes)| {
                    let mut topic = ListPartitionReassignmentsTopics::default();
                    topic.name = topic_name(name);
                    topic.partition_indexes = indexes;
                    topic
                })
                .collect()
        });
        let connection = self.controller()?;
        let version = connection.version(ApiKey::ListPartitionReassignments)?;
        let response = connection.send(&request, version)?;
        KafkaError::check(
            response.error_code,
            response.error_message.as_ref().map(text),
        )?;
        let mut ongoing: Vec<OngoingReassignment> = response
            .topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| OngoingReassignment {
                        topic: text(&topic.name.0),
                        partition: partition.partition_index,
                        replicas: partition.replicas.iter().map(|id| id.0).collect(),
                        adding: partition.adding_replicas.iter().map(|id| id.0).collect(),
                        removing: partition.removing_replicas.iter().map(|id| id.0).collect(),
                    })
            })
            .collect();
        ongoing.sort_by(|left, right| {
            (left.topic.as_str(), left.partition).cmp(&(right.topic.as_str(), right.partition))
        });
        Ok(ongoing)
    }

    /// Asks the controller for leader elections (ElectLeaders) on the
    /// `partitions` named, or on every partition (`None`; then, as Kafka
    /// answers, the partitions that need no election are left out). Returns
    /// each partition's result: in the order asked, or for every partition
    /// sorted by topic and partition.
    ///
    /// Partitions answered NOT_CONTROLLER (the controller moved while the
    /// request was on its way) are asked once more of the new controller;
    /// one whose election the old controller had made is then reported as
    /// not needed.
    pub fn elect_leaders(
        &mut self,
        election: ElectionType,
        partitions: Option<&[(&str, i32)]>,
    ) -> Result<Vec<ElectionResult>, ClientError> {
        let mut results = self.elect_leaders_round(election, partitions)?;
        let Some(partitions) = partitions else {
            return Ok(results);
        };
        let moved = |result: &ElectionResult| matches!(&result.result, Err(error) if error.code == NOT_CONTROLLER);
        let again: Vec<(&str, i32)> = partitions
            .iter()
            .zip(&results)
            .filter(|(_, result)| moved(result))
            .map(|(asked, _)| *asked)
            .collect();
        if again.is_empty() {
            return Ok(results);
        }
        self.metadata(Some(&[]))?;
        let mut answers = self
            .elect_leaders_round(election, Some(&again))?
            .into_iter();
        for result in results.iter_mut().filter(|result| moved(result)) {
            if let Some(answer) = answers.next() {
                *result = answer;
            }
        }
        Ok(results)
    }

    /// One ElectLeaders request (sent again once if the whole request was
    /// answered NOT_CONTROLLER), its answers matched to the partitions asked.
    fn elect_leaders_round(
        &mut self,
        election: ElectionType,
        partitions: Option<&[(&str, i32)]>,
    ) -> Result<Vec<ElectionResult>, ClientError> {
        let mut answers = match self.elect_leaders_once(election, partitions) {
            Err(ClientError::Broker(error)) if error.code == NOT_CONTROLLER => {
                self.metadata(Some(&[]))?;
                self.elect_leaders_once(election, partitions)
            }
            other => other,
        }?;
        let Some(partitions) = partitions else {
            answers.sort_by(|left, right| {
                (left.topic.as_str(), left.partition).cmp(&(right.topic.as_str(), right.partition))
            });
            return Ok(answers);
        };
        partitions
            .iter()
            .map(|&(topic, partition)| {
                answers
                    .iter()
                    .find(|answer| answer.topic == topic && answer.partition == partition)
                    .cloned()
                    .ok_or_else(|| ClientError::Protocol {
                        address: self.bootstrap.address().to_string(),
                        api: ApiKey::ElectLeaders,
                        message: format!("no result for partition {topic}-{partition}"),
                    })
            })
            .collect()
    }

    /// One ElectLeaders exchange with the controller: each answered
    /// partition with its result. A top-level error (v1+) is an `Err`,
    /// with the first partition's message when the response has one.
    fn elect_leaders_once(
        &mut self,
        election: ElectionType,
        partitions: Option<&[(&str, i32)]>,
    ) -> Result<Vec<ElectionResult>, ClientError> {
        let topics = partitions.map(|partitions| {
            let mut topics: Vec<TopicPartitions> = Vec::new();
            for &(name, partition) in partitions {
                let name = topic_name(name);
                match topics.iter_mut().find(|topic| topic.topic == name) {
                    Some(topic) => topic.partitions.push(partition),
                    None => {
                        let mut topic = TopicPartitions::default();
                        topic.topic = name;
                        topic.partitions = vec![partition];
                        topics.push(topic);
                    }
                }
            }
            topics
        });
        let timeout_ms = self.options.operation_timeout_ms;
        let connection = self.controller()?;
        let version = connection.version(ApiKey::ElectLeaders)?;
        if election != ElectionType::Preferred && version < ELECTION_TYPE_VERSION_MIN {
            return Err(ClientError::Encode {
                api: ApiKey::ElectLeaders,
                version,
                message: format!(
                    "the broker speaks ElectLeaders v{version}, which cannot ask for {} \
                     elections (v{ELECTION_TYPE_VERSION_MIN} can)",
                    election.name()
                ),
            });
        }
        let mut request = ElectLeadersRequest::default();
        if version >= ELECTION_TYPE_VERSION_MIN {
            request.election_type = election.id();
        }
        request.topic_partitions = topics;
        request.timeout_ms = timeout_ms;
        let response = connection.send(&request, version)?;
        let first_message = response
            .replica_election_results
            .iter()
            .flat_map(|topic| &topic.partition_result)
            .find_map(|partition| partition.error_message.as_ref().map(text));
        KafkaError::check(response.error_code, first_message)?;
        Ok(response
            .replica_election_results
            .iter()
            .flat_map(|topic| {
                topic
                    .partition_result
                    .iter()
                    .map(|partition| ElectionResult {
                        topic: text(&topic.topic.0),
                        partition: partition.partition_id,
                        result: KafkaError::check(
                            partition.error_code,
                            partition.error_message.as_ref().map(text),
                        ),
                    })
            })
            .collect())
    }
}
