//! Workload files: TOML modelled on the OpenMessaging Benchmark's workload
//! YAML (topics, partitions per topic, message size, key distribution,
//! producers and consumers per topic, producer rate, durations), plus the
//! client settings OMB keeps in its driver files (acks, batching,
//! compression) and the topic settings (replication factor, topic configs),
//! so one file says everything a run depends on.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Smallest message: the 8-byte send timestamp every payload carries.
pub const MESSAGE_BYTES_MIN: usize = 8;
/// Largest message (Kafka's default `message.max.bytes` is about 1 MiB).
pub const MESSAGE_BYTES_MAX: usize = 1024 * 1024;
/// Most topics, partitions and clients a workload may ask for; far beyond
/// what one machine runs, they only catch typos.
pub const TOPICS_MAX: u32 = 10_000;
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 100_000;
pub const CLIENTS_PER_TOPIC_MAX: u32 = 1_000;
/// Longest `linger.ms` accepted (a minute; Kafka allows more, but no
/// benchmark wants it).
pub const LINGER_MS_MAX: f64 = 60_000.0;
/// Most distinct keys (they are generated up front).
pub const KEYS_MAX: u32 = 10_000_000;
/// Most replicas per partition a workload may ask for. Every replica is a
/// broker, and a benchmark cluster of more than a handful of brokers on the
/// machines this suite targets is a typo; Kafka's own limit (`i16::MAX`) is
/// far above it.
pub const REPLICATION_FACTOR_MAX: i16 = 16;
/// Most client executors a workload may ask for: one per core of the
/// largest load machine this suite is meant for.
pub const CLIENT_THREADS_MAX: usize = 64;

/// How keys are chosen (OMB's `keyDistributor`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyDistribution {
    /// No key: the sticky partitioner spreads batches.
    #[default]
    None,
    /// Uniformly random among `keys` distinct keys.
    Random,
    /// `keys` distinct keys in turn.
    RoundRobin,
    /// Zipf-distributed (exponent 1) among `keys` keys: a few hot keys.
    Zipf,
}

/// What the payload bytes after the timestamp look like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadKind {
    /// Random bytes: incompressible, as OMB's default payload file.
    #[default]
    Random,
    /// Text-like bytes that compress about 3-4x, for codec comparisons.
    Compressible,
}

fn default_one() -> u32 {
    1
}
fn default_acks() -> String {
    "1".to_string()
}
fn default_compression() -> String {
    "none".to_string()
}
fn default_batch_bytes() -> usize {
    128 * 1024
}
fn default_linger_ms() -> f64 {
    1.0
}
fn default_in_flight() -> usize {
    5
}
fn default_buffer_memory() -> usize {
    32 * 1024 * 1024
}
fn default_warmup_secs() -> u64 {
    10
}
fn default_duration_secs() -> u64 {
    30
}
fn default_fetch_max_wait_ms() -> u64 {
    100
}
fn default_fetch_min_bytes() -> i32 {
    1
}
fn default_fetch_pipeline_depth() -> usize {
    1
}
fn default_fetch_sessions() -> bool {
    true
}
fn default_keys() -> u32 {
    10_000
}
fn default_replication_factor() -> i16 {
    1
}

