//! Broker configuration: the embedded defaults, then a TOML file
//! (`--config`), then `SLUICE_*` environment variables, then flags. Every
//! setting has one name used in all three places (`data_dir` in TOML,
//! `SLUICE_DATA_DIR`, `--data-dir`), and a bad value is one line naming the
//! setting, where it came from, and what is expected.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use sluice_engine::constants::{SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, SHARDS_MAX};

/// Below 200 ms (two quorum heartbeats) one late answer fences a healthy
/// broker; above ten minutes a dead one keeps its partitions too long.
const BROKER_SESSION_TIMEOUT_MS_MIN: i64 = 200;
const BROKER_SESSION_TIMEOUT_MS_MAX: i64 = 600_000;
/// Bounds of `replica_lag_time_max_ms`: below a few fetch round trips a
/// healthy follower would drop out of the ISR; above an hour a dead one
/// would hold acks=all writes that long.
const REPLICA_LAG_TIME_MS_MIN: i64 = 100;
const REPLICA_LAG_TIME_MS_MAX: i64 = 3_600_000;
/// A day: checking leadership balance less often than that is off.
const LEADER_IMBALANCE_CHECK_INTERVAL_MS_MAX: i64 = 86_400_000;
/// Longest spin before an idle shard parks: beyond this it is a busy loop.
const SPIN_BEFORE_PARK_US_MAX: i64 = 10_000;
use sluice_net::config::{SecurityProtocol, LOG_CLEANER_DEDUPE_BUFFER_BYTES_MIN};
use sluice_net::sasl::session::{parse_mechanisms, parse_super_users};
use sluice_net::BrokerConfig;

