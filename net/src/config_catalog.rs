//! What DescribeConfigs says of each config, as Kafka says it: its type,
//! its documentation, where its value came from, and the broker settings a
//! topic config falls back to (its synonyms).
//!
//! Every broker setting here is static: Sluice reads its settings once, at
//! start, and has no dynamic broker configs yet, so each is read-only and
//! its source is STATIC_BROKER_CONFIG when the operator set it, else
//! DEFAULT_CONFIG. No setting is a secret today (SASL credentials are not
//! settings but a file, and there is no TLS), so none is sensitive; a
//! secret's value would never be returned.

use crate::config::BrokerConfig;
use crate::constants::REQUEST_BYTES_MAX;

/// Kafka's ConfigType (DescribeConfigs v3+).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
}

/// Kafka's ConfigSource values Sluice reports.
pub mod source {
    pub const TOPIC: i8 = 1;
    pub const STATIC_BROKER: i8 = 4;
    pub const DEFAULT: i8 = 5;
}

/// One broker config: Kafka's name, the Sluice setting (`--flag` or config
/// file key) that sets it, its type and documentation, and how to read its
/// value (None: not set and no default, reported as null).
pub struct BrokerSetting {
    pub name: &'static str,
    pub setting: &'static str,
    pub kind: ConfigType,
    pub doc: &'static str,
    pub value: fn(&BrokerConfig) -> Option<String>,
}

/// A listener as Kafka writes it: `NAME://host:port`.
fn listener(name: &str, host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("{name}://[{host}]:{port}")
    } else {
        format!("{name}://{host}:{port}")
    }
}

