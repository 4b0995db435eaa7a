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
use sluice_net::client::sasl::SaslCredentials;
use sluice_net::config::{ExtraListener, SecurityProtocol, LOG_CLEANER_DEDUPE_BUFFER_BYTES_MIN};
use sluice_net::sasl::session::{parse_mechanisms, parse_super_users};
use sluice_net::sasl::Mechanism;
use sluice_net::tls::{ClientAuth, PrincipalRules, TlsProtocol};
use sluice_net::BrokerConfig;

/// Why a value was refused; [`apply`] turns it into the one-line message
/// that names the setting and where the value came from.
enum Refused {
    /// The value is not what the setting's `expects` describes.
    Expected,
    /// A reason more precise than `expects`.
    Because(String),
}

type Applied = Result<(), Refused>;

/// One setting: its name (the TOML key; upper-cased behind `SLUICE_` the
/// environment variable; with dashes the flag), what it expects (for error
/// messages and `--help`), and how a value in text form changes the
/// configuration.
#[derive(Debug)]
pub struct Setting {
    pub name: &'static str,
    pub expects: &'static str,
    apply: fn(&mut BrokerConfig, &str) -> Applied,
}

impl Setting {
    /// The environment variable: `SLUICE_DATA_DIR` for `data_dir`.
    pub fn variable(&self) -> String {
        format!("SLUICE_{}", self.name.to_ascii_uppercase())
    }

    /// The flag without its dashes: `data-dir` for `data_dir`.
    pub fn flag(&self) -> String {
        self.name.replace('_', "-")
    }
}