/// Every setting: its name, and what it expects (for error messages and help).
pub const SETTINGS: &[(&str, &str)] = &[
    ("node_id", "a non-negative integer"),
    (
        "data_dir",
        "a directory path: the one data directory (the one-directory form of log_dirs)",
    ),
    (
        "start_without_missing_log_dirs",
        "true or false: start even if a data directory this broker kept partitions in is missing or empty, leaving it out (default false: refuse to start)",
    ),
    (
        "log_dirs",
        "data directory paths separated by commas, e.g. /disk1/sluice,/disk2/sluice (Kafka's log.dirs): each partition lives in one of them; the first also holds the metadata",
    ),
    (
        "controller_listen",
        "host:port the metadata quorum's own port binds, e.g. 127.0.0.1:9093 (needed on a voter of a quorum of more than one)",
    ),
    (
        "controller_voters",
        "the quorum's voters as ID@HOST:PORT,..., e.g. 1@10.0.0.1:9093,2@10.0.0.2:9093,3@10.0.0.3:9093 (default: this node alone)",
    ),
    ("rack", "a rack name, used to spread replicas"),
    (
        "replica_lag_time_max_ms",
        "milliseconds a follower may stay behind the leader's log end before it leaves the ISR, 100 to 3600000 (Kafka default 30000)",
    ),
    (
        "min_insync_replicas",
        "the fewest in-sync replicas an acks=all write needs, 1 to 32767 (Kafka default 1; a topic's min.insync.replicas overrides it)",
    ),
    (
        "leader_imbalance_check_interval_ms",
        "milliseconds between moves of leadership back to preferred replicas, 0 (off) to 86400000 (Kafka default 300000)",
    ),
    (
        "unclean_leader_election",
        "true or false: elect a replica outside the ISR when no ISR member is live, losing what it lacks (Kafka default false)",
    ),
    (
        "broker_session_timeout_ms",
        "milliseconds without an answer after which the active controller fences a broker, 200 to 600000 (default 1500)",
    ),
    (
        "listen",
        "host:port to bind, e.g. 127.0.0.1:9092 (port 0 picks a free port)",
    ),
    ("advertised_listener", "host:port clients should connect to"),
    (
        "admin_listen",
        "host:port of the admin port (HTTP: /metrics in Prometheus text, /health, /ready), e.g. 127.0.0.1:9644; empty or absent: off (port 0 picks a free port)",
    ),
    ("shards", "a number of shards between 1 and 256"),
    ("pin_shards", "true or false"),
    (
        "spin_before_park_us",
        "microseconds an idle shard polls before parking, 0 to 10000 (default 0)",
    ),
    ("auto_create_topics", "true or false"),
    ("num_partitions", "a positive integer"),
    (
        "default_replication_factor",
        "replicas per partition when a request asks for -1, 1 to 32767 (Kafka default 1)",
    ),
    ("segment_bytes", "bytes per segment, 4096 to 2147483647"),
    ("segment_ms", "milliseconds, at least 1"),
    ("retention_ms", "milliseconds, or -1 for unlimited"),
    ("retention_bytes", "bytes, or -1 for unlimited"),
    ("message_max_bytes", "bytes, at least 1"),
    ("cache_bytes_per_shard", "bytes, at least 1048576"),
    (
        "allocator_free_bytes_max",
        "bytes of free memory kept resident before it is returned to the kernel, 0 = never (default 268435456)",
    ),
    ("retention_check_interval_ms", "milliseconds, at least 1"),
    ("log_cleaner_enable", "true or false (default true)"),
    (
        "log_cleaner_backoff_ms",
        "milliseconds a shard's cleaner sleeps when no compacted log is dirty enough, at least 1 (default 15000)",
    ),
    (
        "log_cleaner_dedupe_buffer_bytes",
        "bytes of one shard's cleaner key map, at least 1048576 (default 33554432)",
    ),
    (
        "log_cleaner_io_max_bytes_per_second",
        "bytes per second one shard's cleaner reads and writes at most, 0 = no limit (default 0)",
    ),
    ("connections_max_idle_ms", "milliseconds, at least 1"),
    (
        "max_connections",
        "connections open at once over the whole broker, at least 1 (default 20000); a full broker stops accepting",
    ),
    (
        "max_connections_per_ip",
        "connections open at once from one address, at least 1 (default unlimited); more are closed at once",
    ),
    ("delete_topic_enable", "true or false"),
    (
        "listener_security_protocol",
        "the client listener's security protocol, Kafka's names: PLAINTEXT (default) or SASL_PLAINTEXT (SSL and SASL_SSL need TLS, not built yet)",
    ),
    (
        "sasl_enabled_mechanisms",
        "SASL mechanisms a SASL_PLAINTEXT listener offers, separated by commas: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (default all three)",
    ),
    (
        "super_users",
        "principals separated by semicolons, e.g. User:admin;User:ops (Kafka's super.users): with the acl authorizer they may do everything; on a SASL listener without one, they alone may manage SCRAM users",
    ),
    (
        "authorizer",
        "none (default: every request is allowed) or acl: requests are checked against the ACLs that CreateAcls makes (Kafka's authorizer.class.name); a single broker only",
    ),
    (
        "allow_everyone_if_no_acl_found",
        "true or false (default false): with the acl authorizer, whether a resource no ACL names is open to everyone",
    ),
    (
        "group_initial_rebalance_delay_ms",
        "milliseconds, 0 or more (Kafka default 3000)",
    ),
    ("group_min_session_timeout_ms", "milliseconds, at least 1"),
    (
        "group_max_session_timeout_ms",
        "milliseconds, at least group_min_session_timeout_ms",
    ),
    ("group_max_size", "members per group, at least 1"),
    (
        "offsets_topic_num_partitions",
        "partitions of __consumer_offsets when it is created, 1 to 1000",
    ),
    (
        "offsets_topic_replication_factor",
        "replicas of each __consumer_offsets partition when it is created, 1 to 32767, capped at the cluster's size (Kafka default 3)",
    ),
    ("offsets_retention_minutes", "minutes, at least 1"),
    (
        "offsets_retention_check_interval_ms",
        "milliseconds, at least 1",
    ),
    (
        "group_consumer_session_timeout_ms",
        "milliseconds, at least 1 (Kafka default 45000)",
    ),
    (
        "group_consumer_heartbeat_interval_ms",
        "milliseconds, at least 1 and below group_consumer_session_timeout_ms (Kafka default 5000)",
    ),
    (
        "group_consumer_assignors",
        "comma-separated server assignors, first is the default: uniform, range",
    ),
    (
        "group_consumer_max_size",
        "members per consumer group, at least 1",
    ),
    (
        "transaction_state_log_num_partitions",
        "partitions of __transaction_state when it is created, 1 to 1000",
    ),
    (
        "transaction_state_log_replication_factor",
        "replicas of each __transaction_state partition when it is created, 1 to 32767, capped at the cluster's size (Kafka default 3)",
    ),
    (
        "transaction_state_log_min_isr",
        "min.insync.replicas of __transaction_state, 1 to 32767, capped at its replication factor (Kafka default 2)",
    ),
    ("transaction_max_timeout_ms", "milliseconds, at least 1"),
    ("transactional_id_expiration_ms", "milliseconds, at least 1"),
    (
        "transaction_abort_timed_out_transaction_cleanup_interval_ms",
        "milliseconds, at least 1",
    ),
];

/// Most partitions `__consumer_offsets` may be created with (Kafka caps
/// nothing, but every partition is a log every restart replays).
const OFFSETS_TOPIC_PARTITIONS_MAX: i64 = 1000;

/// Smallest batch cache that still holds a few batches per partition.
const CACHE_BYTES_MIN: usize = 1 << 20;

