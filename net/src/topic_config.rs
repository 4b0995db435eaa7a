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
    /// A decimal number in `[0, 1]` (Kafka's DOUBLE with that range).
    Ratio,
    OneOf(&'static [&'static str]),
    /// A comma-separated list drawn from `words`, each at most once (Kafka's
    /// LIST type). `default` is Kafka's own default, the list that APPEND
    /// and SUBTRACT start from when the topic has no value of its own.
    ListOf {
        words: &'static [&'static str],
        default: &'static str,
    },
}

/// A topic config Sluice knows: Kafka's name and what it accepts. Configs
/// marked `applied: false` are stored and reported but do not change the
/// broker's behaviour yet (documented in the README).
struct Known {
    name: &'static str,
    kind: Kind,
    applied: bool,
}

/// Kafka's default `cleanup.policy`.
const CLEANUP_POLICY_DEFAULT: &str = "delete";

const KNOWN: &[Known] = &[
    Known {
        name: "cleanup.policy",
        kind: Kind::ListOf {
            words: &["delete", "compact"],
            default: CLEANUP_POLICY_DEFAULT,
        },
        applied: true,
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
        applied: true,
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
        name: "max.compaction.lag.ms",
        kind: Kind::Long {
            min: 1,
            max: i64::MAX,
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
        kind: Kind::Ratio,
        applied: true,
    },
    Known {
        name: "min.compaction.lag.ms",
        kind: Kind::Long {
            min: 0,
            max: i64::MAX,
        },
        applied: true,
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
        Kind::Ratio => value.parse::<f64>().is_ok_and(|v| (0.0..=1.0).contains(&v)),
        Kind::OneOf(words) => words.contains(&value),
        Kind::ListOf { words, .. } => return validate_list(name, value, words),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid value '{value}' for topic config '{name}'"))
    }
}

/// Checks a list config's value as Kafka (4.1 and later) checks its LIST
/// configs: items separated by commas, spaces around them ignored, none
/// empty, none twice, each one of `words`.
fn validate_list(name: &str, value: &str, words: &[&str]) -> Result<(), String> {
    if value.trim().is_empty() {
        // Kafka 4.1 and later take an empty cleanup.policy to mean "neither
        // delete nor compact", and older versions refuse it; Sluice refuses
        // it too, pointing at the settings that keep every record.
        return Err(format!(
            "'{name}' cannot be an empty list in Sluice; to keep every record use \
             cleanup.policy=delete with retention.ms=-1 and retention.bytes=-1"
        ));
    }
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    for (index, item) in items.iter().enumerate() {
        if item.is_empty() {
            return Err(format!(
                "invalid value '{value}' for topic config '{name}': an item is empty"
            ));
        }
        if !words.contains(item) {
            return Err(format!(
                "invalid value '{value}' for topic config '{name}': '{item}' is not one of {}",
                words.join(", ")
            ));
        }
        if items[..index].contains(item) {
            return Err(format!(
                "invalid value '{value}' for topic config '{name}': '{item}' is named twice"
            ));
        }
    }
    Ok(())
}

/// The IncrementalAlterConfigs operations that edit a list config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListEdit {
    /// Adds the items the list lacks, after those it has.
    Append,
    /// Removes the items named.
    Subtract,
}