/// The broker configs, sorted by name as Kafka lists them.
pub const BROKER_SETTINGS: &[BrokerSetting] = &[
    BrokerSetting {
        name: "advertised.listeners",
        setting: "advertised_listener",
        kind: ConfigType::String,
        doc: "The listeners clients are told to connect to, when they differ from the ones the broker binds.",
        value: |config| {
            let host = config.advertised_host();
            let port = config.advertised_port.unwrap_or(config.listen.port());
            let extra = config.extra_listeners.iter().map(|extra| {
                let (at, port) = config.advertised_of(extra, extra.address);
                listener(&extra.name, &at, port)
            });
            let all: Vec<String> =
                std::iter::once(listener(config.first_listener_name(), &host, port))
                .chain(extra)
                .collect();
            Some(all.join(","))
        },
    },
    BrokerSetting {
        name: "auto.create.topics.enable",
        setting: "auto_create_topics",
        kind: ConfigType::Boolean,
        doc: "Create a topic when a client asks for its metadata or produces to it and it does not exist.",
        value: |config| Some(config.auto_create_topics.to_string()),
    },
    BrokerSetting {
        name: "broker.id",
        setting: "node_id",
        kind: ConfigType::Int,
        doc: "This broker's id; the same as node.id.",
        value: |config| Some(config.node_id.to_string()),
    },
    BrokerSetting {
        name: "broker.rack",
        setting: "rack",
        kind: ConfigType::String,
        doc: "The rack of this broker, used to spread a partition's replicas over racks.",
        value: |config| config.cluster.rack.clone(),
    },
    BrokerSetting {
        name: "broker.session.timeout.ms",
        setting: "broker_session_timeout_ms",
        kind: ConfigType::Int,
        doc: "How long the controller waits to hear from a broker before fencing it.",
        value: |config| Some(config.cluster.broker_session_timeout_ms.to_string()),
    },
    BrokerSetting {
        name: "connections.max.idle.ms",
        setting: "connections_max_idle_ms",
        kind: ConfigType::Long,
        doc: "A connection idle for this long is closed.",
        value: |config| Some(config.connections_max_idle_ms.to_string()),
    },
    BrokerSetting {
        name: "connections.max.reauth.ms",
        setting: "connections_max_reauth_ms",
        kind: ConfigType::Long,
        doc: "How long an authenticated SASL session lasts before the client must authenticate again; 0 is for ever.",
        value: |config| Some(config.sasl.reauth_ms.to_string()),
    },
    BrokerSetting {
        name: "controller.quorum.voters",
        setting: "controller_voters",
        kind: ConfigType::List,
        doc: "The voters of the metadata quorum, as id@host:port.",
        value: |config| {
            Some(
                config
                    .cluster
                    .voters
                    .iter()
                    .map(|(id, address)| format!("{id}@{address}"))
                    .collect::<Vec<_>>()
                    .join(","),
            )
        },
    },
    BrokerSetting {
        name: "default.replication.factor",
        setting: "default_replication_factor",
        kind: ConfigType::Int,
        doc: "The replication factor of a topic created without one.",
        value: |config| Some(config.default_replication_factor.to_string()),
    },
    BrokerSetting {
        name: "delete.topic.enable",
        setting: "delete_topic_enable",
        kind: ConfigType::Boolean,
        doc: "Whether topics may be deleted.",
        value: |config| Some(config.delete_topic_enable.to_string()),
    },
    BrokerSetting {
        name: "group.consumer.assignors",
        setting: "group_consumer_assignors",
        kind: ConfigType::List,
        doc: "The server-side assignors of consumer groups (KIP-848), the first being the default.",
        value: |config| Some(config.groups.consumer_assignors.join(",")),
    },
    BrokerSetting {
        name: "group.consumer.heartbeat.interval.ms",
        setting: "group_consumer_heartbeat_interval_ms",
        kind: ConfigType::Int,
        doc: "How often a member of a consumer group (KIP-848) heartbeats.",
        value: |config| Some(config.groups.consumer_heartbeat_interval_ms.to_string()),
    },
    BrokerSetting {
        name: "group.consumer.max.size",
        setting: "group_consumer_max_size",
        kind: ConfigType::Int,
        doc: "The most members a consumer group (KIP-848) may have.",
        value: |config| Some(config.groups.consumer_max_size.to_string()),
    },
    BrokerSetting {
        name: "group.consumer.session.timeout.ms",
        setting: "group_consumer_session_timeout_ms",
        kind: ConfigType::Int,
        doc: "A member of a consumer group (KIP-848) not heard from for this long is removed.",
        value: |config| Some(config.groups.consumer_session_timeout_ms.to_string()),
    },
    BrokerSetting {
        name: "group.initial.rebalance.delay.ms",
        setting: "group_initial_rebalance_delay_ms",
        kind: ConfigType::Int,
        doc: "How long a new classic group waits for more members before its first rebalance.",
        value: |config| Some(config.groups.initial_rebalance_delay_ms.to_string()),
    },
    BrokerSetting {
        name: "group.max.session.timeout.ms",
        setting: "group_max_session_timeout_ms",
        kind: ConfigType::Int,
        doc: "The longest session timeout a classic group member may ask for.",
        value: |config| Some(config.groups.max_session_timeout_ms.to_string()),
    },
    BrokerSetting {
        name: "group.max.size",
        setting: "group_max_size",
        kind: ConfigType::Int,
        doc: "The most members a classic group may have.",
        value: |config| Some(config.groups.max_size.to_string()),
    },
    BrokerSetting {
        name: "group.min.session.timeout.ms",
        setting: "group_min_session_timeout_ms",
        kind: ConfigType::Int,
        doc: "The shortest session timeout a classic group member may ask for.",
        value: |config| Some(config.groups.min_session_timeout_ms.to_string()),
    },
    BrokerSetting {
        name: "inter.broker.listener.name",
        setting: "inter_broker_listener_name",
        kind: ConfigType::String,
        doc: "The listener the brokers of a cluster reach each other through: the first of listeners unless named.",
        value: |config| Some(config.first_listener_name().to_string()),
    },
    BrokerSetting {
        name: "listener.security.protocol.map",
        setting: "listener_security_protocol_map",
        kind: ConfigType::String,
        doc: "The security protocol of each listener, as LISTENER:PROTOCOL.",
        value: |config| {
            let all: Vec<String> = config
                .listener_names()
                .map(|(name, protocol)| format!("{name}:{}", protocol.name()))
                .collect();
            Some(all.join(","))
        },
    },
    BrokerSetting {
        name: "listeners",
        setting: "listeners",
        kind: ConfigType::String,
        doc: "The addresses the broker binds for clients, each with its security protocol.",
        value: |config| {
            let all: Vec<String> = std::iter::once(listener(
                config.first_listener_name(),
                &config.listen.ip().to_string(),
                config.listen.port(),
            ))
            .chain(config.extra_listeners.iter().map(|extra| {
                listener(
                    &extra.name,
                    &extra.address.ip().to_string(),
                    extra.address.port(),
                )
            }))
            .collect();
            Some(all.join(","))
        },
    },
    BrokerSetting {
        name: "log.cleaner.backoff.ms",
        setting: "log_cleaner_backoff_ms",
        kind: ConfigType::Long,
        doc: "How long a shard's cleaner sleeps when no compacted log is dirty enough.",
        value: |config| Some(config.cleaner.backoff_ms.to_string()),
    },
    BrokerSetting {
        name: "log.cleaner.dedupe.buffer.size",
        setting: "log_cleaner_dedupe_buffer_bytes",
        kind: ConfigType::Long,
        doc: "Memory for the key map of one shard's cleaner; a pass cleans as much of the log as its keys fit in.",
        value: |config| Some(config.cleaner.dedupe_buffer_bytes.to_string()),
    },
    BrokerSetting {
        name: "log.cleaner.enable",
        setting: "log_cleaner_enable",
        kind: ConfigType::Boolean,
        doc: "Whether topics with cleanup.policy=compact are compacted.",
        value: |config| Some(config.cleaner.enable.to_string()),
    },
    BrokerSetting {
        name: "log.cleaner.io.max.bytes.per.second",
        setting: "log_cleaner_io_max_bytes_per_second",
        kind: ConfigType::Double,
        doc: "Bytes per second one shard's cleaner reads and writes at most; 0 is no limit.",
        value: |config| Some(config.cleaner.io_max_bytes_per_second.to_string()),
    },
    BrokerSetting {
        name: "log.dirs",
        setting: "data_dir",
        kind: ConfigType::String,
        doc: "The directories the broker keeps its partitions in; the first also holds its metadata.",
        value: |config| {
            let dirs: Vec<String> = config
                .log_dirs()
                .iter()
                .map(|dir| dir.display().to_string())
                .collect();
            Some(dirs.join(","))
        },
    },
    BrokerSetting {
        name: "log.retention.bytes",
        setting: "retention_bytes",
        kind: ConfigType::Long,
        doc: "The size a partition is trimmed to by deleting its oldest segments; -1 keeps all.",
        value: |config| Some(config.log.retention_bytes.to_string()),
    },
    BrokerSetting {
        name: "log.retention.check.interval.ms",
        setting: "retention_check_interval_ms",
        kind: ConfigType::Long,
        doc: "How often retention looks for segments to delete.",
        value: |config| Some(config.retention_check_interval_ms.to_string()),
    },
    BrokerSetting {
        name: "log.retention.ms",
        setting: "retention_ms",
        kind: ConfigType::Long,
        doc: "How long a segment is kept after its newest record; -1 keeps it for ever.",
        value: |config| Some(config.log.retention_ms.to_string()),
    },
    BrokerSetting {
        name: "log.roll.ms",
        setting: "segment_ms",
        kind: ConfigType::Long,
        doc: "A segment older than this is closed and a new one started.",
        value: |config| Some(config.log.segment_ms.to_string()),
    },
    BrokerSetting {
        name: "log.segment.bytes",
        setting: "segment_bytes",
        kind: ConfigType::Int,
        doc: "The size at which a segment is closed and a new one started.",
        value: |config| Some(config.log.segment_bytes.to_string()),
    },
    BrokerSetting {
        name: "max.connections",
        setting: "max_connections",
        kind: ConfigType::Int,
        doc: "The most client connections the broker keeps open at once.",
        value: |config| Some(config.max_connections.to_string()),
    },
    BrokerSetting {
        name: "max.connections.per.ip",
        setting: "max_connections_per_ip",
        kind: ConfigType::Int,
        doc: "The most client connections from one address.",
        value: |config| Some(config.max_connections_per_ip.to_string()),
    },
    BrokerSetting {
        name: "message.max.bytes",
        setting: "message_max_bytes",
        kind: ConfigType::Int,
        doc: "The largest record batch a partition accepts.",
        value: |config| Some(config.log.max_message_bytes.to_string()),
    },
    BrokerSetting {
        name: "min.insync.replicas",
        setting: "min_insync_replicas",
        kind: ConfigType::Int,
        doc: "The fewest in-sync replicas with which an acks=all write is accepted.",
        value: |config| Some(config.cluster.min_insync_replicas.to_string()),
    },
    BrokerSetting {
        name: "node.id",
        setting: "node_id",
        kind: ConfigType::Int,
        doc: "This node's id in the cluster.",
        value: |config| Some(config.node_id.to_string()),
    },
    BrokerSetting {
        name: "num.partitions",
        setting: "num_partitions",
        kind: ConfigType::Int,
        doc: "The partitions of a topic created without a number of them.",
        value: |config| Some(config.default_partitions.to_string()),
    },
    BrokerSetting {
        name: "offsets.retention.check.interval.ms",
        setting: "offsets_retention_check_interval_ms",
        kind: ConfigType::Long,
        doc: "How often expired committed offsets are looked for.",
        value: |config| Some(config.groups.offsets_retention_check_interval_ms.to_string()),
    },
    BrokerSetting {
        name: "offsets.retention.minutes",
        setting: "offsets_retention_minutes",
        kind: ConfigType::Int,
        doc: "How long an empty group's committed offsets are kept.",
        value: |config| Some((config.groups.offsets_retention_ms / 60_000).to_string()),
    },
    BrokerSetting {
        name: "offsets.topic.num.partitions",
        setting: "offsets_topic_num_partitions",
        kind: ConfigType::Int,
        doc: "The partitions of __consumer_offsets.",
        value: |config| Some(config.groups.offsets_topic_partitions.to_string()),
    },
    BrokerSetting {
        name: "offsets.topic.replication.factor",
        setting: "offsets_topic_replication_factor",
        kind: ConfigType::Short,
        doc: "The replication factor of __consumer_offsets.",
        value: |config| Some(config.groups.offsets_topic_replication_factor.to_string()),
    },
    BrokerSetting {
        name: "replica.lag.time.max.ms",
        setting: "replica_lag_time_max_ms",
        kind: ConfigType::Long,
        doc: "A follower that has not caught up with its leader for this long leaves the ISR.",
        value: |config| Some(config.cluster.replica_lag_time_max_ms.to_string()),
    },
    BrokerSetting {
        name: "sasl.enabled.mechanisms",
        setting: "sasl_enabled_mechanisms",
        kind: ConfigType::List,
        doc: "The SASL mechanisms a SASL listener offers.",
        value: |config| {
            let names: Vec<&str> = config
                .sasl
                .enabled_mechanisms
                .iter()
                .map(|mechanism| mechanism.name())
                .collect();
            Some(names.join(","))
        },
    },
    BrokerSetting {
        name: "socket.request.max.bytes",
        setting: "",
        kind: ConfigType::Int,
        doc: "The largest request the broker reads; fixed in Sluice.",
        value: |_| Some(REQUEST_BYTES_MAX.to_string()),
    },
    BrokerSetting {
        name: "ssl.client.auth",
        setting: "ssl_client_auth",
        kind: ConfigType::String,
        doc: "Whether TLS clients are asked for a certificate: none, requested or required.",
        value: |config| Some(config.tls_settings.client_auth.name().to_string()),
    },
    BrokerSetting {
        name: "ssl.enabled.protocols",
        setting: "ssl_enabled_protocols",
        kind: ConfigType::List,
        doc: "The TLS versions the listener accepts.",
        value: |config| {
            let names: Vec<&str> = config
                .tls_settings
                .enabled_protocols
                .iter()
                .map(|protocol| protocol.name())
                .collect();
            Some(names.join(","))
        },
    },
    BrokerSetting {
        name: "ssl.keystore.location",
        setting: "ssl_keystore_location",
        kind: ConfigType::String,
        doc: "The PEM file with the listener's private key and certificate chain.",
        value: |config| {
            config
                .tls_settings
                .keystore_location
                .as_ref()
                .map(|path| path.display().to_string())
        },
    },
    BrokerSetting {
        name: "ssl.keystore.type",
        setting: "ssl_keystore_location",
        kind: ConfigType::String,
        doc: "The keystore's format: PEM, the only one read.",
        value: |_| Some("PEM".to_string()),
    },
    BrokerSetting {
        name: "ssl.principal.mapping.rules",
        setting: "ssl_principal_mapping_rules",
        kind: ConfigType::String,
        doc: "How a client certificate's subject becomes its principal name.",
        value: |config| Some(config.tls_settings.principal_rules.text().to_string()),
    },
    BrokerSetting {
        name: "ssl.truststore.location",
        setting: "ssl_truststore_location",
        kind: ConfigType::String,
        doc: "The PEM file with the CAs client certificates must chain to.",
        value: |config| {
            config
                .tls_settings
                .truststore_location
                .as_ref()
                .map(|path| path.display().to_string())
        },
    },
    BrokerSetting {
        name: "ssl.truststore.type",
        setting: "ssl_truststore_location",
        kind: ConfigType::String,
        doc: "The truststore's format: PEM, the only one read.",
        value: |_| Some("PEM".to_string()),
    },
    BrokerSetting {
        name: "super.users",
        setting: "super_users",
        kind: ConfigType::List,
        doc: "Principals that will bypass authorization checks; Sluice has no authorization yet.",
        value: |config| {
            let principals: Vec<String> = config
                .sasl
                .super_users
                .iter()
                .map(|user| format!("User:{user}"))
                .collect();
            Some(principals.join(";"))
        },
    },
    BrokerSetting {
        name: "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        setting: "transaction_abort_timed_out_transaction_cleanup_interval_ms",
        kind: ConfigType::Int,
        doc: "How often transactions past their timeout are looked for and aborted.",
        value: |config| Some(config.txn.abort_check_interval_ms.to_string()),
    },
    BrokerSetting {
        name: "transaction.max.timeout.ms",
        setting: "transaction_max_timeout_ms",
        kind: ConfigType::Int,
        doc: "The longest transaction timeout a producer may ask for.",
        value: |config| Some(config.txn.max_timeout_ms.to_string()),
    },
    BrokerSetting {
        name: "transaction.state.log.min.isr",
        setting: "transaction_state_log_min_isr",
        kind: ConfigType::Int,
        doc: "The min.insync.replicas of __transaction_state.",
        value: |config| Some(config.txn.state_min_isr.to_string()),
    },
    BrokerSetting {
        name: "transaction.state.log.num.partitions",
        setting: "transaction_state_log_num_partitions",
        kind: ConfigType::Int,
        doc: "The partitions of __transaction_state.",
        value: |config| Some(config.txn.state_partitions.to_string()),
    },
    BrokerSetting {
        name: "transaction.state.log.replication.factor",
        setting: "transaction_state_log_replication_factor",
        kind: ConfigType::Short,
        doc: "The replication factor of __transaction_state.",
        value: |config| Some(config.txn.state_replication_factor.to_string()),
    },
    BrokerSetting {
        name: "transactional.id.expiration.ms",
        setting: "transactional_id_expiration_ms",
        kind: ConfigType::Int,
        doc: "A transactional id unused for this long is forgotten.",
        value: |config| Some(config.txn.id_expiration_ms.to_string()),
    },
    BrokerSetting {
        name: "unclean.leader.election.enable",
        setting: "unclean_leader_election",
        kind: ConfigType::Boolean,
        doc: "When no in-sync replica is live, elect any live replica, losing what it lacks.",
        value: |config| Some(config.cluster.unclean_leader_election.to_string()),
    },
];