/// Where a value came from, for the error message.
#[derive(Clone, Debug)]
pub enum Source {
    File(PathBuf),
    Environment(String),
    Flag(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Environment(name) => write!(f, "environment variable {name}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

fn expected(name: &str) -> &'static str {
    SETTINGS
        .iter()
        .find(|(setting, _)| *setting == name)
        .map(|(_, what)| *what)
        .unwrap_or("")
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn resolve(value: &str) -> Option<SocketAddr> {
    value.to_socket_addrs().ok()?.next()
}

/// Applies one setting. The error is the whole one-line message.
pub fn apply(
    config: &mut BrokerConfig,
    name: &str,
    value: &str,
    source: &Source,
) -> Result<(), String> {
    let bad = || {
        format!(
            "invalid value '{value}' for {name} (from {source}): expected {}",
            expected(name)
        )
    };
    let long = |min: i64, max: i64| value.parse::<i64>().ok().filter(|v| *v >= min && *v <= max);
    match name {
        "node_id" => config.node_id = long(0, i32::MAX as i64).ok_or_else(bad)? as i32,
        "data_dir" => {
            if value.is_empty() {
                return Err(bad());
            }
            config.data_dir = PathBuf::from(value);
            config.extra_log_dirs.clear();
        }
        "start_without_missing_log_dirs" => {
            config.start_without_missing_log_dirs = parse_bool(value).ok_or_else(bad)?
        }
        "log_dirs" => {
            let dirs: Vec<PathBuf> = value
                .split(',')
                .map(str::trim)
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from)
                .collect();
            let Some((first, rest)) = dirs.split_first() else {
                return Err(bad());
            };
            if let Some(twice) = dirs
                .iter()
                .enumerate()
                .find(|(index, dir)| dirs[..*index].contains(dir))
            {
                return Err(format!(
                    "invalid value '{value}' for {name} (from {source}): {} is listed twice",
                    twice.1.display()
                ));
            }
            config.data_dir = first.clone();
            config.extra_log_dirs = rest.to_vec();
            // Reported as log.dirs, whose source the catalog reads here.
            config.set_by_operator.insert("data_dir");
        }
        "listen" => config.listen = resolve(value).ok_or_else(bad)?,
        "admin_listen" => {
            config.admin_listen = if value.trim().is_empty() {
                None
            } else {
                Some(resolve(value).ok_or_else(bad)?)
            }
        }
        "controller_listen" => {
            config.cluster.controller_listen = Some(resolve(value).ok_or_else(bad)?)
        }
        "controller_voters" => {
            let mut voters = Vec::new();
            for voter in value
                .split(',')
                .map(str::trim)
                .filter(|voter| !voter.is_empty())
            {
                let (id, address) = voter.split_once('@').ok_or_else(bad)?;
                let id = id
                    .parse::<i32>()
                    .ok()
                    .filter(|id| *id >= 0)
                    .ok_or_else(bad)?;
                let address = resolve(address).ok_or_else(bad)?;
                if voters.iter().any(|(known, _)| *known == id) {
                    return Err(format!(
                        "controller_voters (from {source}) names node {id} twice; each voter needs its own id"
                    ));
                }
                voters.push((id, address));
            }
            if voters.is_empty() {
                return Err(bad());
            }
            config.cluster.voters = voters;
        }
        "broker_session_timeout_ms" => {
            config.cluster.broker_session_timeout_ms =
                long(BROKER_SESSION_TIMEOUT_MS_MIN, BROKER_SESSION_TIMEOUT_MS_MAX)
                    .ok_or_else(bad)? as u64
        }
        "replica_lag_time_max_ms" => {
            config.cluster.replica_lag_time_max_ms =
                long(REPLICA_LAG_TIME_MS_MIN, REPLICA_LAG_TIME_MS_MAX).ok_or_else(bad)? as u64
        }
        "min_insync_replicas" => {
            config.cluster.min_insync_replicas = long(1, i16::MAX as i64).ok_or_else(bad)? as i32
        }
        "leader_imbalance_check_interval_ms" => {
            config.cluster.leader_imbalance_check_interval_ms =
                long(0, LEADER_IMBALANCE_CHECK_INTERVAL_MS_MAX).ok_or_else(bad)? as u64
        }
        "unclean_leader_election" => {
            config.cluster.unclean_leader_election = parse_bool(value).ok_or_else(bad)?
        }
        "rack" => {
            if value.is_empty() {
                return Err(bad());
            }
            config.cluster.rack = Some(value.to_string());
        }
        "advertised_listener" => {
            let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(bad)?;
            if host.is_empty() {
                return Err(bad());
            }
            config.advertised_host = Some(host.trim_matches(|c| c == '[' || c == ']').to_string());
            config.advertised_port = Some(port);
        }
        "shards" => config.shards = long(1, SHARDS_MAX as i64).ok_or_else(bad)? as usize,
        "pin_shards" => config.pin_shards = parse_bool(value).ok_or_else(bad)?,
        "spin_before_park_us" => {
            config.spin_before_park_us = long(0, SPIN_BEFORE_PARK_US_MAX).ok_or_else(bad)? as u64
        }
        "auto_create_topics" => config.auto_create_topics = parse_bool(value).ok_or_else(bad)?,
        "num_partitions" => {
            config.default_partitions =
                long(1, sluice_engine::constants::TOPIC_PARTITIONS_MAX as i64).ok_or_else(bad)?
                    as i32
        }
        "default_replication_factor" => {
            config.default_replication_factor = long(1, i16::MAX as i64).ok_or_else(bad)? as i16
        }
        "segment_bytes" => {
            config.log.segment_bytes =
                long(SEGMENT_BYTES_MIN as i64, SEGMENT_BYTES_MAX as i64).ok_or_else(bad)? as u64
        }
        "segment_ms" => config.log.segment_ms = long(1, i64::MAX).ok_or_else(bad)?,
        "retention_ms" => config.log.retention_ms = long(-1, i64::MAX).ok_or_else(bad)?,
        "retention_bytes" => config.log.retention_bytes = long(-1, i64::MAX).ok_or_else(bad)?,
        "message_max_bytes" => {
            config.log.max_message_bytes = long(1, i32::MAX as i64).ok_or_else(bad)? as u32
        }
        "cache_bytes_per_shard" => {
            config.cache_bytes_per_shard =
                long(CACHE_BYTES_MIN as i64, i64::MAX).ok_or_else(bad)? as usize
        }
        "allocator_free_bytes_max" => {
            config.allocator_free_bytes_max = long(0, i64::MAX).ok_or_else(bad)? as usize
        }
        "log_cleaner_enable" => config.cleaner.enable = parse_bool(value).ok_or_else(bad)?,
        "log_cleaner_backoff_ms" => {
            config.cleaner.backoff_ms = long(1, i64::MAX).ok_or_else(bad)? as u64
        }
        "log_cleaner_dedupe_buffer_bytes" => {
            config.cleaner.dedupe_buffer_bytes =
                long(LOG_CLEANER_DEDUPE_BUFFER_BYTES_MIN as i64, i64::MAX).ok_or_else(bad)? as u64
        }
        "log_cleaner_io_max_bytes_per_second" => {
            config.cleaner.io_max_bytes_per_second = long(0, i64::MAX).ok_or_else(bad)? as u64
        }
        "retention_check_interval_ms" => {
            config.retention_check_interval_ms = long(1, i64::MAX).ok_or_else(bad)? as u64
        }
        "connections_max_idle_ms" => {
            config.connections_max_idle_ms = long(1, i64::MAX).ok_or_else(bad)? as u64
        }
        "max_connections" => {
            config.max_connections = long(1, i32::MAX as i64).ok_or_else(bad)? as usize
        }
        "max_connections_per_ip" => {
            config.max_connections_per_ip = long(1, i32::MAX as i64).ok_or_else(bad)? as usize
        }
        "delete_topic_enable" => config.delete_topic_enable = parse_bool(value).ok_or_else(bad)?,
        "listener_security_protocol" => {
            config.security_protocol = match value {
                "PLAINTEXT" => SecurityProtocol::Plaintext,
                "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
                "SSL" | "SASL_SSL" => {
                    return Err(format!(
                        "{name} {value} (from {source}) needs TLS, which Sluice does not have yet; use PLAINTEXT or SASL_PLAINTEXT"
                    ))
                }
                _ => return Err(bad()),
            }
        }
        "sasl_enabled_mechanisms" => {
            config.sasl.enabled_mechanisms = parse_mechanisms(value).map_err(|reason| {
                format!("invalid value '{value}' for {name} (from {source}): {reason}")
            })?
        }
        "super_users" => {
            config.sasl.super_users = parse_super_users(value).map_err(|reason| {
                format!("invalid value '{value}' for {name} (from {source}): {reason}")
            })?
        }
        "authorizer" => {
            config.acl_authorizer = match value {
                "none" => false,
                "acl" => true,
                _ => return Err(bad()),
            }
        }
        "allow_everyone_if_no_acl_found" => {
            config.allow_everyone_if_no_acl_found = parse_bool(value).ok_or_else(bad)?
        }
        "group_initial_rebalance_delay_ms" => {
            config.groups.initial_rebalance_delay_ms =
                long(0, i32::MAX as i64).ok_or_else(bad)? as u64
        }
        "group_min_session_timeout_ms" => {
            config.groups.min_session_timeout_ms = long(1, i32::MAX as i64).ok_or_else(bad)? as i32
        }
        "group_max_session_timeout_ms" => {
            config.groups.max_session_timeout_ms = long(1, i32::MAX as i64).ok_or_else(bad)? as i32
        }
        "group_max_size" => {
            config.groups.max_size = long(1, i32::MAX as i64).ok_or_else(bad)? as usize
        }
        "offsets_topic_num_partitions" => {
            config.groups.offsets_topic_partitions =
                long(1, OFFSETS_TOPIC_PARTITIONS_MAX).ok_or_else(bad)? as i32
        }
        "offsets_topic_replication_factor" => {
            config.groups.offsets_topic_replication_factor =
                long(1, i16::MAX as i64).ok_or_else(bad)? as i16
        }
        "transaction_state_log_replication_factor" => {
            config.txn.state_replication_factor = long(1, i16::MAX as i64).ok_or_else(bad)? as i16
        }
        "transaction_state_log_min_isr" => {
            config.txn.state_min_isr = long(1, i16::MAX as i64).ok_or_else(bad)? as i16
        }
        "offsets_retention_minutes" => {
            config.groups.offsets_retention_ms =
                long(1, i64::MAX / 60_000).ok_or_else(bad)? * 60_000
        }
        "offsets_retention_check_interval_ms" => {
            config.groups.offsets_retention_check_interval_ms =
                long(1, i64::MAX).ok_or_else(bad)? as u64
        }
        "group_consumer_session_timeout_ms" => {
            config.groups.consumer_session_timeout_ms =
                long(1, i32::MAX as i64).ok_or_else(bad)? as i32
        }
        "group_consumer_heartbeat_interval_ms" => {
            config.groups.consumer_heartbeat_interval_ms =
                long(1, i32::MAX as i64).ok_or_else(bad)? as i32
        }
        "group_consumer_assignors" => {
            let names: Vec<String> = value
                .split(',')
                .map(|name| name.trim().to_string())
                .filter(|name| !name.is_empty())
                .collect();
            if names.is_empty()
                || names
                    .iter()
                    .any(|name| name != "uniform" && name != "range")
            {
                return Err(bad());
            }
            config.groups.consumer_assignors = names;
        }
        "group_consumer_max_size" => {
            config.groups.consumer_max_size = long(1, i32::MAX as i64).ok_or_else(bad)? as usize
        }
        "transaction_state_log_num_partitions" => {
            config.txn.state_partitions =
                long(1, OFFSETS_TOPIC_PARTITIONS_MAX).ok_or_else(bad)? as i32
        }
        "transaction_max_timeout_ms" => {
            config.txn.max_timeout_ms = long(1, i32::MAX as i64).ok_or_else(bad)? as i32
        }
        "transactional_id_expiration_ms" => {
            config.txn.id_expiration_ms = long(1, i64::MAX).ok_or_else(bad)?
        }
        "transaction_abort_timed_out_transaction_cleanup_interval_ms" => {
            config.txn.abort_check_interval_ms = long(1, i64::MAX).ok_or_else(bad)? as u64
        }
        _ => {
            return Err(format!(
                "unknown setting '{name}' (from {source}); known settings: {}",
                SETTINGS
                    .iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }
    if let Some((known, _)) = SETTINGS.iter().find(|(setting, _)| *setting == name) {
        config.set_by_operator.insert(known);
    }
    Ok(())
}

/// Applies a TOML file: top-level keys are setting names.
pub fn apply_file(config: &mut BrokerConfig, path: &PathBuf) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read config file {}: {error}", path.display()))?;
    let table: toml::Table = text.parse().map_err(|error: toml::de::Error| {
        format!(
            "config file {} is not valid TOML: {}",
            path.display(),
            error.message()
        )
    })?;
    let source = Source::File(path.clone());
    for (name, value) in table {
        let text = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            other => {
                return Err(format!(
                    "invalid value for {name} (from {source}): expected {}, got {}",
                    expected(&name),
                    other.type_str()
                ))
            }
        };
        apply(config, &name, &text, &source)?;
    }
    Ok(())
}

/// Applies `SLUICE_<NAME>` variables for every known setting.
pub fn apply_environment(config: &mut BrokerConfig) -> Result<(), String> {
    for (name, _) in SETTINGS {
        let variable = format!("SLUICE_{}", name.to_ascii_uppercase());
        if let Ok(value) = std::env::var(&variable) {
            apply(config, name, &value, &Source::Environment(variable))?;
        }
    }
    Ok(())
}

/// Builds the configuration from flags (`--name value` or `--name=value`),
/// reading `--config FILE` and the environment first.
pub fn from_args(args: &[String]) -> Result<BrokerConfig, String> {
    let mut flags: Vec<(String, String)> = Vec::new();
    let mut file = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument '{arg}'; run `sluice --help`"));
        };
        let (flag, value) = match flag.split_once('=') {
            Some((flag, value)) => (flag.to_string(), value.to_string()),
            None => {
                let value = iter
                    .next()
                    .ok_or_else(|| format!("flag --{flag} needs a value"))?;
                (flag.to_string(), value.clone())
            }
        };
        if flag == "config" {
            file = Some(PathBuf::from(value));
        } else {
            flags.push((flag, value));
        }
    }
    let mut config = BrokerConfig::default();
    if let Some(path) = file {
        apply_file(&mut config, &path)?;
    }
    apply_environment(&mut config)?;
    for (flag, value) in flags {
        let name = flag.replace('-', "_");
        apply(
            &mut config,
            &name,
            &value,
            &Source::Flag(format!("--{flag}")),
        )?;
    }
    if config.groups.consumer_heartbeat_interval_ms >= config.groups.consumer_session_timeout_ms {
        return Err(format!(
            "group_consumer_heartbeat_interval_ms ({}) must be below group_consumer_session_timeout_ms ({})",
            config.groups.consumer_heartbeat_interval_ms, config.groups.consumer_session_timeout_ms
        ));
    }
    if config.groups.min_session_timeout_ms > config.groups.max_session_timeout_ms {
        return Err(format!(
            "group_min_session_timeout_ms ({}) is larger than group_max_session_timeout_ms ({})",
            config.groups.min_session_timeout_ms, config.groups.max_session_timeout_ms
        ));
    }
    check_quorum_settings(&config)?;
    check_security_settings(&config)?;
    absolute_data_dirs(&mut config)?;
    Ok(config)
}

/// Makes the data directories absolute, resolved against the working
/// directory the broker starts in. glommio's direct-I/O files fail on a
/// relative path (EBADF at the first write), which made a relative
/// `--data-dir`, the default `./data` included, stop the start.
fn absolute_data_dirs(config: &mut BrokerConfig) -> Result<(), String> {
    let absolute = |dir: &PathBuf| {
        std::path::absolute(dir).map_err(|error| {
            format!(
                "cannot resolve the data directory {} against the working directory: {error}",
                dir.display()
            )
        })
    };
    config.data_dir = absolute(&config.data_dir)?;
    config.extra_log_dirs = config
        .extra_log_dirs
        .iter()
        .map(absolute)
        .collect::<Result<_, _>>()?;
    Ok(())
}

/// SASL_PLAINTEXT is for a broker on its own so far: brokers reach each
/// other (replica fetches, transaction markers) through the client
/// listener, and do not authenticate to each other yet.
fn check_security_settings(config: &BrokerConfig) -> Result<(), String> {
    if config.acl_authorizer && !config.is_single_node() {
        return Err(
            "authorizer acl works on a single broker only: a cluster's ACLs would belong in its \
             metadata log, which does not hold them yet"
                .to_string(),
        );
    }
    if config.security_protocol.is_sasl() && !config.is_single_node() {
        return Err(format!(
            "listener_security_protocol {} works on a single broker only: brokers of a cluster \
             connect to each other through the client listener and cannot authenticate yet",
            config.security_protocol.name()
        ));
    }
    Ok(())
}

/// The quorum settings must agree with each other: a voter of a quorum of
/// more than one needs its controller port, and it must be the port the
/// voter list names for it.
fn check_quorum_settings(config: &BrokerConfig) -> Result<(), String> {
    let cluster = &config.cluster;
    if cluster.voters.is_empty() {
        if cluster.controller_listen.is_some() {
            return Err("controller_listen is set but controller_voters is not; list the quorum's voters (ID@HOST:PORT,...), this node among them".into());
        }
        return Ok(());
    }
    let own = cluster
        .voters
        .iter()
        .find(|(id, _)| *id == config.node_id)
        .map(|(_, address)| *address);
    match (own, cluster.controller_listen) {
        (Some(_), None) if cluster.voters.len() > 1 => Err(format!(
            "node {} is a voter in controller_voters but controller_listen is not set; set it to the address the voter list gives for node {}",
            config.node_id, config.node_id
        )),
        (Some(listed), Some(listen)) if listed.port() != listen.port() => Err(format!(
            "controller_voters gives node {} the port {} but controller_listen binds {}; make them the same",
            config.node_id,
            listed.port(),
            listen
        )),
        (None, Some(listen)) => Err(format!(
            "node {} is not in controller_voters ({}) but controller_listen is set to {listen}; a broker that is not a voter has no controller port: drop controller_listen, or add the node to controller_voters",
            config.node_id,
            cluster
                .voters
                .iter()
                .map(|(id, address)| format!("{id}@{address}"))
                .collect::<Vec<_>>()
                .join(",")
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_and_errors_name_the_setting() {
        let args: Vec<String> = [
            "--shards",
            "2",
            "--data-dir=/tmp/x",
            "--listen",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let config = from_args(&args).unwrap();
        assert_eq!(config.shards, 2);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        let relative: Vec<String> = ["--log-dirs", "a,./b", "--listen", "127.0.0.1:0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let config = from_args(&relative).unwrap();
        let here = std::env::current_dir().unwrap();
        assert_eq!(config.data_dir, here.join("a"));
        assert_eq!(config.extra_log_dirs, [here.join("b")]);
        let error = from_args(&["--shards".to_string(), "zero".to_string()]).unwrap_err();
        assert!(
            error.contains("shards") && error.contains("--shards"),
            "{error}"
        );
        let error = from_args(&["--nonsense".to_string(), "1".to_string()]).unwrap_err();
        assert!(error.contains("unknown setting"), "{error}");
    }

    #[test]
    fn group_settings_apply_and_are_checked() {
        let args: Vec<String> = [
            "--group-initial-rebalance-delay-ms",
            "0",
            "--group-min-session-timeout-ms",
            "500",
            "--offsets-retention-minutes",
            "2",
            "--offsets-topic-num-partitions",
            "7",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let config = from_args(&args).unwrap();
        assert_eq!(config.groups.initial_rebalance_delay_ms, 0);
        assert_eq!(config.groups.min_session_timeout_ms, 500);
        assert_eq!(config.groups.offsets_retention_ms, 120_000);
        assert_eq!(config.groups.offsets_topic_partitions, 7);
        let error = from_args(&[
            "--group-max-session-timeout-ms".to_string(),
            "10".to_string(),
        ])
        .unwrap_err();
        assert!(error.contains("group_min_session_timeout_ms"), "{error}");
        let error = from_args(&[
            "--offsets-topic-num-partitions".to_string(),
            "0".to_string(),
        ])
        .unwrap_err();
        assert!(error.contains("offsets_topic_num_partitions"), "{error}");
    }

    #[test]
    fn consumer_group_settings_apply_and_are_checked() {
        let args = |list: &[&str]| -> Vec<String> { list.iter().map(|s| s.to_string()).collect() };
        let config = from_args(&args(&[
            "--group-consumer-session-timeout-ms",
            "3000",
            "--group-consumer-heartbeat-interval-ms",
            "300",
            "--group-consumer-assignors",
            "range, uniform",
            "--group-consumer-max-size",
            "5",
        ]))
        .unwrap();
        assert_eq!(config.groups.consumer_session_timeout_ms, 3000);
        assert_eq!(config.groups.consumer_heartbeat_interval_ms, 300);
        assert_eq!(config.groups.consumer_assignors, vec!["range", "uniform"]);
        assert_eq!(config.groups.consumer_max_size, 5);
        let defaults = from_args(&[]).unwrap();
        assert_eq!(defaults.groups.consumer_session_timeout_ms, 45_000);
        assert_eq!(defaults.groups.consumer_heartbeat_interval_ms, 5_000);
        assert_eq!(defaults.groups.consumer_assignors[0], "uniform");
        let error = from_args(&args(&["--group-consumer-assignors", "sticky"])).unwrap_err();
        assert!(error.contains("group_consumer_assignors"), "{error}");
        let error =
            from_args(&args(&["--group-consumer-heartbeat-interval-ms", "45000"])).unwrap_err();
        assert!(
            error.contains("group_consumer_heartbeat_interval_ms"),
            "{error}"
        );
    }

    #[test]
    fn the_admin_port_is_off_unless_set() {
        let args = |list: &[&str]| -> Vec<String> { list.iter().map(|s| s.to_string()).collect() };
        assert_eq!(from_args(&[]).unwrap().admin_listen, None);
        let config = from_args(&args(&["--admin-listen", "127.0.0.1:9644"])).unwrap();
        assert_eq!(
            config.admin_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9644)))
        );
        assert_eq!(
            from_args(&args(&["--admin-listen="])).unwrap().admin_listen,
            None
        );
        let error = from_args(&args(&["--admin-listen", "nowhere"])).unwrap_err();
        assert!(
            error.contains("admin_listen") && error.contains("--admin-listen"),
            "{error}"
        );
    }

    #[test]
    fn spin_before_park_is_off_by_default_and_bounded() {
        let args = |list: &[&str]| -> Vec<String> { list.iter().map(|s| s.to_string()).collect() };
        assert_eq!(from_args(&[]).unwrap().spin_before_park_us, 0);
        let config = from_args(&args(&["--spin-before-park-us", "150"])).unwrap();
        assert_eq!(config.spin_before_park_us, 150);
        let error = from_args(&args(&["--spin-before-park-us", "10001"])).unwrap_err();
        assert!(error.contains("spin_before_park_us"), "{error}");
    }

    #[test]
    fn quorum_settings_are_parsed_and_checked() {
        let args = |list: &[&str]| list.iter().map(|arg| arg.to_string()).collect::<Vec<_>>();
        let config = from_args(&args(&[
            "--node-id",
            "2",
            "--controller-listen",
            "127.0.0.1:9193",
            "--controller-voters",
            "1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293",
            "--rack",
            "r2",
        ]))
        .unwrap();
        assert_eq!(config.cluster.voters.len(), 3);
        assert_eq!(config.cluster.voters[1].0, 2);
        assert_eq!(config.cluster.rack.as_deref(), Some("r2"));
        let error = from_args(&args(&[
            "--node-id",
            "4",
            "--controller-listen",
            "127.0.0.1:9193",
            "--controller-voters",
            "1@127.0.0.1:9093,2@127.0.0.1:9193",
        ]))
        .unwrap_err();
        assert!(
            error.contains("node 4 is not in controller_voters"),
            "{error}"
        );
        let error = from_args(&args(&[
            "--controller-voters",
            "1@127.0.0.1:9093,1@127.0.0.1:9193",
        ]))
        .unwrap_err();
        assert!(error.contains("twice"), "{error}");
        let error = from_args(&args(&[
            "--node-id",
            "1",
            "--controller-voters",
            "1@127.0.0.1:9093,2@127.0.0.1:9193",
        ]))
        .unwrap_err();
        assert!(error.contains("controller_listen is not set"), "{error}");
        let error = from_args(&args(&["--controller-voters", "one@somewhere"])).unwrap_err();
        assert!(error.contains("controller_voters"), "{error}");
    }

    #[test]
    fn security_settings_are_parsed_and_checked() {
        let args = |list: &[&str]| list.iter().map(|arg| arg.to_string()).collect::<Vec<_>>();
        let defaults = from_args(&[]).unwrap();
        assert_eq!(defaults.security_protocol, SecurityProtocol::Plaintext);
        assert_eq!(defaults.sasl.enabled_mechanisms.len(), 3);
        let config = from_args(&args(&[
            "--listener-security-protocol",
            "SASL_PLAINTEXT",
            "--sasl-enabled-mechanisms",
            "SCRAM-SHA-512",
            "--super-users",
            "User:admin;User:ops",
        ]))
        .unwrap();
        assert_eq!(config.security_protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(
            config.sasl.enabled_mechanisms,
            vec![sluice_net::sasl::Mechanism::ScramSha512]
        );
        assert_eq!(config.sasl.super_users, vec!["admin", "ops"]);
        for protocol in ["SSL", "SASL_SSL"] {
            let error = from_args(&args(&["--listener-security-protocol", protocol])).unwrap_err();
            assert!(error.contains("TLS"), "{error}");
            assert_eq!(error.lines().count(), 1, "{error}");
        }
        let error = from_args(&args(&["--listener-security-protocol", "sasl"])).unwrap_err();
        assert!(error.contains("listener_security_protocol"), "{error}");
        let error = from_args(&args(&["--sasl-enabled-mechanisms", "GSSAPI"])).unwrap_err();
        assert!(error.contains("GSSAPI"), "{error}");
        let error = from_args(&args(&["--super-users", "admin"])).unwrap_err();
        assert!(error.contains("super_users"), "{error}");
        let error = from_args(&args(&[
            "--listener-security-protocol",
            "SASL_PLAINTEXT",
            "--node-id",
            "1",
            "--controller-listen",
            "127.0.0.1:9093",
            "--controller-voters",
            "1@127.0.0.1:9093,2@127.0.0.1:9193",
        ]))
        .unwrap_err();
        assert!(error.contains("single broker"), "{error}");
    }

    #[test]
    fn file_values_are_checked() {
        let dir = std::env::temp_dir().join(format!("sluice-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sluice.toml");
        std::fs::write(&path, "shards = 1\nsegment_bytes = 10\n").unwrap();
        let error = from_args(&["--config".to_string(), path.display().to_string()]).unwrap_err();
        assert!(
            error.contains("segment_bytes") && error.contains("sluice.toml"),
            "{error}"
        );
        std::fs::write(&path, "shards = 1\nauto_create_topics = false\n").unwrap();
        let config = from_args(&["--config".to_string(), path.display().to_string()]).unwrap();
        assert!(!config.auto_create_topics);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