/// Every setting, the one list the TOML file, the environment and the
/// flags are read by.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "node_id",
        expects: "a non-negative integer",
        apply: |config, value| {
            config.node_id = long(value, 0, i32::MAX as i64)? as i32;
            Ok(())
        },
    },
    Setting {
        name: "data_dir",
        expects: "a directory path: the one data directory (the one-directory form of log_dirs)",
        apply: |config, value| {
            if value.is_empty() {
                return Err(Refused::Expected);
            }
            config.data_dir = PathBuf::from(value);
            config.extra_log_dirs.clear();
            Ok(())
        },
    },
    Setting {
        name: "start_without_missing_log_dirs",
        expects: "true or false: start even if a data directory this broker kept partitions in is \
            missing or empty, leaving it out (default false: refuse to start)",
        apply: |config, value| {
            config.start_without_missing_log_dirs = boolean(value)?;
            Ok(())
        },
    },
    Setting {
        name: "log_dirs",
        expects: "data directory paths separated by commas, e.g. /disk1/sluice,/disk2/sluice \
            (Kafka's log.dirs): each partition lives in one of them; the first also holds the \
            metadata",
        apply: |config, value| {
            let dirs: Vec<PathBuf> = value
                .split(',')
                .map(str::trim)
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from)
                .collect();
            let Some((first, rest)) = dirs.split_first() else {
                return Err(Refused::Expected);
            };
            if let Some(twice) = dirs
                .iter()
                .enumerate()
                .find(|(index, dir)| dirs[..*index].contains(dir))
            {
                return Err(Refused::Because(format!(
                    "{} is listed twice",
                    twice.1.display()
                )));
            }
            config.data_dir = first.clone();
            config.extra_log_dirs = rest.to_vec();
            // Reported as log.dirs, whose source the catalog reads here.
            config.set_by_operator.insert("data_dir");
            Ok(())
        },
    },
    Setting {
        name: "controller_listen",
        expects:
            "host:port the metadata quorum's own port binds, e.g. 127.0.0.1:9093 (needed on a \
            voter of a quorum of more than one)",
        apply: |config, value| {
            config.cluster.controller_listen = Some(address(value)?);
            Ok(())
        },
    },
    Setting {
        name: "controller_voters",
        expects: "the quorum's voters as ID@HOST:PORT,..., e.g. \
            1@10.0.0.1:9093,2@10.0.0.2:9093,3@10.0.0.3:9093 (default: this node alone)",
        apply: |config, value| {
            let mut voters = Vec::new();
            for voter in value
                .split(',')
                .map(str::trim)
                .filter(|voter| !voter.is_empty())
            {
                let (id, address) = voter.split_once('@').ok_or(Refused::Expected)?;
                let id = id
                    .parse::<i32>()
                    .ok()
                    .filter(|id| *id >= 0)
                    .ok_or(Refused::Expected)?;
                let address = resolve(address).ok_or(Refused::Expected)?;
                if voters.iter().any(|(known, _)| *known == id) {
                    return Err(Refused::Because(format!(
                        "it names node {id} twice; each voter needs its own id"
                    )));
                }
                voters.push((id, address));
            }
            if voters.is_empty() {
                return Err(Refused::Expected);
            }
            config.cluster.voters = voters;
            Ok(())
        },
    },
    Setting {
        name: "rack",
        expects: "a rack name, used to spread replicas",
        apply: |config, value| {
            if value.is_empty() {
                return Err(Refused::Expected);
            }
            config.cluster.rack = Some(value.to_string());
            Ok(())
        },
    },
    Setting {
        name: "replica_lag_time_max_ms",
        expects: "milliseconds a follower may stay behind the leader's log end before it leaves \
            the ISR, 100 to 3600000 (Kafka default 30000)",
        apply: |config, value| {
            config.cluster.replica_lag_time_max_ms =
                long(value, REPLICA_LAG_TIME_MS_MIN, REPLICA_LAG_TIME_MS_MAX)? as u64;
            Ok(())
        },
    },
    Setting {
        name: "min_insync_replicas",
        expects: "the fewest in-sync replicas an acks=all write needs, 1 to 32767 (Kafka default \
            1; a topic's min.insync.replicas overrides it)",
        apply: |config, value| {
            config.cluster.min_insync_replicas = long(value, 1, i16::MAX as i64)? as i32;
            Ok(())
        },
    },
    Setting {
        name: "leader_imbalance_check_interval_ms",
        expects: "milliseconds between moves of leadership back to preferred replicas, 0 (off) to \
            86400000 (Kafka default 300000)",
        apply: |config, value| {
            config.cluster.leader_imbalance_check_interval_ms =
                long(value, 0, LEADER_IMBALANCE_CHECK_INTERVAL_MS_MAX)? as u64;
            Ok(())
        },
    },
    Setting {
        name: "unclean_leader_election",
        expects: "true or false: elect a replica outside the ISR when no ISR member is live, \
            losing what it lacks (Kafka default false)",
        apply: |config, value| {
            config.cluster.unclean_leader_election = boolean(value)?;
            Ok(())
        },
    },
    Setting {
        name: "broker_session_timeout_ms",
        expects: "milliseconds without an answer after which the active controller fences a \
            broker, 200 to 600000 (default 1500)",
        apply: |config, value| {
            config.cluster.broker_session_timeout_ms = long(
                value,
                BROKER_SESSION_TIMEOUT_MS_MIN,
                BROKER_SESSION_TIMEOUT_MS_MAX,
            )? as u64;
            Ok(())
        },
    },
    Setting {
        name: "listen",
        expects: "host:port to bind, e.g. 127.0.0.1:9092 (port 0 picks a free port)",
        apply: |config, value| {
            config.listen = address(value)?;
            Ok(())
        },
    },
    Setting {
        name: "listeners",
        expects: "Kafka's listeners list, NAME://host:port separated by commas, each NAME used \
            once and either a security protocol (PLAINTEXT, SASL_PLAINTEXT, SSL, SASL_SSL) or a \
            name listener_security_protocol_map gives one, e.g. \
            PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093; the first (or the one \
            inter_broker_listener_name names) replaces listen and listener_security_protocol",
        apply: |config, value| {
            config.listener_entries = parse_listener_entries(value)?;
            Ok(())
        },
    },
    Setting {
        name: "listener_security_protocol_map",
        expects: "Kafka's listener.security.protocol.map, NAME:PROTOCOL separated by commas, \
            e.g. INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL: the security protocol of each listener \
            named in listeners (a listener named after a protocol needs no entry)",
        apply: |config, value| {
            config.listener_protocol_map = parse_listener_protocol_map(value)?;
            Ok(())
        },
    },
    Setting {
        name: "inter_broker_listener_name",
        expects: "Kafka's inter.broker.listener.name: the listener of listeners the brokers of \
            a cluster reach each other through (default: the first)",
        apply: |config, value| {
            let name = value.trim().to_ascii_uppercase();
            if name.is_empty() {
                return Err(Refused::Expected);
            }
            config.inter_broker_listener_name = Some(name);
            Ok(())
        },
    },
    Setting {
        name: "advertised_listeners",
        expects: "Kafka's advertised.listeners, NAME://host:port separated by commas: where the \
            clients of each listener named in listeners are told to connect",
        apply: |config, value| {
            config.advertised_listeners = parse_listener_entries(value)?;
            Ok(())
        },
    },
    Setting {
        name: "advertised_listener",
        expects: "host:port clients should connect to",
        apply: |config, value| {
            let (host, port) = value.rsplit_once(':').ok_or(Refused::Expected)?;
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|port| *port > 0)
                .ok_or(Refused::Expected)?;
            if host.is_empty() {
                return Err(Refused::Expected);
            }
            config.advertised_host = Some(host.trim_matches(|c| c == '[' || c == ']').to_string());
            config.advertised_port = Some(port);
            Ok(())
        },
    },
    Setting {
        name: "admin_listen",
        expects: "host:port of the admin port (HTTP: /metrics in Prometheus text, /health, \
            /ready), e.g. 127.0.0.1:9644; empty or absent: off (port 0 picks a free port)",
        apply: |config, value| {
            config.admin_listen = if value.trim().is_empty() {
                None
            } else {
                Some(address(value)?)
            };
            Ok(())
        },
    },
    Setting {
        name: "shards",
        expects: "a number of shards between 1 and 256",
        apply: |config, value| {
            config.shards = long(value, 1, SHARDS_MAX as i64)? as usize;
            Ok(())
        },
    },
    Setting {
        name: "pin_shards",
        expects: "true or false",
        apply: |config, value| {
            config.pin_shards = boolean(value)?;
            Ok(())
        },
    },
    Setting {
        name: "spin_before_park_us",
        expects: "microseconds an idle shard polls before parking, 0 to 10000 (default 0)",
        apply: |config, value| {
            config.spin_before_park_us = long(value, 0, SPIN_BEFORE_PARK_US_MAX)? as u64;
            Ok(())
        },
    },
    Setting {
        name: "auto_create_topics",
        expects: "true or false",
        apply: |config, value| {
            config.auto_create_topics = boolean(value)?;
            Ok(())
        },
    },
    Setting {
        name: "num_partitions",
        expects: "a positive integer",
        apply: |config, value| {
            config.default_partitions = long(
                value,
                1,
                sluice_engine::constants::TOPIC_PARTITIONS_MAX as i64,
            )? as i32;
            Ok(())
        },
    },
    Setting {
        name: "default_replication_factor",
        expects: "replicas per partition when a request asks for -1, 1 to 32767 (Kafka default 1)",
        apply: |config, value| {
            config.default_replication_factor = long(value, 1, i16::MAX as i64)? as i16;
            Ok(())
        },
    },
    Setting {
        name: "segment_bytes",
        expects: "bytes per segment, 4096 to 2147483647",
        apply: |config, value| {
            config.log.segment_bytes =
                long(value, SEGMENT_BYTES_MIN as i64, SEGMENT_BYTES_MAX as i64)? as u64;
            Ok(())
        },
    },
    Setting {
        name: "segment_ms",
        expects: "milliseconds, at least 1",
        apply: |config, value| {
            config.log.segment_ms = long(value, 1, i64::MAX)?;
            Ok(())
        },
    },
    Setting {
        name: "retention_ms",
        expects: "milliseconds, or -1 for unlimited",
        apply: |config, value| {
            config.log.retention_ms = long(value, -1, i64::MAX)?;
            Ok(())
        },
    },
    Setting {
        name: "retention_bytes",
        expects: "bytes, or -1 for unlimited",
        apply: |config, value| {
            config.log.retention_bytes = long(value, -1, i64::MAX)?;
            Ok(())
        },
    },
    Setting {
        name: "message_max_bytes",
        expects: "bytes, at least 1",
        apply: |config, value| {
            config.log.max_message_bytes = long(value, 1, i32::MAX as i64)? as u32;
            Ok(())
        },
    },
    Setting {
        name: "cache_bytes_per_shard",
        expects: "bytes, at least 1048576",
        apply: |config, value| {
            config.cache_bytes_per_shard = long(value, CACHE_BYTES_MIN as i64, i64::MAX)? as usize;
            Ok(())
        },
    },
    Setting {
        name: "segment_files_per_shard",
        expects: "segment files each shard keeps open, at least 8 (default and most: half \
            the open-file limit, shared by the shards)",
        apply: |config, value| {
            config.segment_files_per_shard =
                long(value, SEGMENT_FILES_PER_SHARD_MIN as i64, i64::MAX)? as usize;
            Ok(())
        },
    },
    Setting {
        name: "allocator_decay_ms",
        expects: "milliseconds freed memory stays resident before it is returned to the \
            kernel, 0 = at once (default 1000)",
        apply: |config, value| {
            config.allocator_decay_ms = long(value, 0, i64::MAX)? as u64;
            Ok(())
        },
    },
    Setting {
        name: "retention_check_interval_ms",
        expects: "milliseconds, at least 1",
        apply: |config, value| {
            config.retention_check_interval_ms = long(value, 1, i64::MAX)? as u64;
            Ok(())
        },
    },
    Setting {
        name: "log_cleaner_enable",
        expects: "true or false (default true)",
        apply: |config, value| {
            config.cleaner.enable = boolean(value)?;
            Ok(())
        },
    },
    Setting {
        name: "log_cleaner_backoff_ms",
        expects: "milliseconds a shard's cleaner sleeps when no compacted log is dirty enough, at \
            least 1 (default 15000)",
        apply: |config, value| {
            config.cleaner.backoff_ms = long(value, 1, i64::MAX)? as u64;
            Ok(())
        },
    },
    Setting {
        name: "log_cleaner_dedupe_buffer_bytes",
        expects: "bytes of one shard's cleaner key map, at least 1048576 (default 33554432)",
        apply: |config, value| {
            config.cleaner.dedupe_buffer_bytes =
                long(value, LOG_CLEANER_DEDUPE_BUFFER_BYTES_MIN as i64, i64::MAX)? as u64;
            Ok(())
        },
    },
    Setting {
        name: "log_cleaner_io_max_bytes_per_second",
        expects: "bytes per second one shard's cleaner reads and writes at most, 0 = no limit \
            (default 0)",
        apply: |config, value| {
            config.cleaner.io_max_bytes_per_second = long(value, 0, i64::MAX)? as u64;
            Ok(())
        },
    },
    Setting {
        name: "log_cleaner_merge_segments",
        expects: "true or false: merge neighbouring cleaned segments that fit one segment \
            (default true)",
        apply: |config, value| {
            config.cleaner.merge_segments = boolean(value)?;
            Ok(())
        },
    },
    Setting {
        name: "connections_max_idle_ms",
        expects: "milliseconds, at least 1",
        apply: |config, value| {
            config.connections_max_idle_ms = long(value, 1, i64::MAX)? as u64;
            Ok(())
        },
    },
    Setting {
        name: "max_connections",
        expects: "connections open at once over the whole broker, at least 1 (default 20000); a \
            full broker stops accepting",
        apply: |config, value| {
            config.max_connections = long(value, 1, i32::MAX as i64)? as usize;
            Ok(())
        },
    },
    Setting {
        name: "max_connections_per_ip",
        expects: "connections open at once from one address, at least 1 (default unlimited); more \
            are closed at once",
        apply: |config, value| {
            config.max_connections_per_ip = long(value, 1, i32::MAX as i64)? as usize;
            Ok(())
        },
    },
    Setting {
        name: "delete_topic_enable",
        expects: "true or false",
        apply: |config, value| {
            config.delete_topic_enable = boolean(value)?;
            Ok(())
        },
    },
    Setting {
        name: "listener_security_protocol",
        expects: "the client listener's security protocol, Kafka's names: PLAINTEXT (default), \
            SASL_PLAINTEXT, SSL or SASL_SSL (TLS: see ssl_keystore_location)",
        apply: |config, value| {
            config.security_protocol = SecurityProtocol::parse(value).ok_or(Refused::Expected)?;
            Ok(())
        },
    },
    Setting {
        name: "controller_security_protocol",
        expects: "the controller port's security protocol: PLAINTEXT (default) or SSL, on which \
            every node shows its keystore's certificate and checks the other's against \
            ssl_truststore_location (Kafka's listener.security.protocol.map entry of the \
            controller listener)",
        apply: |config, value| {
            config.controller_security_protocol = match SecurityProtocol::parse(value) {
                Some(protocol @ (SecurityProtocol::Plaintext | SecurityProtocol::Ssl)) => protocol,
                _ => return Err(Refused::Expected),
            };
            Ok(())
        },
    },
    Setting {
        name: "ssl_keystore_location",
        expects: "a PEM file with the listener's private key (unencrypted) and its certificate \
            chain, server certificate first (Kafka's ssl.keystore.location with \
            ssl.keystore.type=PEM); read again on SIGHUP",
        apply: |config, value| {
            if value.is_empty() {
                return Err(Refused::Expected);
            }
            config.tls_settings.keystore_location = Some(PathBuf::from(value));
            Ok(())
        },
    },
    Setting {
        name: "ssl_truststore_location",
        expects: "a PEM file with the CA certificates client certificates must chain to (Kafka's \
            ssl.truststore.location with ssl.truststore.type=PEM); read again on SIGHUP",
        apply: |config, value| {
            if value.is_empty() {
                return Err(Refused::Expected);
            }
            config.tls_settings.truststore_location = Some(PathBuf::from(value));
            Ok(())
        },
    },
    Setting {
        name: "ssl_client_auth",
        expects: "none (default), requested or required (Kafka's ssl.client.auth): whether TLS \
            clients are asked for a certificate; on SSL its subject is the principal",
        apply: |config, value| {
            config.tls_settings.client_auth = match value {
                "none" => ClientAuth::None,
                "requested" => ClientAuth::Requested,
                "required" => ClientAuth::Required,
                _ => return Err(Refused::Expected),
            };
            Ok(())
        },
    },
    Setting {
        name: "ssl_principal_mapping_rules",
        expects: "Kafka's ssl.principal.mapping.rules: DEFAULT (the certificate subject as it \
            is) and RULE:pattern/replacement/[LU] separated by commas, e.g. \
            RULE:^CN=([^,]+),.*$/$1/L,DEFAULT",
        apply: |config, value| {
            config.tls_settings.principal_rules =
                PrincipalRules::parse(value).map_err(Refused::Because)?;
            Ok(())
        },
    },
    Setting {
        name: "ssl_enabled_protocols",
        expects: "TLS versions separated by commas: TLSv1.2, TLSv1.3 (default both; Kafka's \
            ssl.enabled.protocols)",
        apply: |config, value| {
            let mut protocols = Vec::new();
            for name in value
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
            {
                let protocol = TlsProtocol::parse(name).ok_or(Refused::Expected)?;
                if !protocols.contains(&protocol) {
                    protocols.push(protocol);
                }
            }
            if protocols.is_empty() {
                return Err(Refused::Expected);
            }
            config.tls_settings.enabled_protocols = protocols;
            Ok(())
        },
    },
    Setting {
        name: "sasl_enabled_mechanisms",
        expects: "SASL mechanisms a SASL_PLAINTEXT listener offers, separated by commas: PLAIN, \
            SCRAM-SHA-256, SCRAM-SHA-512 (default all three), and OAUTHBEARER with \
            sasl_oauthbearer_unsecured_jwt",
        apply: |config, value| {
            config.sasl.enabled_mechanisms = parse_mechanisms(value).map_err(Refused::Because)?;
            Ok(())
        },
    },
    Setting {
        name: "sasl_oauthbearer_unsecured_jwt",
        expects: "true to let OAUTHBEARER in sasl_enabled_mechanisms accept unsigned JSON Web \
            Tokens (Kafka's unsecured validator: the token's sub, exp and iat are checked, not \
            who made it; for development and tests), false (default) otherwise",
        apply: |config, value| {
            config.sasl.oauthbearer_unsecured_jwt = boolean(value)?;
            Ok(())
        },
    },
    Setting {
        name: "inter_broker_sasl_mechanism",
        expects: "the SASL mechanism a broker of a cluster on a SASL listener logs in to the \
            others with (Kafka's sasl.mechanism.inter.broker.protocol): PLAIN, SCRAM-SHA-256 or \
            SCRAM-SHA-512 (default)",
        apply: |config, value| {
            config.inter_broker_sasl.mechanism = Mechanism::from_name(value)
                .filter(|mechanism| mechanism.uses_credentials())
                .ok_or(Refused::Expected)?;
            Ok(())
        },
    },
    Setting {
        name: "inter_broker_sasl_username",
        expects: "the user a broker of a cluster on a SASL listener logs in to the others as \
            (in Kafka, the broker's JAAS login); make it with `sluice user create` and name it \
            in super_users",
        apply: |config, value| {
            sluice_net::sasl::credentials::check_user_name(value).map_err(Refused::Because)?;
            config.inter_broker_sasl.username = Some(value.to_string());
            Ok(())
        },
    },
    Setting {
        name: "inter_broker_sasl_password_file",
        expects: "a file whose first line is the password of inter_broker_sasl_username (kept \
            out of the configuration and of the command line)",
        apply: |config, value| {
            config.inter_broker_sasl.password_file = Some(PathBuf::from(value));
            Ok(())
        },
    },
    Setting {
        name: "connections_max_reauth_ms",
        expects: "milliseconds an authenticated SASL session lasts before the client must \
            authenticate again on its connection (Kafka's connections.max.reauth.ms, KIP-368); \
            0 (default) for ever",
        apply: |config, value| {
            config.sasl.reauth_ms = long(value, 0, i64::MAX)? as u64;
            Ok(())
        },
    },
    Setting {
        name: "super_users",
        expects: "principals separated by semicolons, e.g. User:admin;User:ops (Kafka's \
            super.users): with the acl authorizer they may do everything; on a SASL listener \
            without one, they alone may manage SCRAM users",
        apply: |config, value| {
            config.sasl.super_users = parse_super_users(value).map_err(Refused::Because)?;
            Ok(())
        },
    },
    Setting {
        name: "authorizer",
        expects: "none (default: every request is allowed) or acl: requests are checked against \
            the ACLs that CreateAcls makes (Kafka's authorizer.class.name), kept in the metadata log",
        apply: |config, value| {
            config.acl_authorizer = match value {
                "none" => false,
                "acl" => true,
                _ => return Err(Refused::Expected),
            };
            Ok(())
        },
    },
    Setting {
        name: "allow_everyone_if_no_acl_found",
        expects: "true or false (default false): with the acl authorizer, whether a resource no \
            ACL names is open to everyone",
        apply: |config, value| {
            config.allow_everyone_if_no_acl_found = boolean(value)?;
            Ok(())
        },
    },
    Setting {
        name: "group_initial_rebalance_delay_ms",
        expects: "milliseconds, 0 or more (Kafka default 3000)",
        apply: |config, value| {
            config.groups.initial_rebalance_delay_ms = long(value, 0, i32::MAX as i64)? as u64;
            Ok(())
        },
    },
    Setting {
        name: "group_min_session_timeout_ms",
        expects: "milliseconds, at least 1",
        apply: |config, value| {
            config.groups.min_session_timeout_ms = long(value, 1, i32::MAX as i64)? as i32;
            Ok(())
        },
    },
    Setting {
        name: "group_max_session_timeout_ms",
        expects: "milliseconds, at least group_min_session_timeout_ms",
        apply: |config, value| {
            config.groups.max_session_timeout_ms = long(value, 1, i32::MAX as i64)? as i32;
            Ok(())
        },
    },
    Setting {
        name: "group_max_size",
        expects: "members per group, at least 1",
        apply: |config, value| {
            config.groups.max_size = long(value, 1, i32::MAX as i64)? as usize;
            Ok(())
        },
    },
    Setting {
        name: "offsets_topic_num_partitions",
        expects: "partitions of __consumer_offsets when it is created, 1 to 1000",
        apply: |config, value| {
            config.groups.offsets_topic_partitions =
                long(value, 1, OFFSETS_TOPIC_PARTITIONS_MAX)? as i32;
            Ok(())
        },
    },
    Setting {
        name: "offsets_topic_replication_factor",
        expects: "replicas of each __consumer_offsets partition when it is created, 1 to 32767, \
            capped at the cluster's size (Kafka default 3)",
        apply: |config, value| {
            config.groups.offsets_topic_replication_factor =
                long(value, 1, i16::MAX as i64)? as i16;
            Ok(())
        },
    },
    Setting {
        name: "offsets_retention_minutes",
        expects: "minutes, at least 1",
        apply: |config, value| {
            config.groups.offsets_retention_ms = long(value, 1, i64::MAX / 60_000)? * 60_000;
            Ok(())
        },
    },
    Setting {
        name: "offsets_retention_check_interval_ms",
        expects: "milliseconds, at least 1",
        apply: |config, value| {
            config.groups.offsets_retention_check_interval_ms = long(value, 1, i64::MAX)? as u64;
            Ok(())
        },
    },
    Setting {
        name: "group_consumer_session_timeout_ms",
        expects: "milliseconds, at least 1 (Kafka default 45000)",
        apply: |config, value| {
            config.groups.consumer_session_timeout_ms = long(value, 1, i32::MAX as i64)? as i32;
            Ok(())
        },
    },
    Setting {
        name: "group_consumer_heartbeat_interval_ms",
        expects: "milliseconds, at least 1 and below group_consumer_session_timeout_ms (Kafka \
            default 5000)",
        apply: |config, value| {
            config.groups.consumer_heartbeat_interval_ms = long(value, 1, i32::MAX as i64)? as i32;
            Ok(())
        },
    },
    Setting {
        name: "group_consumer_assignors",
        expects: "comma-separated server assignors, first is the default: uniform, range",
        apply: |config, value| {
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
                return Err(Refused::Expected);
            }
            config.groups.consumer_assignors = names;
            Ok(())
        },
    },
    Setting {
        name: "group_consumer_max_size",
        expects: "members per consumer group, at least 1",
        apply: |config, value| {
            config.groups.consumer_max_size = long(value, 1, i32::MAX as i64)? as usize;
            Ok(())
        },
    },
    Setting {
        name: "transaction_state_log_num_partitions",
        expects: "partitions of __transaction_state when it is created, 1 to 1000",
        apply: |config, value| {
            config.txn.state_partitions = long(value, 1, OFFSETS_TOPIC_PARTITIONS_MAX)? as i32;
            Ok(())
        },
    },
    Setting {
        name: "transaction_state_log_replication_factor",
        expects: "replicas of each __transaction_state partition when it is created, 1 to 32767, \
            capped at the cluster's size (Kafka default 3)",
        apply: |config, value| {
            config.txn.state_replication_factor = long(value, 1, i16::MAX as i64)? as i16;
            Ok(())
        },
    },
    Setting {
        name: "transaction_state_log_min_isr",
        expects: "min.insync.replicas of __transaction_state, 1 to 32767, capped at its \
            replication factor (Kafka default 2)",
        apply: |config, value| {
            config.txn.state_min_isr = long(value, 1, i16::MAX as i64)? as i16;
            Ok(())
        },
    },
    Setting {
        name: "transaction_max_timeout_ms",
        expects: "milliseconds, at least 1",
        apply: |config, value| {
            config.txn.max_timeout_ms = long(value, 1, i32::MAX as i64)? as i32;
            Ok(())
        },
    },
    Setting {
        name: "transactional_id_expiration_ms",
        expects: "milliseconds, at least 1",
        apply: |config, value| {
            config.txn.id_expiration_ms = long(value, 1, i64::MAX)?;
            Ok(())
        },
    },
    Setting {
        name: "transaction_abort_timed_out_transaction_cleanup_interval_ms",
        expects: "milliseconds, at least 1",
        apply: |config, value| {
            config.txn.abort_check_interval_ms = long(value, 1, i64::MAX)? as u64;
            Ok(())
        },
    },
];