/// One benchmark workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_one")]
    pub topics: u32,
    pub partitions_per_topic: i32,
    /// Bytes per message value (at least [`MESSAGE_BYTES_MIN`]).
    pub message_size: usize,
    #[serde(default)]
    pub payload: PayloadKind,
    #[serde(default)]
    pub key_distribution: KeyDistribution,
    /// Distinct keys for the keyed distributions.
    #[serde(default = "default_keys")]
    pub keys: u32,
    #[serde(default = "default_one")]
    pub producers_per_topic: u32,
    #[serde(default = "default_one")]
    pub consumers_per_topic: u32,
    /// Messages per second over all producers; 0 = as fast as possible.
    #[serde(default)]
    pub producer_rate: u64,
    /// `0`, `1` or `all`.
    #[serde(default = "default_acks")]
    pub acks: String,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    #[serde(default = "default_compression")]
    pub compression: String,
    #[serde(default = "default_batch_bytes")]
    pub batch_size: usize,
    /// Kafka's `linger.ms`; fractions are allowed (librdkafka takes them
    /// too), because below a millisecond is where low-latency runs live.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: f64,
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    #[serde(default = "default_buffer_memory")]
    pub buffer_memory: usize,
    #[serde(default)]
    pub idempotence: bool,
    #[serde(default = "default_fetch_min_bytes")]
    pub fetch_min_bytes: i32,
    #[serde(default = "default_fetch_max_wait_ms")]
    pub fetch_max_wait_ms: u64,
    #[serde(default = "default_fetch_pipeline_depth")]
    pub fetch_pipeline_depth: usize,
    /// Consumers fetch in incremental fetch sessions (KIP-227), as Kafka's
    /// Java consumer does.
    #[serde(default = "default_fetch_sessions")]
    pub fetch_sessions: bool,
    #[serde(default = "default_warmup_secs")]
    pub warmup_secs: u64,
    #[serde(default = "default_duration_secs")]
    pub duration_secs: u64,
    /// Consume-from-backlog mode (OMB's `consumerBacklogSizeGB`) when above
    /// zero: producers write this many megabytes as fast as they can while
    /// consumers wait; then consumers read it all, and the consume
    /// throughput is the rate of that catch-up. Small enough a backlog is
    /// read from the broker's cache. Durations are ignored in this mode.
    #[serde(default)]
    pub consume_backlog_mb: u64,
    /// Replicas per partition of the created topics. 1 (the default) is
    /// what a single-node broker can serve; above 1 the broker under test
    /// must be a cluster of at least that many nodes.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i16,
    /// Client executors (threads) the producers and consumers are spread
    /// over; none = one per core, up to four. A fixed-rate latency
    /// workload that one executor keeps up with sets 1: every executor
    /// parks and wakes for each of its events, so a second one on a small
    /// machine adds client CPU that the broker under test then lacks
    /// (README, "One client executor for the acks=all runs").
    #[serde(default)]
    pub client_threads: Option<usize>,
    /// Topic configs passed to CreateTopics (e.g. `"flush.messages" = "1"`
    /// for brokers that fsync only when told to).
    #[serde(default)]
    pub topic_config: BTreeMap<String, String>,
}

impl Workload {
    /// Reads and checks a workload file.
    pub fn load(path: &Path) -> Result<Workload, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read workload {}: {error}", path.display()))?;
        Workload::parse(&text).map_err(|error| format!("workload {}: {error}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Workload, String> {
        let workload: Workload = toml::from_str(text).map_err(|error| error.to_string())?;
        workload.validate()?;
        Ok(workload)
    }

    pub fn validate(&self) -> Result<(), String> {
        let within = |what: &str, value: u64, low: u64, high: u64| {
            if (low..=high).contains(&value) {
                Ok(())
            } else {
                Err(format!("{what} = {value} is outside {low}..={high}"))
            }
        };
        within("topics", self.topics.into(), 1, TOPICS_MAX.into())?;
        within(
            "partitions_per_topic",
            self.partitions_per_topic.max(0) as u64,
            1,
            PARTITIONS_PER_TOPIC_MAX as u64,
        )?;
        within(
            "message_size",
            self.message_size as u64,
            MESSAGE_BYTES_MIN as u64,
            MESSAGE_BYTES_MAX as u64,
        )?;
        within(
            "producers_per_topic",
            self.producers_per_topic.into(),
            1,
            CLIENTS_PER_TOPIC_MAX.into(),
        )?;
        within(
            "consumers_per_topic",
            self.consumers_per_topic.into(),
            0,
            CLIENTS_PER_TOPIC_MAX.into(),
        )?;
        within("duration_secs", self.duration_secs, 1, 24 * 3600)?;
        within("warmup_secs", self.warmup_secs, 0, 24 * 3600)?;
        within(
            "replication_factor",
            self.replication_factor.max(0) as u64,
            1,
            REPLICATION_FACTOR_MAX as u64,
        )?;
        if let Some(threads) = self.client_threads {
            within(
                "client_threads",
                threads as u64,
                1,
                CLIENT_THREADS_MAX as u64,
            )?;
        }
        if !(0.0..=LINGER_MS_MAX).contains(&self.linger_ms) {
            return Err(format!(
                "linger_ms = {} is outside 0..={LINGER_MS_MAX}",
                self.linger_ms
            ));
        }
        if self.key_distribution != KeyDistribution::None {
            within("keys", self.keys.into(), 1, KEYS_MAX.into())?;
        }
        if sluice_net::glommio_client::Acks::parse(&self.acks).is_none() {
            return Err(format!("acks = '{}' is not 0, 1 or all", self.acks));
        }
        if sluice_net::glommio_client::Compression::from_name(&self.compression).is_none() {
            return Err(format!(
                "compression = '{}' is not none, gzip, snappy, lz4 or zstd",
                self.compression
            ));
        }
        if self.consume_backlog_mb > 0 && self.consumers_per_topic == 0 {
            return Err("consume_backlog_mb needs consumers".to_string());
        }
        if self.idempotence && self.acks != "all" && self.acks != "-1" {
            return Err("idempotence requires acks = \"all\"".to_string());
        }
        Ok(())
    }

    pub fn producers(&self) -> u32 {
        self.topics * self.producers_per_topic
    }

    pub fn consumers(&self) -> u32 {
        self.topics * self.consumers_per_topic
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_workload_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).expect("workloads directory") {
            let path = entry.expect("entry").path();
            if path
                .extension()
                .is_some_and(|extension| extension == "toml")
            {
                let workload = Workload::load(&path).expect("valid workload");
                let stem = path
                    .file_stem()
                    .and_then(|stem| stem.to_str())
                    .unwrap_or_default();
                assert_eq!(workload.name, stem, "file name and workload name agree");
                count += 1;
            }
        }
        assert!(count >= 6, "the required workloads ship");
    }