/// The value a list config takes after APPEND or SUBTRACT of `items` (a
/// comma-separated list; `None` changes nothing), starting from `current`,
/// the topic's own value, or Kafka's default when it has none, as Kafka
/// does. The caller validates the result as it would a SET: an APPEND of a
/// word the config does not know, or a SUBTRACT down to nothing, is refused
/// there. Configs that are not lists are refused here.
pub fn edit_list(
    name: &str,
    current: Option<&str>,
    edit: ListEdit,
    items: Option<&str>,
) -> Result<String, String> {
    let Some(known) = KNOWN.iter().find(|known| known.name == name) else {
        return Err(format!("unknown topic config '{name}'"));
    };
    let Kind::ListOf { default, .. } = known.kind else {
        let operation = match edit {
            ListEdit::Append => "APPEND",
            ListEdit::Subtract => "SUBTRACT",
        };
        return Err(format!(
            "cannot {operation} to '{name}': it is not a list config (APPEND and SUBTRACT \
             apply to list configs such as cleanup.policy)"
        ));
    };
    let mut list: Vec<&str> = current
        .unwrap_or(default)
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .collect();
    for item in items.into_iter().flat_map(|items| items.split(',')) {
        let item = item.trim();
        match edit {
            ListEdit::Append if !list.contains(&item) => list.push(item),
            ListEdit::Append => {}
            ListEdit::Subtract => list.retain(|kept| *kept != item),
        }
    }
    Ok(list.join(","))
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
        "cleanup.policy" => CLEANUP_POLICY_DEFAULT.into(),
        "compression.type" => "producer".into(),
        "delete.retention.ms" => defaults.delete_retention_ms.to_string(),
        "file.delete.delay.ms" => "60000".into(),
        "flush.messages" => i64::MAX.to_string(),
        "flush.ms" => i64::MAX.to_string(),
        "max.compaction.lag.ms" => i64::MAX.to_string(),
        "index.interval.bytes" => defaults.index_interval_bytes.to_string(),
        "max.message.bytes" => defaults.max_message_bytes.to_string(),
        "message.timestamp.type" => if defaults.log_append_time {
            "LogAppendTime"
        } else {
            "CreateTime"
        }
        .into(),
        "min.cleanable.dirty.ratio" => defaults.min_cleanable_dirty_ratio.to_string(),
        "min.compaction.lag.ms" => defaults.min_compaction_lag_ms.to_string(),
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
    if let Some(policy) = overrides.get("cleanup.policy") {
        let has = |word: &str| policy.split(',').any(|item| item.trim() == word);
        config.delete = has("delete");
        config.compact = has("compact");
    }
    if let Some(value) = long("delete.retention.ms") {
        config.delete_retention_ms = value;
    }
    if let Some(value) = long("min.compaction.lag.ms") {
        config.min_compaction_lag_ms = value;
    }
    if let Some(value) = long("max.compaction.lag.ms") {
        config.max_compaction_lag_ms = value;
    }
    if let Some(value) = overrides
        .get("min.cleanable.dirty.ratio")
        .and_then(|value| value.parse::<f64>().ok())
    {
        config.min_cleanable_dirty_ratio = value;
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
    fn lists_refuse_empty_repeated_and_unknown_items() {
        assert!(validate("cleanup.policy", "delete, compact").is_ok());
        for refused in ["", " ", "delete,,compact", "delete,delete", "delete,shred"] {
            assert!(validate("cleanup.policy", refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn append_and_subtract_start_from_the_default_and_keep_order() {
        let policy = "cleanup.policy";
        let append = |current, items| edit_list(policy, current, ListEdit::Append, Some(items));
        let subtract = |current, items| edit_list(policy, current, ListEdit::Subtract, Some(items));
        assert_eq!(append(None, "compact"), Ok("delete,compact".to_string()));
        assert_eq!(
            append(Some("compact"), "delete,compact"),
            Ok("compact,delete".to_string())
        );
        assert_eq!(append(Some("delete"), "delete"), Ok("delete".to_string()));
        assert_eq!(
            subtract(Some("compact,delete"), "compact"),
            Ok("delete".to_string())
        );
        assert_eq!(
            subtract(Some("delete"), "compact"),
            Ok("delete".to_string())
        );
        // Down to nothing: computed here, refused by the validation after it.
        assert_eq!(subtract(None, "delete"), Ok(String::new()));
        assert!(validate(policy, "").is_err());
        assert_eq!(
            edit_list(policy, Some("compact"), ListEdit::Append, None),
            Ok("compact".to_string())
        );
        assert!(edit_list("retention.ms", None, ListEdit::Append, Some("1")).is_err());
        assert!(edit_list("no.such.config", None, ListEdit::Subtract, Some("x")).is_err());
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
