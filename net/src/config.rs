//! Broker settings, shared read-only by every shard.

use std::net::SocketAddr;
use std::path::PathBuf;

use sluice_engine::constants::BATCH_CACHE_BYTES_DEFAULT;
use sluice_engine::LogConfig;

pub use crate::sasl::session::SaslConfig;

use crate::constants::{
    ALLOCATOR_DECAY_MS_DEFAULT, AUTO_CREATE_PARTITIONS_DEFAULT, CONNECTION_IDLE_MS_DEFAULT,
    CONSUMER_GROUP_HEARTBEAT_INTERVAL_MS_DEFAULT, CONSUMER_GROUP_SESSION_TIMEOUT_MS_DEFAULT,
    CONSUMER_GROUP_SIZE_MAX_DEFAULT, GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT,
    GROUP_SESSION_TIMEOUT_MS_MAX_DEFAULT, GROUP_SESSION_TIMEOUT_MS_MIN_DEFAULT,
    GROUP_SIZE_MAX_DEFAULT, INTERNAL_TOPIC_REPLICATION_FACTOR_DEFAULT, MAX_CONNECTIONS_DEFAULT,
    MAX_CONNECTIONS_PER_IP_DEFAULT, OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT,
    OFFSETS_RETENTION_MS_DEFAULT, OFFSETS_TOPIC_PARTITIONS_DEFAULT,
    TRANSACTIONAL_ID_EXPIRATION_MS_DEFAULT, TRANSACTION_ABORT_CHECK_INTERVAL_MS_DEFAULT,
    TRANSACTION_MAX_TIMEOUT_MS_DEFAULT, TRANSACTION_STATE_MIN_ISR_DEFAULT,
    TRANSACTION_STATE_PARTITIONS_DEFAULT,
};

/// The client listener's security protocol, by Kafka's names (the value
/// `listener.security.protocol.map` gives the listener).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    SaslPlaintext,
    Ssl,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn parse(name: &str) -> Option<SecurityProtocol> {
        [
            SecurityProtocol::Plaintext,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslSsl,
        ]
        .into_iter()
        .find(|protocol| protocol.name() == name)
    }

    pub fn is_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    pub fn is_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

/// A client listener after the first (Kafka's `listeners` list beyond its
/// first entry, which is `listen` with `security_protocol`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraListener {
    /// Kafka's listener name: its protocol's, as in Kafka, unless
    /// `listener_security_protocol_map` gives it a name of its own. Brokers
    /// of a cluster match each other's listeners by it.
    pub name: String,
    /// The address it binds; port 0 picks a free port.
    pub address: SocketAddr,
    pub protocol: SecurityProtocol,
    /// Its `advertised_listeners` entry, if any.
    pub advertised: Option<(String, u16)>,
}

/// Transaction coordinator settings (Kafka's names in the comments).
#[derive(Clone, Debug)]
pub struct TxnConfig {
    /// `transaction.state.log.num.partitions`: used when
    /// `__transaction_state` is created.
    pub state_partitions: i32,
    /// `transaction.state.log.replication.factor` (Kafka's default 3),
    /// capped at the cluster's size when the topic is created.
    pub state_replication_factor: i16,
    /// `transaction.state.log.min.isr` (Kafka's default 2): the state
    /// topic's `min.insync.replicas`, capped at its replication factor.
    pub state_min_isr: i16,
    /// `transaction.max.timeout.ms`: longer client timeouts are refused.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: idle ids are forgotten after this.
    pub id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub abort_check_interval_ms: u64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            state_partitions: TRANSACTION_STATE_PARTITIONS_DEFAULT,
            state_replication_factor: INTERNAL_TOPIC_REPLICATION_FACTOR_DEFAULT,
            state_min_isr: TRANSACTION_STATE_MIN_ISR_DEFAULT,
            max_timeout_ms: TRANSACTION_MAX_TIMEOUT_MS_DEFAULT,
            id_expiration_ms: TRANSACTIONAL_ID_EXPIRATION_MS_DEFAULT,
            abort_check_interval_ms: TRANSACTION_ABORT_CHECK_INTERVAL_MS_DEFAULT,
        }
    }
}

