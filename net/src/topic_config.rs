//! Topic-level configs: the names Kafka uses, their defaults, validation, and
//! how they become a partition's [`LogConfig`].

use std::collections::BTreeMap;

use sluice_engine::constants::{SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN};
use sluice_engine::LogConfig;

/// How a config value is checked.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// An integer in `[min, max]`.
    Long {
        min: i64,
        max: i64,
    },
    Bool,
    OneOf(&'static [&'static str]),
    /// A comma-separated list drawn from the given words.
    ListOf(&'static [&'static str]),
}

/// A topic config Sluice knows: Kafka's name and what it accepts. Configs
/// marked `applied: false` are stored and reported but do not change the
/// broker's behaviour yet (documented in the README).
struct Known {
    name: &'static str,
    kind: Kind,
    applied: bool,
}

const KNOWN: &[Known] = &[
    Known {
        name: "cleanup.policy",
        kind: Kind::ListOf(&["delete", "compact"]),
        applied: false,
    },
    Known {
        name: "compression.type",
        kind: Kind::OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
        applied: false,
    },
    Known {
        name: "delete.retention.ms",
        kind: Kind::Long {
            min: 0,
            max: i64::MAX,
        },
        applied: false,
    },
    Known {
        name: "file.delete.delay.ms",
        kind: Kind::Long {
            min: 0,
            max: i64::MAX,
        },
        applied: false,
    },
    Known {
        name: "flush.messages",
        kind: Kind::Long {
            min: 1,
            max: i64::MAX,
        },
        applied: false,
    },
    Known {
        name: "flush.ms",
        kind: Kind::Long {
            min: 0,
            max: i64::MAX,
        },
        applied: false,
    },
    Known {
        name: "index.interval.bytes",
        kind: Kind::Long {
            min: 0,
            max: i32::MAX as i64,
        },
        applied: true,
    },
    Known {
        name: "max.message.bytes",
        kind: Kind::Long {
            min: 0,
            max: i32::MAX as i64,
        },
        applied: true,
    },
    Known {
        name: "message.timestamp.type",
        kind: Kind::OneOf(&["CreateTime", "LogAppendTime"]),
        applied: true,
    },
    Known {
        name: "min.cleanable.dirty.ratio",
        kind: Kind::OneOf(&["0.5"]),
        applied: false,
    },
    Known {
        name: "min.compaction.lag.ms",
        kind: Kind::Long {
            min: 0,
            max: i64::MAX,
        },
        applied: false,
    },
    Known {
        name: "min.insync.replicas",
        kind: Kind::Long {
            min: 1,
            max: i32::MAX as i64,
        },
        applied: true,
    },
    Known {
        name: "preallocate",
        kind: Kind::Bool,
        applied: true,
    },
    Known {
        name: "retention.bytes",
        kind: Kind::Long {
            min: -1,
            max: i64::MAX,
        },
        applied: true,
    },
    Known {
        name: "retention.ms",
        kind: Kind::Long {
            min: -1,
            max: i64::MAX,
        },
        applied: true,
    },
    Known {
        name: "segment.bytes",
        kind: Kind::Long {
            min: SEGMENT_BYTES_MIN as i64,
            max: SEGMENT_BYTES_MAX as i64,
        },
        applied: true,
    },
    Known {
        name: "segment.ms",
        kind: Kind::Long {
            min: 1,
            max: i64::MAX,
        },
        applied: true,
    },
    Known {
        name: "unclean.leader.election.enable",
        kind: Kind::Bool,
        applied: false,
    },
];

/// Checks one config name and value; the error is the message Kafka-style
/// clients show next to INVALID_CONFIG.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let Some(known) = KNOWN.iter().find(|known| known.name == name) else {
        return Err(format!("unknown topic config '{name}'"));
    };
    let ok = match known.kind {
        Kind::Long { min, max } => value.parse::<i64>().is_ok_and(|v| v >= min && v <= max),
        Kind::Bool => value == "true" || value == "false",
        Kind::OneOf(words) => words.contains(&value),
        Kind::ListOf(words) => value.split(',').all(|word| words.contains(&word.trim())),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid value '{value}' for topic config '{name}'"))
    }
}

/// Whether the broker acts on this config (as opposed to storing it).
pub fn is_applied(name: &str) -> bool {
    KNOWN
        .iter()
        .any(|known| known.name == name && known.applied)
}

/// The value a topic reports for `name`: its override, else the broker default.
pub fn default_value(name: &str, defaults: &LogConfig) -> Option<String> {
    Some(match name {
        "cleanup.policy" => "delete".into(),
        "compression.type" => "producer".into(),
        "delete.retention.ms" => "86400000".into(),
        "file.delete.delay.ms" => "60000".into(),
        "flush.messages" => i64::MAX.to_string(),
        "flush.ms" => i64::MAX.to_string(),
        "index.interval.bytes" => defaults.index_interval_bytes.to_string(),
        "max.message.bytes" => defaults.max_message_bytes.to_string(),
        "message.timestamp.type" => if defaults.log_append_time {
            "LogAppendTime"
        } else {
            "CreateTime"
        }
        .into(),
        "min.cleanable.dirty.ratio" => "0.5".into(),
        "min.compaction.lag.ms" => "0".into(),
        "min.insync.replicas" => "1".into(),
        "preallocate" => defaults.preallocate.to_string(),
        "retention.bytes" => defaults.retention_bytes.to_string(),
        "retention.ms" => defaults.retention_ms.to_string(),
        "segment.bytes" => defaults.segment_bytes.to_string(),
        "segment.ms" => defaults.segment_ms.to_string(),
        "unclean.leader.election.enable" => "false".into(),
        _ => return None,
    })
}

/// Every known config name, in Kafka's alphabetical order.
pub fn names() -> impl Iterator<Item = &'static str> {
    KNOWN.iter().map(|known| known.name)
}

/// The log settings of a topic: broker defaults with its overrides applied.
/// Overrides were validated when set, so unparsable values cannot occur; if
/// one did (a hand-edited snapshot), the default stands.
pub fn log_config(defaults: &LogConfig, overrides: &BTreeMap<String, String>) -> LogConfig {
    let mut config = defaults.clone();
    let long = |name: &str| {
        overrides
            .get(name)
            .and_then(|value| value.parse::<i64>().ok())
    };
    if let Some(value) = long("segment.bytes") {
        config.segment_bytes = value as u64;
    }
    if let Some(value) = long("segment.ms") {
        config.segment_ms = value;
    }
    if let Some(value) = long("retention.ms") {
        config.retention_ms = value;
    }
    if let Some(value) = long("retention.bytes") {
        config.retention_bytes = value;
    }
    if let Some(value) = long("index.interval.bytes") {
        config.index_interval_bytes = value as u32;
    }
    if let Some(value) = long("max.message.bytes") {
        config.max_message_bytes = value as u32;
    }
    if let Some(value) = overrides.get("message.timestamp.type") {
        config.log_append_time = value == "LogAppendTime";
    }
    if let Some(value) = overrides.get("preallocate") {
        config.preallocate = value == "true";
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_accepts_kafka_values_and_refuses_others() {
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "abc").is_err());
        assert!(validate("segment.bytes", "100").is_err());
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate("no.such.config", "1").is_err());
    }

    #[test]
    fn overrides_shape_the_log() {
        let mut overrides = BTreeMap::new();
        overrides.insert("segment.bytes".to_string(), "1048576".to_string());
        overrides.insert(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        );
        let config = log_config(&LogConfig::default(), &overrides);
        assert_eq!(config.segment_bytes, 1_048_576);
        assert!(config.log_append_time);
    }
}