/// The broker config a topic config falls back to when the topic has no
/// value of its own (Kafka's synonym), if it has one.
pub fn broker_synonym(topic_config: &str) -> Option<&'static str> {
    Some(match topic_config {
        "max.message.bytes" => "message.max.bytes",
        "min.insync.replicas" => "min.insync.replicas",
        "retention.bytes" => "log.retention.bytes",
        "retention.ms" => "log.retention.ms",
        "segment.bytes" => "log.segment.bytes",
        "segment.ms" => "log.roll.ms",
        "unclean.leader.election.enable" => "unclean.leader.election.enable",
        _ => return None,
    })
}

/// A topic config's type and documentation.
pub fn topic_info(name: &str) -> (ConfigType, &'static str) {
    match name {
        "cleanup.policy" => (ConfigType::List, "How old segments are removed: delete, compact, or both."),
        "compression.type" => (ConfigType::String, "The codec batches are stored in; producer keeps the producer's."),
        "delete.retention.ms" => (ConfigType::Long, "How long a compacted topic keeps delete markers."),
        "file.delete.delay.ms" => (ConfigType::Long, "How long a removed segment's file waits before it is deleted."),
        "flush.messages" => (ConfigType::Long, "Records between forced flushes of the log."),
        "flush.ms" => (ConfigType::Long, "Time between forced flushes of the log."),
        "index.interval.bytes" => (ConfigType::Int, "Bytes of batches between two entries of the offset index."),
        "max.compaction.lag.ms" => (ConfigType::Long, "How long a record may stay uncompacted at most: older dirty records start cleaning whatever the dirty ratio."),
        "max.message.bytes" => (ConfigType::Int, "The largest record batch the topic accepts."),
        "message.timestamp.type" => (ConfigType::String, "Whether records keep the producer's timestamp (CreateTime) or get the broker's (LogAppendTime)."),
        "min.cleanable.dirty.ratio" => (ConfigType::Double, "The share of a compacted log not yet cleaned at which cleaning starts."),
        "min.compaction.lag.ms" => (ConfigType::Long, "How long a record stays uncompacted at least."),
        "min.insync.replicas" => (ConfigType::Int, "The fewest in-sync replicas with which an acks=all write is accepted."),
        "preallocate" => (ConfigType::Boolean, "Whether a new segment's file is allocated in full when it is created."),
        "retention.bytes" => (ConfigType::Long, "The size a partition is trimmed to by deleting its oldest segments; -1 keeps all."),
        "retention.ms" => (ConfigType::Long, "How long a segment is kept after its newest record; -1 keeps it for ever."),
        "segment.bytes" => (ConfigType::Int, "The size at which a segment is closed and a new one started."),
        "segment.ms" => (ConfigType::Long, "A segment older than this is closed and a new one started."),
        "unclean.leader.election.enable" => (ConfigType::Boolean, "When no in-sync replica is live, elect any live replica, losing what it lacks."),
        _ => (ConfigType::String, ""),
    }
}