/// Most partitions `__consumer_offsets` may be created with (Kafka caps
/// nothing, but every partition is a log every restart replays).
const OFFSETS_TOPIC_PARTITIONS_MAX: i64 = 1000;

/// Smallest batch cache that still holds a few batches per partition.
const CACHE_BYTES_MIN: usize = 1 << 20;
/// Segment files a shard keeps open however low the open-file limit or the
/// setting: with fewer, a partition's own reads and writes (a sealed
/// segment read while the active one is written) would close each other's.
pub const SEGMENT_FILES_PER_SHARD_MIN: usize = 8;

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

fn find(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|setting| setting.name == name)
}

fn boolean(value: &str) -> Result<bool, Refused> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Refused::Expected),
    }
}

/// An integer in `[min, max]`.
fn long(value: &str, min: i64, max: i64) -> Result<i64, Refused> {
    value
        .parse::<i64>()
        .ok()
        .filter(|number| (min..=max).contains(number))
        .ok_or(Refused::Expected)
}

fn resolve(value: &str) -> Option<SocketAddr> {
    value.to_socket_addrs().ok()?.next()
}

fn address(value: &str) -> Result<SocketAddr, Refused> {
    resolve(value).ok_or(Refused::Expected)
}

/// Kafka's `listeners` form: `NAME://host:port,...`, each name used once
/// (its protocol is resolved later, against
/// `listener_security_protocol_map`, which may come after it). The host
/// stays as written (an advertised name need not resolve here); an empty
/// host is Kafka's "every address".
fn parse_listener_entries(value: &str) -> Result<Vec<(String, String, u16)>, Refused> {
    let mut entries: Vec<(String, String, u16)> = Vec::new();
    for entry in value.split(',').map(str::trim) {
        let (name, at) = entry.split_once("://").ok_or(Refused::Expected)?;
        let name = listener_name(name)?;
        if entries.iter().any(|(seen, _, _)| *seen == name) {
            return Err(Refused::Because(format!(
                "listener {name} is named twice; each listener name is used once"
            )));
        }
        let (host, port) = at.rsplit_once(':').ok_or(Refused::Expected)?;
        let port = port.parse::<u16>().map_err(|_| Refused::Expected)?;
        let host = host.trim_matches(|c| c == '[' || c == ']');
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        entries.push((name, host.to_string(), port));
    }
    Ok(entries)
}