    #[test]
    fn defaults_and_errors() {
        let workload =
            Workload::parse("name = 'x'\npartitions_per_topic = 3\nmessage_size = 100\n")
                .expect("minimal");
        assert_eq!(workload.topics, 1);
        assert_eq!(workload.acks, "1");
        assert_eq!(workload.duration_secs, 30);
        assert_eq!(workload.replication_factor, 1);
        assert!(
            Workload::parse("name = 'x'\npartitions_per_topic = 3\nmessage_size = 4\n").is_err()
        );
        assert!(Workload::parse(
            "name = 'x'\npartitions_per_topic = 3\nmessage_size = 100\nacks = '2'\n"
        )
        .is_err());
        assert!(Workload::parse(
            "name = 'x'\npartitions_per_topic = 3\nmessage_size = 100\ntypo = 1\n"
        )
        .is_err());
    }

    #[test]
    fn replication_factor_is_bounded() {
        let with = |factor: i64| {
            Workload::parse(&format!(
                "name = 'x'\npartitions_per_topic = 3\nmessage_size = 100\nreplication_factor = {factor}\n"
            ))
        };
        assert_eq!(with(3).map(|workload| workload.replication_factor), Ok(3));
        assert!(with(REPLICATION_FACTOR_MAX.into()).is_ok());
        assert!(with(0).is_err());
        assert!(with(-1).is_err());
        assert!(with(i64::from(REPLICATION_FACTOR_MAX) + 1).is_err());
        // Beyond i16 the TOML value does not fit the field at all.
        assert!(with(i64::from(i16::MAX) + 1).is_err());
    }

    #[test]
    fn client_threads_are_bounded() {
        let with = |threads: &str| {
            Workload::parse(&format!(
                "name = 'x'\npartitions_per_topic = 3\nmessage_size = 100\n{threads}"
            ))
        };
        assert_eq!(with("").map(|workload| workload.client_threads), Ok(None));
        assert_eq!(
            with("client_threads = 1\n").map(|workload| workload.client_threads),
            Ok(Some(1))
        );
        assert!(with(&format!("client_threads = {CLIENT_THREADS_MAX}\n")).is_ok());
        assert!(with("client_threads = 0\n").is_err());
        assert!(with(&format!("client_threads = {}\n", CLIENT_THREADS_MAX + 1)).is_err());
    }
}
