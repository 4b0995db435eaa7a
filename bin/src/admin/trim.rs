//! `sluice topic trim`: removes a topic's oldest records with DeleteRecords,
//! like Kafka's `kafka-delete-records.sh`, by moving each partition's log
//! start offset (its "low watermark") forward. Consumers then start at the
//! new log start; the segments wholly below it are deleted by the next
//! retention pass.
//!
//! The partitions are named (`--partition N`, repeatable) or all of them
//! (`--all-partitions`), each trimmed before the same offset. A broker
//! refuses an offset past a partition's high watermark (OFFSET_OUT_OF_RANGE)
//! without a message, so the command looks up the high watermark and says
//! what it was. With one partition a refusal is the one error line; with
//! several, every partition's result is printed before it.

use std::fmt::Write as _;

use serde_json::{json, Value};
use sluice_net::client::{Admin, ClientError, KafkaError, LowWatermark, OffsetSpec};

use super::{emit, json_text, offset_for, table};

/// Kafka's OFFSET_OUT_OF_RANGE error code.
const OFFSET_OUT_OF_RANGE: i16 = 1;
/// Kafka's POLICY_VIOLATION error code: Sluice's answer for a compact-only
/// topic, whose records are kept for their keys.
const POLICY_VIOLATION: i16 = 44;

/// `sluice topic trim`: trims the partitions and prints each one's low
/// watermark; fails (after printing, when there were several) if a
/// partition was refused.
pub(super) fn topic_trim(
    admin: &mut Admin,
    name: &str,
    partitions: Option<&[i32]>,
    before: i64,
    json: bool,
) -> Result<String, ClientError> {
    let topic = admin.describe_topic(name)?;
    let asked: Vec<(i32, i64)> = match partitions {
        Some(partitions) => partitions.iter().map(|index| (*index, before)).collect(),
        None => topic
            .partitions
            .iter()
            .map(|partition| (partition.partition, before))
            .collect(),
    };
    let mut results = admin.delete_records(&topic, &asked)?;
    if results
        .iter()
        .any(|result| refused_with(result, OFFSET_OUT_OF_RANGE))
    {
        // Best effort: the refusal stands even if this lookup fails.
        let latest = admin
            .list_offsets(&topic, OffsetSpec::Latest)
            .unwrap_or_default();
        for result in &mut results {
            if let Err(error) = &mut result.low_watermark {
                if error.code == OFFSET_OUT_OF_RANGE && error.message.is_none() {
                    let high = offset_for(&latest, result.partition)
                        .and_then(|offset| offset.offset.as_ref().ok());
                    error.message = Some(match high {
                        Some(high) => format!(
                            "offset {before} is past partition {}'s high watermark {high}; \
                             records can be removed up to the high watermark only",
                            result.partition
                        ),
                        None => format!(
                            "offset {before} is past partition {}'s high watermark",
                            result.partition
                        ),
                    });
                }
            }
        }
    }
    for result in &mut results {
        if let Err(error) = &mut result.low_watermark {
            if error.code == POLICY_VIOLATION && error.message.is_none() {
                error.message = Some(format!(
                    "topic '{name}' is compacted only (cleanup.policy=compact): its records are \
                     kept for their keys and cannot be deleted by offset"
                ));
            }
        }
    }
    let refused: Vec<(i32, &KafkaError)> = results
        .iter()
        .filter_map(|result| Some((result.partition, result.low_watermark.as_ref().err()?)))
        .collect();
    // One partition asked and refused: the refusal is the whole answer.
    if let ([(_, error)], 1) = (refused.as_slice(), results.len()) {
        return Err(ClientError::Broker((*error).clone()));
    }
    let out = results_text(name, &results, json);
    let Some((partition, first)) = refused.first() else {
        return Ok(out);
    };
    // Every partition's result is worth showing before the error.
    emit(&out);
    Err(ClientError::Broker(KafkaError::new(
        first.code,
        Some(format!(
            "{} of {} partition(s) refused; the first, partition {partition}: {}",
            refused.len(),
            results.len(),
            first.message.as_deref().unwrap_or("no message")
        )),
    )))
}

fn refused_with(result: &LowWatermark, code: i16) -> bool {
    matches!(&result.low_watermark, Err(error) if error.code == code)
}

fn results_text(name: &str, results: &[LowWatermark], json: bool) -> String {
    if json {
        let list: Vec<Value> = results
            .iter()
            .map(|result| {
                let error = result.low_watermark.as_ref().err().map(|error| {
                    json!({ "code": error.code, "name": error.name(), "message": error.message })
                });
                json!({
                    "partition": result.partition,
                    "low_watermark": result.low_watermark.as_ref().ok(),
                    "error": error,
                })
            })
            .collect();
        return json_text(&json!({ "topic": name, "partitions": list }));
    }
    if results.is_empty() {
        return format!("Topic '{name}' has no partitions to trim.\n");
    }
    let any_refused = results.iter().any(|result| result.low_watermark.is_err());
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|result| {
            let mut row = vec![result.partition.to_string()];
            match &result.low_watermark {
                Ok(offset) => row.extend([offset.to_string(), String::new()]),
                Err(error) => row.extend(["-".to_string(), error.to_string()]),
            }
            if !any_refused {
                row.pop();
            }
            row
        })
        .collect();
    let headers: &[&str] = if any_refused {
        &["PARTITION", "LOW-WATERMARK", "ERROR"]
    } else {
        &["PARTITION", "LOW-WATERMARK"]
    };
    let mut out = String::new();
    let _ = writeln!(out, "Trimmed topic '{name}'; each partition now starts at:");
    out.push_str(&table(headers, &rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_get_their_own_column() {
        let results = [
            LowWatermark {
                partition: 0,
                low_watermark: Ok(5),
            },
            LowWatermark {
                partition: 1,
                low_watermark: Err(KafkaError::new(1, Some("past the end".into()))),
            },
        ];
        let text = results_text("t", &results, false);
        assert!(text.contains("PARTITION  LOW-WATERMARK  ERROR"), "{text}");
        assert!(
            text.contains("1          -              OFFSET_OUT_OF_RANGE (1): past the end"),
            "{text}"
        );
        let value: Value = serde_json::from_str(&results_text("t", &results, true)).expect("JSON");
        assert_eq!(value["partitions"][0]["low_watermark"], 5);
        assert_eq!(
            value["partitions"][1]["error"]["name"],
            "OFFSET_OUT_OF_RANGE"
        );
    }
}