/// A listener name as Kafka spells them: letters, digits, `_` and `-`,
/// compared without case (Kafka upper-cases them).
fn listener_name(name: &str) -> Result<String, Refused> {
    let name = name.trim().to_ascii_uppercase();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Refused::Because(format!(
            "listener name '{name}' must be letters, digits, '_' or '-'"
        )));
    }
    Ok(name)
}

/// Kafka's `listener.security.protocol.map`: `NAME:PROTOCOL,...`.
fn parse_listener_protocol_map(value: &str) -> Result<Vec<(String, SecurityProtocol)>, Refused> {
    let mut map: Vec<(String, SecurityProtocol)> = Vec::new();
    for entry in value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
    {
        let (name, protocol) = entry.split_once(':').ok_or(Refused::Expected)?;
        let name = listener_name(name)?;
        let protocol =
            SecurityProtocol::parse(&protocol.trim().to_ascii_uppercase()).ok_or_else(|| {
                Refused::Because(format!(
                    "listener {name} is mapped to '{}', which is not a security protocol \
                     (PLAINTEXT, SASL_PLAINTEXT, SSL or SASL_SSL)",
                    protocol.trim()
                ))
            })?;
        if map.iter().any(|(seen, _)| *seen == name) {
            return Err(Refused::Because(format!(
                "listener {name} is mapped twice; map each listener once"
            )));
        }
        map.push((name, protocol));
    }
    Ok(map)
}

