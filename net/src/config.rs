//! Broker settings, shared read-only by every shard.

use std::net::SocketAddr;
use std::path::PathBuf;

use sluice_engine::constants::BATCH_CACHE_BYTES_DEFAULT;
use sluice_engine::LogConfig;

use crate::constants::{AUTO_CREATE_PARTITIONS_DEFAULT, CONNECTION_IDLE_MS_DEFAULT};

/// Everything a broker needs to run. Built by the `sluice` binary from the
/// embedded defaults, a TOML file, `SLUICE_*` variables and flags.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub data_dir: PathBuf,
    /// Address every shard's listener binds (SO_REUSEPORT); port 0 picks one.
    pub listen: SocketAddr,
    /// Host and port clients are told to connect to; defaults to `listen`.
    pub advertised_host: Option<String>,
    pub advertised_port: Option<u16>,
    pub shards: usize,
    /// Pin shard i to CPU i.
    pub pin_shards: bool,
    /// Kafka's `auto.create.topics.enable` (default true).
    pub auto_create_topics: bool,
    /// Kafka's `num.partitions` for auto-created topics.
    pub default_partitions: i32,
    /// Defaults for every topic's log (overridden per topic by configs).
    pub log: LogConfig,
    /// Batch-cache budget per shard.
    pub cache_bytes_per_shard: usize,
    /// How often retention runs (Kafka's `log.retention.check.interval.ms`).
    pub retention_check_interval_ms: u64,
    /// Kafka's `connections.max.idle.ms`.
    pub connections_max_idle_ms: u64,
    /// Kafka's `delete.topic.enable`.
    pub delete_topic_enable: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            data_dir: PathBuf::from("./data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_host: None,
            advertised_port: None,
            shards: sluice_engine::shard::available_cores(),
            pin_shards: true,
            auto_create_topics: true,
            default_partitions: AUTO_CREATE_PARTITIONS_DEFAULT,
            log: LogConfig::default(),
            cache_bytes_per_shard: BATCH_CACHE_BYTES_DEFAULT,
            retention_check_interval_ms: 5 * 60 * 1000,
            connections_max_idle_ms: CONNECTION_IDLE_MS_DEFAULT,
            delete_topic_enable: true,
        }
    }
}