/// The message of an alteration of broker configs, which are static here:
/// it names each config asked for and the Sluice setting that sets it.
pub fn static_broker_configs<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let named: Vec<String> = names
        .map(|name| match broker_setting(name) {
            Some(setting) if !setting.setting.is_empty() => format!(
                "{name} (set it as {} in the config file or --{} at start)",
                setting.setting,
                setting.setting.replace('_', "-")
            ),
            Some(_) => format!("{name} (fixed)"),
            None => format!("{name} (not a broker config Sluice has)"),
        })
        .collect();
    format!(
        "Cannot update these configs dynamically: {}. Sluice's broker configs are static.",
        named.join(", ")
    )
}

/// The broker setting named `name` in Kafka's words.
pub fn broker_setting(name: &str) -> Option<&'static BrokerSetting> {
    BROKER_SETTINGS.iter().find(|setting| setting.name == name)
}

/// One value a config takes and where from, as DescribeConfigs reports it
/// (the config itself, and each synonym).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sourced {
    pub name: &'static str,
    pub value: Option<String>,
    pub source: i8,
}

/// A broker setting's values, the one in use first: the operator's (if
/// set) and the default. `defaults` is [`defaults_of`] `config`, made once
/// for a whole request.
pub fn broker_values(
    setting: &BrokerSetting,
    config: &BrokerConfig,
    defaults: &BrokerConfig,
) -> Vec<Sourced> {
    let mut values = Vec::with_capacity(2);
    if config.set_by_operator.contains(setting.setting) {
        values.push(Sourced {
            name: setting.name,
            value: (setting.value)(config),
            source: source::STATIC_BROKER,
        });
    }
    values.push(Sourced {
        name: setting.name,
        value: (setting.value)(defaults),
        source: source::DEFAULT,
    });
    values
}