/// Turns the `listeners` entries into the first listener and the others:
/// each name's protocol from `listener_security_protocol_map` (or the name
/// itself when it is a protocol's), each address resolved, no port bound
/// twice, and the listener `inter_broker_listener_name` names first.
fn resolve_listeners(config: &mut BrokerConfig) -> Result<(), String> {
    let entries = std::mem::take(&mut config.listener_entries);
    if entries.is_empty() {
        // One listener, from listen and listener_security_protocol.
        if let Some(protocol) = config
            .listener_protocol_map
            .iter()
            .find(|(name, _)| name == config.security_protocol.name())
            .map(|(_, protocol)| *protocol)
            .filter(|protocol| *protocol != config.security_protocol)
        {
            return Err(format!(
                "listener_security_protocol_map maps {} to {}; name the listener in listeners \
                 instead",
                config.security_protocol.name(),
                protocol.name()
            ));
        }
        if let Some(wanted) = &config.inter_broker_listener_name {
            if wanted != config.first_listener_name() {
                return Err(format!(
                    "inter_broker_listener_name {wanted} is not a listener; the only listener is \
                     {}: set listeners",
                    config.first_listener_name()
                ));
            }
        }
        return Ok(());
    }
    let mut listeners: Vec<ExtraListener> = Vec::with_capacity(entries.len());
    for (name, host, port) in entries {
        let mapped = config
            .listener_protocol_map
            .iter()
            .find(|(mapped, _)| *mapped == name)
            .map(|(_, protocol)| *protocol);
        let Some(protocol) = mapped.or_else(|| SecurityProtocol::parse(&name)) else {
            return Err(format!(
                "listener {name} has no security protocol: add {name}:PROTOCOL to \
                 listener_security_protocol_map (PLAINTEXT, SASL_PLAINTEXT, SSL or SASL_SSL)"
            ));
        };
        let address = address(&format!("{host}:{port}"))
            .or_else(|_| address(&format!("[{host}]:{port}")))
            .map_err(|_| format!("listener {name}: cannot resolve {host}:{port}"))?;
        if port != 0
            && listeners
                .iter()
                .any(|listener| listener.address.port() == port)
        {
            return Err(format!(
                "listeners {name} and another both bind port {port}; give each its own port"
            ));
        }
        listeners.push(ExtraListener {
            name,
            address,
            protocol,
            advertised: None,
        });
    }
    if let Some(wanted) = &config.inter_broker_listener_name {
        let Some(at) = listeners
            .iter()
            .position(|listener| listener.name == *wanted)
        else {
            return Err(format!(
                "inter_broker_listener_name {wanted} is not one of the listeners; list it in \
                 listeners or drop it"
            ));
        };
        let chosen = listeners.remove(at);
        listeners.insert(0, chosen);
    }
    let first = listeners.remove(0);
    config.listen = first.address;
    config.security_protocol = first.protocol;
    config.listener_name = Some(first.name);
    config.extra_listeners = listeners;
    Ok(())
}

/// Applies one setting. The error is the whole one-line message.
pub fn apply(
    config: &mut BrokerConfig,
    name: &str,
    value: &str,
    source: &Source,
) -> Result<(), String> {
    let Some(setting) = find(name) else {
        return Err(format!(
            "unknown setting '{name}' (from {source}); known settings: {}",
            SETTINGS
                .iter()
                .map(|setting| setting.name)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    (setting.apply)(config, value).map_err(|refused| {
        let why = match refused {
            Refused::Expected => format!("expected {}", setting.expects),
            Refused::Because(reason) => reason,
        };
        format!("invalid value '{value}' for {name} (from {source}): {why}")
    })?;
    config.set_by_operator.insert(setting.name);
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
                    find(&name).map_or("a setting's name", |setting| setting.expects),
                    other.type_str()
                ))
            }
        };
        apply(config, &name, &text, &source)?;
    }
    Ok(())
}

/// Applies `SLUICE_<NAME>` variables for every known setting.
/// `variable` looks a variable up: the process environment, or a test's.
pub fn apply_environment(
    config: &mut BrokerConfig,
    variable: &dyn Fn(&str) -> Option<String>,
) -> Result<(), String> {
    for setting in SETTINGS {
        let name = setting.variable();
        if let Some(value) = variable(&name) {
            let variable = name;
            apply(config, setting.name, &value, &Source::Environment(variable))?;
        }
    }
    Ok(())
}

/// The id of the `--config FILE` argument.
const CONFIG_FILE: &str = "config";