/// Group coordinator settings (Kafka's names in the comments).
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.max.size`.
    pub max_size: usize,
    /// `offsets.topic.num.partitions`: used when `__consumer_offsets` is
    /// created; afterwards the topic's own partition count decides.
    pub offsets_topic_partitions: i32,
    /// `offsets.topic.replication.factor` (Kafka's default 3), capped at
    /// the cluster's size when the topic is created.
    pub offsets_topic_replication_factor: i16,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: u64,
    /// `group.consumer.session.timeout.ms` (KIP-848 groups).
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`.
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.assignors`: the first is the default.
    pub consumer_assignors: Vec<String>,
    /// `group.consumer.max.size`.
    pub consumer_max_size: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT,
            min_session_timeout_ms: GROUP_SESSION_TIMEOUT_MS_MIN_DEFAULT,
            max_session_timeout_ms: GROUP_SESSION_TIMEOUT_MS_MAX_DEFAULT,
            max_size: GROUP_SIZE_MAX_DEFAULT,
            offsets_topic_partitions: OFFSETS_TOPIC_PARTITIONS_DEFAULT,
            offsets_topic_replication_factor: INTERNAL_TOPIC_REPLICATION_FACTOR_DEFAULT,
            offsets_retention_ms: OFFSETS_RETENTION_MS_DEFAULT,
            offsets_retention_check_interval_ms: OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT,
            consumer_session_timeout_ms: CONSUMER_GROUP_SESSION_TIMEOUT_MS_DEFAULT,
            consumer_heartbeat_interval_ms: CONSUMER_GROUP_HEARTBEAT_INTERVAL_MS_DEFAULT,
            consumer_assignors: vec!["uniform".to_string(), "range".to_string()],
            consumer_max_size: CONSUMER_GROUP_SIZE_MAX_DEFAULT,
        }
    }
}

/// Everything a broker needs to run. Built by the `sluice` binary from the
/// embedded defaults, a TOML file, `SLUICE_*` variables and flags.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub node_id: i32,
    /// The first data directory; it also holds the broker's metadata.
    pub data_dir: PathBuf,
    /// The other data directories (`log.dirs` lists `data_dir` and these).
    pub extra_log_dirs: Vec<PathBuf>,
    /// Start without a data directory that is missing (see
    /// `log_dirs::check_missing`); off, such a start is refused.
    pub start_without_missing_log_dirs: bool,
    /// Data directories left out at start because they were missing.
    pub offline_log_dirs: Vec<PathBuf>,
    /// Address every shard's listener binds (SO_REUSEPORT); port 0 picks one.
    pub listen: SocketAddr,
    /// The admin port (HTTP: `/metrics`, `/health`, `/ready`), off when
    /// `None`; port 0 picks a free port.
    pub admin_listen: Option<SocketAddr>,
    /// Host and port clients are told to connect to; defaults to `listen`.
    pub advertised_host: Option<String>,
    pub advertised_port: Option<u16>,
    pub shards: usize,
    /// Pin shard i to CPU i.
    pub pin_shards: bool,
    /// How long an idle shard keeps polling before it parks (0: park at
    /// once). Parking costs a membarrier and a wake-up later: spinning
    /// trades CPU for lower latency at moderate load.
    pub spin_before_park_us: u64,
    /// Kafka's `auto.create.topics.enable` (default true).
    pub auto_create_topics: bool,
    /// Kafka's `num.partitions` for auto-created topics.
    pub default_partitions: i32,
    /// Kafka's `default.replication.factor`: replicas per partition when a
    /// request leaves it at -1 (Kafka's default, 1).
    pub default_replication_factor: i16,
    /// Defaults for every topic's log (overridden per topic by configs).
    pub log: LogConfig,
    /// Batch-cache budget per shard.
    pub cache_bytes_per_shard: usize,
    /// The most segment files a shard keeps open; idle ones past it are
    /// closed and opened again on use. At start it becomes at most a share
    /// of the process's open-file limit; unbounded where nothing set it.
    pub segment_files_per_shard: usize,
    /// How long freed memory may stay resident before the allocator hands
    /// it back to the kernel; 0 hands it back at once.
    pub allocator_decay_ms: u64,
    /// How often retention runs (Kafka's `log.retention.check.interval.ms`).
    pub retention_check_interval_ms: u64,
    /// The cleaner of compacted topics (`log.cleaner.*`).
    pub cleaner: CleanerConfig,
    /// Kafka's `connections.max.idle.ms`.
    pub connections_max_idle_ms: u64,
    /// Kafka's `max.connections`: connections open at once, whole broker.
    pub max_connections: usize,
    /// Kafka's `max.connections.per.ip`.
    pub max_connections_per_ip: usize,
    /// Kafka's `delete.topic.enable`.
    pub delete_topic_enable: bool,
    /// The client listener's security protocol.
    pub security_protocol: SecurityProtocol,
    /// The controller port's: PLAINTEXT, or SSL with certificates checked
    /// both ways (`sluice_cluster::stream`).
    pub controller_security_protocol: SecurityProtocol,
    /// The listeners after the first, each with its own protocol; their
    /// clients are told the listener's own address (on a cluster, every
    /// broker's address on it, from the registrations).
    pub extra_listeners: Vec<ExtraListener>,
    /// The first listener's name (see [`ExtraListener::name`]); `None`:
    /// its protocol's.
    pub listener_name: Option<String>,
    /// `listeners` as set (name, host, port): resolved into `listen`,
    /// `security_protocol`, `listener_name` and `extra_listeners` once every
    /// setting is read, since the map that names their protocols may come
    /// after it.
    pub listener_entries: Vec<(String, String, u16)>,
    /// Kafka's `listener.security.protocol.map`: listener name to protocol.
    pub listener_protocol_map: Vec<(String, SecurityProtocol)>,
    /// Kafka's `inter.broker.listener.name`: the listener the brokers of a
    /// cluster reach each other through, which becomes the first.
    pub inter_broker_listener_name: Option<String>,
    /// `advertised_listeners` as set, by listener name: moved onto the
    /// listeners once every setting is read (they may come after it).
    pub advertised_listeners: Vec<(String, String, u16)>,
    /// SASL mechanisms, super users and credentials, used when
    /// `security_protocol` is SASL_PLAINTEXT or SASL_SSL.
    pub sasl: SaslConfig,
    /// How this broker logs in to the others of its cluster on a SASL
    /// listener (the `inter_broker_sasl_*` settings; Kafka's
    /// `sasl.mechanism.inter.broker.protocol` and the broker's JAAS login).
    pub inter_broker_sasl: InterBrokerSasl,
    /// The `ssl_*` settings, used when `security_protocol` is SSL or
    /// SASL_SSL.
    pub tls_settings: crate::tls::TlsSettings,
    /// The listener's TLS, loaded at start from `tls_settings` when the
    /// protocol is SSL or SASL_SSL.
    pub tls: Option<std::sync::Arc<crate::tls::Tls>>,
    /// The `authorizer` setting (Kafka's `authorizer.class.name`): whether
    /// requests are checked against ACLs.
    pub acl_authorizer: bool,
    /// The ACL authorizer, made at start when `acl_authorizer` is set; off
    /// when `None`: then every request is allowed, as in Kafka without one.
    pub authorizer: Option<std::sync::Arc<crate::acl::Authorizer>>,
    /// Kafka's `allow.everyone.if.no.acl.found` (default false): whether a
    /// resource no ACL names is open to everyone. Read when the authorizer
    /// is made at start.
    pub allow_everyone_if_no_acl_found: bool,
    /// Consumer groups and committed offsets.
    pub groups: GroupConfig,
    /// Transactions.
    pub txn: TxnConfig,
    /// The metadata quorum and this node's place in the cluster.
    pub cluster: ClusterConfig,
    /// The settings (by their Sluice names) the operator set, by flag or
    /// config file: DescribeConfigs reports them as STATIC_BROKER_CONFIG
    /// and the others as DEFAULT_CONFIG.
    pub set_by_operator: std::collections::BTreeSet<&'static str>,
    /// Not a setting: the process's lease for taking writes (see
    /// `broker::lease`), renewed by shard 0 and read by every shard, which
    /// all hold this configuration.
    pub lease: std::sync::Arc<crate::broker::ControllerLease>,
    /// Not a setting either: the counters and snapshots every shard
    /// writes and the admin port reads.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Not a setting either: the broker's partition-mutation buckets
    /// (KIP-599), one for all its shards, as a client's admin connections
    /// may land on any of them. Locked only by CreateTopics,
    /// CreatePartitions and DeleteTopics, and never across an await.
    pub mutation_buckets: std::sync::Arc<std::sync::Mutex<crate::quota::MutationBuckets>>,
}

/// How a node takes part in the cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The quorum's own port (Raft traffic between voters).
    pub controller_listen: Option<SocketAddr>,
    /// Voters by node id; empty means a quorum of this node alone.
    pub voters: Vec<(i32, SocketAddr)>,
    pub rack: Option<String>,
    /// Kafka's `broker.session.timeout.ms`: a broker not heard from for
    /// this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// Kafka's `replica.lag.time.max.ms`: a follower that has not caught up
    /// with the leader's log end for this long leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// Kafka's broker-level `min.insync.replicas`: the ISR size below which
    /// `acks=all` writes are refused (a topic's own setting overrides it).
    pub min_insync_replicas: i32,
    /// Kafka's `unclean.leader.election.enable`: when no ISR member is
    /// live, elect any live replica (losing what it lacks) instead of
    /// leaving the partition offline.
    pub unclean_leader_election: bool,
    /// Kafka's `leader.imbalance.check.interval.seconds` (in milliseconds)
    /// for its `auto.leader.rebalance.enable`: how often the controller
    /// gives leadership back to preferred replicas; 0 turns it off.
    pub leader_imbalance_check_interval_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            controller_listen: None,
            voters: Vec::new(),
            rack: None,
            broker_session_timeout_ms: crate::constants::BROKER_SESSION_TIMEOUT_MS_DEFAULT,
            replica_lag_time_max_ms: crate::constants::REPLICA_LAG_TIME_MAX_MS_DEFAULT,
            min_insync_replicas: 1,
            unclean_leader_election: false,
            leader_imbalance_check_interval_ms:
                crate::constants::LEADER_IMBALANCE_CHECK_INTERVAL_MS_DEFAULT,
        }
    }
}

impl BrokerConfig {
    /// The host the first listener advertises.
    pub fn advertised_host(&self) -> String {
        self.advertised_host
            .clone()
            .unwrap_or_else(|| self.listen.ip().to_string())
    }

    /// Where the clients of a listener after the first are told this
    /// broker is: its `advertised_listeners` entry; else its own address
    /// (`bound`, the port it got), on the first listener's advertised host
    /// when it binds every address.
    pub fn advertised_of(&self, listener: &ExtraListener, bound: SocketAddr) -> (String, u16) {
        if let Some(advertised) = &listener.advertised {
            return advertised.clone();
        }
        let host = if bound.ip().is_unspecified() {
            self.advertised_host()
        } else {
            bound.ip().to_string()
        };
        (host, bound.port())
    }

    /// Every listener's security protocol, the first listener's first.
    pub fn listener_protocols(&self) -> impl Iterator<Item = SecurityProtocol> + '_ {
        std::iter::once(self.security_protocol).chain(
            self.extra_listeners
                .iter()
                .map(|listener| listener.protocol),
        )
    }

    /// The first listener's name.
    pub fn first_listener_name(&self) -> &str {
        self.listener_name
            .as_deref()
            .unwrap_or(self.security_protocol.name())
    }

    /// Every listener's name and protocol, the first listener's first.
    pub fn listener_names(&self) -> impl Iterator<Item = (&str, SecurityProtocol)> + '_ {
        std::iter::once((self.first_listener_name(), self.security_protocol)).chain(
            self.extra_listeners
                .iter()
                .map(|listener| (listener.name.as_str(), listener.protocol)),
        )
    }

    /// Whether the broker runs on its own: no quorum, or one whose only
    /// voter is this broker.
    pub fn is_single_node(&self) -> bool {
        match self.cluster.voters.as_slice() {
            [] => true,
            [(only, _)] => *only == self.node_id,
            _ => false,
        }
    }

    /// Every data directory, the metadata's first (Kafka's `log.dirs`).
    pub fn log_dirs(&self) -> Vec<PathBuf> {
        std::iter::once(self.data_dir.clone())
            .chain(self.extra_log_dirs.iter().cloned())
            .collect()
    }
}

/// The settings of a broker's own SASL login to the other brokers.
#[derive(Clone, Debug)]
pub struct InterBrokerSasl {
    pub mechanism: crate::sasl::Mechanism,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Read from `password_file` once the settings are checked.
    pub credentials: Option<crate::client::sasl::SaslCredentials>,
}

impl Default for InterBrokerSasl {
    /// SCRAM-SHA-512: Kafka's default, GSSAPI, is not spoken here, and of
    /// the others it is the one that never sends the password.
    fn default() -> InterBrokerSasl {
        InterBrokerSasl {
            mechanism: crate::sasl::Mechanism::ScramSha512,
            username: None,
            password_file: None,
            credentials: None,
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            data_dir: PathBuf::from("./data"),
            extra_log_dirs: Vec::new(),
            start_without_missing_log_dirs: false,
            offline_log_dirs: Vec::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            admin_listen: None,
            advertised_host: None,
            advertised_port: None,
            shards: sluice_engine::shard::available_cores(),
            pin_shards: true,
            spin_before_park_us: 0,
            auto_create_topics: true,
            default_partitions: AUTO_CREATE_PARTITIONS_DEFAULT,
            default_replication_factor: 1,
            log: LogConfig::default(),
            cache_bytes_per_shard: BATCH_CACHE_BYTES_DEFAULT,
            segment_files_per_shard: usize::MAX,
            allocator_decay_ms: ALLOCATOR_DECAY_MS_DEFAULT,
            retention_check_interval_ms: 5 * 60 * 1000,
            cleaner: CleanerConfig::default(),
            connections_max_idle_ms: CONNECTION_IDLE_MS_DEFAULT,
            max_connections: MAX_CONNECTIONS_DEFAULT,
            max_connections_per_ip: MAX_CONNECTIONS_PER_IP_DEFAULT,
            delete_topic_enable: true,
            security_protocol: SecurityProtocol::Plaintext,
            controller_security_protocol: SecurityProtocol::Plaintext,
            extra_listeners: Vec::new(),
            listener_name: None,
            listener_entries: Vec::new(),
            listener_protocol_map: Vec::new(),
            inter_broker_listener_name: None,
            advertised_listeners: Vec::new(),
            tls_settings: crate::tls::TlsSettings::default(),
            tls: None,
            sasl: SaslConfig::default(),
            inter_broker_sasl: InterBrokerSasl::default(),
            acl_authorizer: false,
            authorizer: None,
            allow_everyone_if_no_acl_found: false,
            groups: GroupConfig::default(),
            txn: TxnConfig::default(),
            cluster: ClusterConfig::default(),
            set_by_operator: std::collections::BTreeSet::new(),
            lease: std::sync::Arc::default(),
            metrics: std::sync::Arc::default(),
            mutation_buckets: std::sync::Arc::default(),
        }
    }
}

/// Kafka's default `log.cleaner.backoff.ms`: how long a shard's cleaner
/// waits when no log is dirty enough.
pub const LOG_CLEANER_BACKOFF_MS_DEFAULT: u64 = 15_000;
/// Bytes of a shard's cleaner key map (Kafka's
/// `log.cleaner.dedupe.buffer.size` is 128 MiB for all cleaner threads).
pub const LOG_CLEANER_DEDUPE_BUFFER_BYTES_DEFAULT: u64 = 32 * 1024 * 1024;
/// The smallest key map a cleaner is given: a pass must hold some keys.
pub const LOG_CLEANER_DEDUPE_BUFFER_BYTES_MIN: u64 = 1024 * 1024;

/// The log cleaner of compacted topics, one per shard.
#[derive(Clone, Debug)]
pub struct CleanerConfig {
    /// `log.cleaner.enable`.
    pub enable: bool,
    /// `log.cleaner.backoff.ms`.
    pub backoff_ms: u64,
    /// `log.cleaner.dedupe.buffer.size`, per shard.
    pub dedupe_buffer_bytes: u64,
    /// `log.cleaner.io.max.bytes.per.second`, per shard; 0: no limit (Kafka
    /// has none by default either).
    pub io_max_bytes_per_second: u64,
    /// Merge neighbouring cleaned segments that fit one, as Kafka's cleaner
    /// always does; off keeps one segment for every segment rolled.
    pub merge_segments: bool,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            enable: true,
            backoff_ms: LOG_CLEANER_BACKOFF_MS_DEFAULT,
            dedupe_buffer_bytes: LOG_CLEANER_DEDUPE_BUFFER_BYTES_DEFAULT,
            io_max_bytes_per_second: 0,
            merge_segments: true,
        }
    }
}