/// Kafka's defaults, with what cannot have a default (where the broker is
/// and who it is) kept as the broker has it.
pub fn defaults_of(config: &BrokerConfig) -> BrokerConfig {
    let mut defaults = BrokerConfig {
        node_id: config.node_id,
        listen: config.listen,
        advertised_host: config.advertised_host.clone(),
        advertised_port: config.advertised_port,
        extra_listeners: config.extra_listeners.clone(),
        data_dir: config.data_dir.clone(),
        extra_log_dirs: config.extra_log_dirs.clone(),
        offline_log_dirs: config.offline_log_dirs.clone(),
        ..BrokerConfig::default()
    };
    defaults.cluster.voters = config.cluster.voters.clone();
    defaults.cluster.rack = None;
    defaults
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_sorted_unique_and_typed() {
        let names: Vec<&str> = BROKER_SETTINGS.iter().map(|setting| setting.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        for setting in BROKER_SETTINGS {
            assert!(!setting.doc.is_empty(), "{}", setting.name);
        }
    }

    #[test]
    fn an_operators_value_comes_before_the_default() {
        let mut config = BrokerConfig::default();
        config.log.retention_ms = 1234;
        config.set_by_operator.insert("retention_ms");
        let setting = broker_setting("log.retention.ms").expect("known");
        let values = broker_values(setting, &config, &defaults_of(&config));
        assert_eq!(values[0].value.as_deref(), Some("1234"));
        assert_eq!(values[0].source, source::STATIC_BROKER);
        assert_eq!(values[1].source, source::DEFAULT);
        assert_eq!(
            values[1].value,
            Some(BrokerConfig::default().log.retention_ms.to_string())
        );
        let setting = broker_setting("log.segment.bytes").expect("known");
        let values = broker_values(setting, &config, &defaults_of(&config));
        assert_eq!(values.len(), 1);
        assert_eq!(values[0].source, source::DEFAULT);
    }

    #[test]
    fn a_refused_alteration_names_each_config() {
        let message = static_broker_configs(["log.retention.ms", "nope"].into_iter());
        assert_eq!(
            message,
            "Cannot update these configs dynamically: log.retention.ms (set it as retention_ms \
             in the config file or --retention-ms at start), nope (not a broker config Sluice \
             has). Sluice's broker configs are static."
        );
    }

    #[test]
    fn every_synonym_is_a_broker_setting() {
        for name in crate::topic_config::names() {
            assert!(
                !topic_info(name).1.is_empty(),
                "{name} has no documentation"
            );
            if let Some(synonym) = broker_synonym(name) {
                assert!(broker_setting(synonym).is_some(), "{name} -> {synonym}");
            }
        }
    }
}