/// The broker's command line: `--config FILE` and one flag per setting,
/// made from [`SETTINGS`] so that a setting's flag cannot drift from its
/// TOML key and environment variable. The values stay text until
/// [`BrokerArgs::resolve`] applies them over the file and the environment,
/// so a bad one is reported as the other sources' are.
#[derive(Debug, Default)]
pub struct BrokerArgs {
    file: Option<PathBuf>,
    /// Setting names and values, in command-line order (of two flags that
    /// set the data directory, the later wins).
    flags: Vec<(&'static Setting, String)>,
}

impl clap::FromArgMatches for BrokerArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut flags: Vec<(usize, &'static Setting, String)> = SETTINGS
            .iter()
            .filter_map(|setting| {
                // `try_`: a mismatch is a bug, but it must not panic on input.
                let value = matches.try_get_one::<String>(setting.name).ok()??;
                let index = matches.index_of(setting.name)?;
                Some((index, setting, value.clone()))
            })
            .collect();
        flags.sort_unstable_by_key(|(index, _, _)| *index);
        Ok(BrokerArgs {
            file: matches
                .try_get_one::<PathBuf>(CONFIG_FILE)
                .ok()
                .flatten()
                .cloned(),
            flags: flags
                .into_iter()
                .map(|(_, setting, value)| (setting, value))
                .collect(),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for BrokerArgs {
    fn augment_args(command: clap::Command) -> clap::Command {
        let file = clap::Arg::new(CONFIG_FILE)
            .long(CONFIG_FILE)
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .help("TOML file of settings, keys named as below with underscores (data_dir)")
            .overrides_with(CONFIG_FILE);
        let settings = SETTINGS.iter().map(|setting| {
            clap::Arg::new(setting.name)
                .long(setting.flag())
                .value_name("VALUE")
                // -1 is a value (retention_ms: unlimited), not a flag.
                .allow_hyphen_values(true)
                .help(format!("{} [env: {}]", setting.expects, setting.variable()))
                .help_heading("Settings")
                // A flag given twice takes its last value, as a setting repeated
                // in the environment and on the command line does.
                .overrides_with(setting.name)
        });
        command.arg(file).args(settings)
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

impl BrokerArgs {
    /// The configuration: the embedded defaults, then the file, then the
    /// environment, then the flags.
    pub fn resolve(self) -> Result<BrokerConfig, String> {
        self.resolve_with(&|name| std::env::var(name).ok())
    }

    /// [`BrokerArgs::resolve`] with `variable` as the environment.
    fn resolve_with(
        self,
        variable: &dyn Fn(&str) -> Option<String>,
    ) -> Result<BrokerConfig, String> {
        let mut config = BrokerConfig::default();
        if let Some(path) = &self.file {
            apply_file(&mut config, path)?;
        }
        apply_environment(&mut config, variable)?;
        for (setting, value) in &self.flags {
            let flag = Source::Flag(format!("--{}", setting.flag()));
            apply(&mut config, setting.name, value, &flag)?;
        }
        check(config)
    }
}

/// Checks the settings that depend on each other, and makes the data
/// directories absolute.
fn check(mut config: BrokerConfig) -> Result<BrokerConfig, String> {
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
    resolve_listeners(&mut config)?;
    check_security_settings(&mut config)?;
    place_advertised_listeners(&mut config)?;
    // DescribeConfigs names Kafka's settings: `listeners` covers `listen`,
    // and `listener.security.protocol.map` covers `listeners`' protocols.
    if config.set_by_operator.contains("listen") {
        config.set_by_operator.insert("listeners");
    }
    if config.set_by_operator.contains("listeners")
        || config
            .set_by_operator
            .contains("listener_security_protocol")
    {
        config
            .set_by_operator
            .insert("listener_security_protocol_map");
    }
    if config.set_by_operator.contains("listeners") {
        config.set_by_operator.insert("listener_security_protocol");
    }
    if config.set_by_operator.contains("advertised_listeners") {
        config.set_by_operator.insert("advertised_listener");
    }
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

/// Moves each `advertised_listeners` entry onto the listener of its name.
fn place_advertised_listeners(config: &mut BrokerConfig) -> Result<(), String> {
    for (name, host, port) in std::mem::take(&mut config.advertised_listeners) {
        if port == 0 {
            return Err(format!(
                "advertised_listeners gives {name} port 0; name the port clients connect to"
            ));
        }
        if name == config.first_listener_name() {
            if config.set_by_operator.contains("advertised_listener") {
                return Err(
                    "both advertised_listeners and advertised_listener are set; drop \
                     advertised_listener"
                        .to_string(),
                );
            }
            config.advertised_host = Some(host);
            config.advertised_port = Some(port);
            continue;
        }
        let Some(listener) = config
            .extra_listeners
            .iter_mut()
            .find(|listener| listener.name == name)
        else {
            return Err(format!(
                "advertised_listeners names {name}, which is not one of the listeners; list it \
                 in listeners or drop it"
            ));
        };
        listener.advertised = Some((host, port));
    }
    Ok(())
}

/// Brokers of a cluster reach each other (replica fetches, transaction
/// markers) through the client listener, so on a cluster it is one
/// listener, and a broker speaks its protocol to the others: TLS needs a
/// truststore to check their certificates, SASL a login of its own.
fn check_security_settings(config: &mut BrokerConfig) -> Result<(), String> {
    if config
        .sasl
        .enabled_mechanisms
        .contains(&Mechanism::OAuthBearer)
        && !config.sasl.oauthbearer_unsecured_jwt
    {
        return Err(
            "OAUTHBEARER in sasl_enabled_mechanisms accepts tokens without checking who signed \
             them (Kafka's unsecured validator); set sasl_oauthbearer_unsecured_jwt = true to \
             accept that, or drop OAUTHBEARER"
                .to_string(),
        );
    }
    let replaced = ["listen", "listener_security_protocol"]
        .into_iter()
        .find(|name| config.set_by_operator.contains(name));
    if let Some(replaced) = replaced.filter(|_| config.set_by_operator.contains("listeners")) {
        return Err(format!(
            "both listeners and {replaced} are set; the first entry of listeners is the first \
             listener: drop {replaced}"
        ));
    }
    if config.controller_security_protocol.is_tls() {
        let settings = &config.tls_settings;
        if settings.keystore_location.is_none() || settings.truststore_location.is_none() {
            return Err(
                "controller_security_protocol SSL needs ssl_keystore_location and \
                 ssl_truststore_location: every node shows its certificate on the controller \
                 port and checks the other's against that CA"
                    .to_string(),
            );
        }
    }
    let protocol = config.security_protocol;
    if config.is_single_node() {
        return Ok(());
    }
    if protocol.is_tls() && config.tls_settings.truststore_location.is_none() {
        return Err(format!(
            "listener_security_protocol {} on a broker of a cluster needs \
             ssl_truststore_location: brokers connect to each other through it and check each \
             other's certificates against that CA",
            protocol.name()
        ));
    }
    if !protocol.is_sasl() {
        return Ok(());
    }
    let sasl = &config.inter_broker_sasl;
    let (Some(username), Some(password_file)) = (&sasl.username, &sasl.password_file) else {
        return Err(format!(
            "listener_security_protocol {} on a broker of a cluster needs \
             inter_broker_sasl_username and inter_broker_sasl_password_file: brokers log in to \
             each other through it",
            protocol.name()
        ));
    };
    if !config.sasl.enabled_mechanisms.contains(&sasl.mechanism) {
        return Err(format!(
            "inter_broker_sasl_mechanism {} is not in sasl_enabled_mechanisms",
            sasl.mechanism
        ));
    }
    let password = crate::user::read_password(Some(password_file))
        .map_err(|reason| format!("inter_broker_sasl_password_file: {reason}"))?;
    config.inter_broker_sasl.credentials = Some(SaslCredentials::new(
        sasl.mechanism,
        username.clone(),
        password,
    ));
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
    use clap::Parser;

    /// The broker's configuration from a command line, as `sluice` builds it.
    /// A command line's words as owned strings.
    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| arg.to_string()).collect()
    }

    /// The flags of node 1 of a two-voter quorum.
    const NODE_1_OF_2: [&str; 6] = [
        "--node-id",
        "1",
        "--controller-listen",
        "127.0.0.1:9093",
        "--controller-voters",
        "1@127.0.0.1:9093,2@127.0.0.1:9193",
    ];

    /// The refusal of `flag value` on node 1 of a two-voter quorum.
    fn in_a_cluster_of_two(flag: &str, value: &str) -> String {
        let mut all = vec![flag, value];
        all.extend(NODE_1_OF_2);
        from_args(&args(&all)).unwrap_err()
    }

    fn from_args(args: &[String]) -> Result<BrokerConfig, String> {
        let line = std::iter::once("sluice".to_string()).chain(args.iter().cloned());
        let cli = crate::cli::Cli::try_parse_from(line).map_err(|error| error.to_string())?;
        cli.broker.resolve()
    }

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
        assert!(
            error.contains("unexpected argument '--nonsense'"),
            "{error}"
        );
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
    fn flags_beat_the_environment_which_beats_the_file() {
        let dir = std::env::temp_dir().join(format!("sluice-precedence-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sluice.toml");
        std::fs::write(&path, "rack = \"from-file\"\n").unwrap();
        let file = format!("--config={}", path.display());
        let resolve = |args: &[&str], environment: Option<&str>| {
            let line = ["sluice"].iter().chain(args).copied();
            let cli = crate::cli::Cli::try_parse_from(line).unwrap();
            let variable = |name: &str| match (name, environment) {
                ("SLUICE_RACK", Some(value)) => Some(value.to_string()),
                _ => None,
            };
            cli.broker.resolve_with(&variable).unwrap().cluster.rack
        };
        assert_eq!(resolve(&[&file], None).as_deref(), Some("from-file"));
        assert_eq!(
            resolve(&[&file], Some("from-env")).as_deref(),
            Some("from-env")
        );
        assert_eq!(
            resolve(&[&file, "--rack", "from-flag"], Some("from-env")).as_deref(),
            Some("from-flag")
        );
        assert_eq!(
            resolve(&["--rack", "first", "--rack", "last"], None).as_deref(),
            Some("last")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_value_is_one_line_naming_setting_source_and_expectation() {
        let error = from_args(&["--shards".to_string(), "zero".to_string()]).unwrap_err();
        assert_eq!(
            error,
            "invalid value 'zero' for shards (from flag --shards): expected a number of shards \
             between 1 and 256"
        );
        let mut config = BrokerConfig::default();
        let variable = |name: &str| (name == "SLUICE_SEGMENT_MS").then(|| "0".to_string());
        let error = apply_environment(&mut config, &variable).unwrap_err();
        assert_eq!(error.lines().count(), 1, "{error}");
        assert!(
            error.contains("segment_ms")
                && error.contains("environment variable SLUICE_SEGMENT_MS")
                && error.contains("expected milliseconds, at least 1"),
            "{error}"
        );
    }

    #[test]
    fn the_admin_port_is_off_unless_set() {
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
        assert_eq!(from_args(&[]).unwrap().spin_before_park_us, 0);
        let config = from_args(&args(&["--spin-before-park-us", "150"])).unwrap();
        assert_eq!(config.spin_before_park_us, 150);
        let error = from_args(&args(&["--spin-before-park-us", "10001"])).unwrap_err();
        assert!(error.contains("spin_before_park_us"), "{error}");
    }

    #[test]
    fn quorum_settings_are_parsed_and_checked() {
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
        let config = from_args(&args(&[
            "--listener-security-protocol",
            "SASL_SSL",
            "--ssl-keystore-location",
            "/etc/sluice/keystore.pem",
            "--ssl-client-auth",
            "requested",
            "--ssl-enabled-protocols",
            "TLSv1.3, TLSv1.3",
        ]))
        .unwrap();
        assert_eq!(config.security_protocol, SecurityProtocol::SaslSsl);
        assert_eq!(
            config.tls_settings.keystore_location,
            Some(PathBuf::from("/etc/sluice/keystore.pem"))
        );
        assert_eq!(config.tls_settings.client_auth, ClientAuth::Requested);
        assert_eq!(
            config.tls_settings.enabled_protocols,
            vec![TlsProtocol::Tls13]
        );
        for (flag, value) in [
            ("--ssl-client-auth", "always"),
            ("--ssl-enabled-protocols", "TLSv1.1"),
            ("--ssl-enabled-protocols", ","),
            ("--ssl-keystore-location", ""),
            ("--ssl-principal-mapping-rules", "RULE:^CN=(.*)$"),
        ] {
            let error = from_args(&args(&[flag, value])).unwrap_err();
            assert!(error.contains(&flag[2..].replace('-', "_")), "{error}");
            assert_eq!(error.lines().count(), 1, "{error}");
        }
        let error = from_args(&args(&["--listener-security-protocol", "sasl"])).unwrap_err();
        assert!(error.contains("listener_security_protocol"), "{error}");
        let error = from_args(&args(&["--sasl-enabled-mechanisms", "GSSAPI"])).unwrap_err();
        assert!(error.contains("GSSAPI"), "{error}");
        let error = from_args(&args(&["--super-users", "admin"])).unwrap_err();
        assert!(error.contains("super_users"), "{error}");
        let error = in_a_cluster_of_two("--listener-security-protocol", "SASL_PLAINTEXT");
        assert!(error.contains("inter_broker_sasl_username"), "{error}");
        let error = in_a_cluster_of_two("--listener-security-protocol", "SSL");
        assert!(error.contains("ssl_truststore_location"), "{error}");
        // The controller port speaks PLAINTEXT or SSL, and SSL needs both
        // files: the node shows a certificate and checks the other end's.
        let error = in_a_cluster_of_two("--controller-security-protocol", "SASL_SSL");
        assert!(error.contains("controller_security_protocol"), "{error}");
        let error = in_a_cluster_of_two("--controller-security-protocol", "SSL");
        assert!(
            error.contains("ssl_keystore_location") && error.contains("ssl_truststore_location"),
            "{error}"
        );
    }

    #[test]
    fn oauthbearer_needs_its_unsecured_flag_and_is_no_brokers_login() {
        let mechanisms = ["--sasl-enabled-mechanisms", "SCRAM-SHA-512,OAUTHBEARER"];
        let error = from_args(&args(&mechanisms)).unwrap_err();
        assert!(error.contains("sasl_oauthbearer_unsecured_jwt"), "{error}");
        assert_eq!(error.lines().count(), 1, "{error}");
        let mut flagged = mechanisms.to_vec();
        flagged.extend(["--sasl-oauthbearer-unsecured-jwt", "true"]);
        let config = from_args(&args(&flagged)).expect("OAUTHBEARER with its flag");
        assert!(config
            .sasl
            .enabled_mechanisms
            .contains(&Mechanism::OAuthBearer));
        let error =
            from_args(&args(&["--inter-broker-sasl-mechanism", "OAUTHBEARER"])).unwrap_err();
        assert!(error.contains("inter_broker_sasl_mechanism"), "{error}");
    }

    #[test]
    fn a_sasl_cluster_reads_the_brokers_login() {
        let dir = std::env::temp_dir().join(format!("sluice-peer-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let password = dir.join("password");
        std::fs::write(&password, "s3cret\nignored\n").unwrap();
        let mut cluster = NODE_1_OF_2.to_vec();
        cluster.extend([
            "--listener-security-protocol",
            "SASL_PLAINTEXT",
            "--inter-broker-sasl-username",
            "broker",
        ]);
        let password_arg = password.to_str().unwrap();
        let mut all: Vec<&str> = cluster.clone();
        all.extend(["--inter-broker-sasl-password-file", password_arg]);
        let config = from_args(&args(&all)).unwrap();
        let login = config.inter_broker_sasl.credentials.unwrap();
        assert_eq!(
            (login.mechanism, login.user.as_str(), login.password()),
            (Mechanism::ScramSha512, "broker", "s3cret")
        );
        // A mechanism the listener does not offer, and a missing file.
        all.extend(["--inter-broker-sasl-mechanism", "PLAIN"]);
        all.extend(["--sasl-enabled-mechanisms", "SCRAM-SHA-512"]);
        let error = from_args(&args(&all)).unwrap_err();
        assert!(error.contains("not in sasl_enabled_mechanisms"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
        let mut missing: Vec<&str> = cluster;
        missing.extend(["--inter-broker-sasl-password-file", password_arg]);
        let error = from_args(&args(&missing)).unwrap_err();
        assert!(error.contains("inter_broker_sasl_password_file"), "{error}");
    }

    #[test]
    fn listeners_take_kafkas_form_and_refuse_what_cannot_work() {
        let config = from_args(&args(&[
            "--listeners",
            "PLAINTEXT://127.0.0.1:9092, sasl_ssl://:9093",
        ]))
        .unwrap();
        assert_eq!(
            config.listen,
            "127.0.0.1:9092".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(config.security_protocol, SecurityProtocol::Plaintext);
        assert_eq!(
            config.extra_listeners,
            vec![ExtraListener {
                name: "SASL_SSL".to_string(),
                address: "0.0.0.0:9093".parse().unwrap(),
                protocol: SecurityProtocol::SaslSsl,
                advertised: None,
            }]
        );
        assert!(config
            .set_by_operator
            .contains("listener_security_protocol"));
        let one = from_args(&args(&["--listeners", "SASL_PLAINTEXT://127.0.0.1:0"])).unwrap();
        assert_eq!(one.security_protocol, SecurityProtocol::SaslPlaintext);
        assert!(one.extra_listeners.is_empty());
        for (value, says) in [
            ("INTERNAL://127.0.0.1:9092", "INTERNAL"),
            (
                "PLAINTEXT://127.0.0.1:9092,PLAINTEXT://127.0.0.1:9093",
                "named twice",
            ),
            (
                "PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9092",
                "port 9092",
            ),
            ("127.0.0.1:9092", "listeners"),
            ("", "listeners"),
        ] {
            let error = from_args(&args(&["--listeners", value])).unwrap_err();
            assert!(error.contains(says), "{value}: {error}");
            assert_eq!(error.lines().count(), 1, "{error}");
        }
        let error = from_args(&args(&[
            "--listeners",
            "PLAINTEXT://127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
        ]))
        .unwrap_err();
        assert!(error.contains("drop listen"), "{error}");
        // A broker of a cluster may have more listeners than the first,
        // which the brokers reach each other through.
        let mut cluster = vec![
            "--listeners",
            "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
        ];
        cluster.extend(NODE_1_OF_2);
        let config = from_args(&args(&cluster)).expect("two listeners in a cluster");
        assert_eq!(config.security_protocol, SecurityProtocol::Plaintext);
        assert_eq!(config.extra_listeners.len(), 1);
    }

    #[test]
    fn listeners_named_through_the_protocol_map() {
        let config = from_args(&args(&[
            "--listeners",
            "external://127.0.0.1:9092,INTERNAL://127.0.0.1:9093,SSL://127.0.0.1:9094",
            "--listener-security-protocol-map",
            "INTERNAL:PLAINTEXT, External:sasl_ssl",
            "--advertised-listeners",
            "EXTERNAL://kafka.example.com:19092",
        ]))
        .unwrap();
        assert_eq!(config.first_listener_name(), "EXTERNAL");
        assert_eq!(config.security_protocol, SecurityProtocol::SaslSsl);
        assert_eq!(config.advertised_host.as_deref(), Some("kafka.example.com"));
        let names: Vec<(&str, SecurityProtocol)> = config.listener_names().collect();
        assert_eq!(
            names,
            vec![
                ("EXTERNAL", SecurityProtocol::SaslSsl),
                ("INTERNAL", SecurityProtocol::Plaintext),
                ("SSL", SecurityProtocol::Ssl),
            ]
        );
        // Two listeners of one protocol, the second the brokers' own.
        let mut cluster = vec![
            "--listeners",
            "CLIENTS://127.0.0.1:0,REPLICATION://127.0.0.1:0",
            "--listener-security-protocol-map",
            "CLIENTS:PLAINTEXT,REPLICATION:PLAINTEXT",
            "--inter-broker-listener-name",
            "replication",
        ];
        cluster.extend(NODE_1_OF_2);
        let config = from_args(&args(&cluster)).expect("named listeners in a cluster");
        assert_eq!(config.first_listener_name(), "REPLICATION");
        assert_eq!(config.extra_listeners[0].name, "CLIENTS");
        for (arguments, says) in [
            (
                vec!["--listeners", "INTERNAL://127.0.0.1:9092"],
                "add INTERNAL:PROTOCOL",
            ),
            (
                vec![
                    "--listeners",
                    "A://127.0.0.1:9092",
                    "--listener-security-protocol-map",
                    "A:TLS",
                ],
                "not a security protocol",
            ),
            (
                vec![
                    "--listeners",
                    "A://127.0.0.1:9092",
                    "--listener-security-protocol-map",
                    "A:SSL,a:PLAINTEXT",
                ],
                "mapped twice",
            ),
            (
                vec![
                    "--listeners",
                    "A://127.0.0.1:9092",
                    "--listener-security-protocol-map",
                    "A:SSL",
                    "--inter-broker-listener-name",
                    "B",
                ],
                "inter_broker_listener_name B",
            ),
            (
                vec!["--inter-broker-listener-name", "INTERNAL"],
                "the only listener is PLAINTEXT",
            ),
            (
                vec!["--listeners", "A B://127.0.0.1:9092"],
                "letters, digits",
            ),
        ] {
            let error = from_args(&args(&arguments)).unwrap_err();
            assert!(error.contains(says), "{arguments:?}: {error}");
            assert_eq!(error.lines().count(), 1, "{error}");
        }
    }

    #[test]
    fn advertised_listeners_go_to_their_listeners() {
        let listeners = "PLAINTEXT://127.0.0.1:9092,SASL_SSL://:9093";
        let config = from_args(&args(&[
            "--listeners",
            listeners,
            "--advertised-listeners",
            "SASL_SSL://b.example.com:19093,PLAINTEXT://a.example.com:9092",
        ]))
        .unwrap();
        assert_eq!(config.advertised_host.as_deref(), Some("a.example.com"));
        assert_eq!(config.advertised_port, Some(9092));
        let extra = &config.extra_listeners[0];
        let bound = "0.0.0.0:9093".parse::<SocketAddr>().unwrap();
        assert_eq!(
            config.advertised_of(extra, bound),
            ("b.example.com".to_string(), 19093)
        );
        // Without an entry: its own port, on the first listener's host
        // when it binds every address.
        let config = from_args(&args(&[
            "--listeners",
            listeners,
            "--advertised-listener",
            "a.example.com:9092",
        ]))
        .unwrap();
        let extra = &config.extra_listeners[0];
        assert_eq!(
            config.advertised_of(extra, bound),
            ("a.example.com".to_string(), 9093)
        );
        for (advertised, says) in [
            ("SSL://c.example.com:9094", "not one of the listeners"),
            ("SASL_SSL://b.example.com:0", "port 0"),
            ("SASL_SSL://b.example.com", "advertised_listeners"),
        ] {
            let error = from_args(&args(&[
                "--listeners",
                listeners,
                "--advertised-listeners",
                advertised,
            ]))
            .unwrap_err();
            assert!(error.contains(says), "{advertised}: {error}");
            assert_eq!(error.lines().count(), 1, "{error}");
        }
        let error = from_args(&args(&[
            "--listeners",
            listeners,
            "--advertised-listeners",
            "PLAINTEXT://a.example.com:9092",
            "--advertised-listener",
            "a.example.com:9092",
        ]))
        .unwrap_err();
        assert!(error.contains("drop advertised_listener"), "{error}");
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
