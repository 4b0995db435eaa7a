//! `sluice topic describe NAME --stats`: per partition, the offsets it
//! spans and its size on disk, with the topic's totals.
//!
//! Offsets come from ListOffsets (earliest and latest); their difference
//! counts offsets, which is the record count unless compaction removed
//! records or transaction markers took offsets. Sizes come from
//! DescribeLogDirs, which every broker answers for its own replicas; the
//! table shows the leader's, the JSON every replica's.

use std::fmt::Write as _;

use serde_json::{json, Value};
use sluice_net::client::{Admin, ClientError, OffsetSpec, ReplicaSize};

use super::{json_text, offset_for, offset_json, offset_text, table};

/// Units for sizes in the table, each 1024 times the one before.
const SIZE_UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
const SIZE_UNIT_STEP: f64 = 1024.0;

/// `1536` as `1.5 KiB`; bytes as a whole number.
fn size_text(bytes: i64) -> String {
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= SIZE_UNIT_STEP && unit + 1 < SIZE_UNITS.len() {
        value /= SIZE_UNIT_STEP;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", SIZE_UNITS[unit])
    }
}

pub(super) fn topic_stats(
    admin: &mut Admin,
    name: &str,
    json: bool,
) -> Result<String, ClientError> {
    let topic = admin.describe_topic(name)?;
    let earliest = admin.list_offsets(&topic, OffsetSpec::Earliest)?;
    let latest = admin.list_offsets(&topic, OffsetSpec::Latest)?;
    let sizes = admin.replica_sizes(&topic)?;
    let leader_size = |partition: i32, leader: Option<i32>| -> Option<&ReplicaSize> {
        sizes
            .iter()
            .find(|size| size.partition == partition && Some(size.broker) == leader && !size.future)
    };
    let offsets_of = |partition: i32| -> Option<i64> {
        let low = offset_for(&earliest, partition)?.offset.as_ref().ok()?;
        let high = offset_for(&latest, partition)?.offset.as_ref().ok()?;
        Some((high - low).max(0))
    };
    let total_offsets: i64 = topic
        .partitions
        .iter()
        .filter_map(|partition| offsets_of(partition.partition))
        .sum();
    let total_bytes: i64 = topic
        .partitions
        .iter()
        .filter_map(|partition| leader_size(partition.partition, partition.leader))
        .map(|size| size.size_bytes)
        .sum();
    if json {
        let partitions: Vec<Value> = topic
            .partitions
            .iter()
            .map(|partition| {
                let replicas: Vec<Value> = sizes
                    .iter()
                    .filter(|size| size.partition == partition.partition)
                    .map(|size| {
                        json!({
                            "broker": size.broker,
                            "log_dir": size.log_dir,
                            "size_bytes": size.size_bytes,
                            "offset_lag": size.offset_lag,
                            "future": size.future,
                        })
                    })
                    .collect();
                json!({
                    "partition": partition.partition,
                    "leader": partition.leader,
                    "earliest_offset": offset_json(offset_for(&earliest, partition.partition)),
                    "latest_offset": offset_json(offset_for(&latest, partition.partition)),
                    "offsets": offsets_of(partition.partition),
                    "size_bytes": leader_size(partition.partition, partition.leader)
                        .map(|size| size.size_bytes),
                    "replicas": replicas,
                })
            })
            .collect();
        return Ok(json_text(&json!({
            "name": topic.name,
            "partitions": partitions,
            "total_offsets": total_offsets,
            "total_size_bytes": total_bytes,
        })));
    }
    let rows: Vec<Vec<String>> = topic
        .partitions
        .iter()
        .map(|partition| {
            let index = partition.partition;
            vec![
                index.to_string(),
                partition
                    .leader
                    .map_or("none".to_string(), |leader| leader.to_string()),
                offset_text(offset_for(&earliest, index)),
                offset_text(offset_for(&latest, index)),
                offsets_of(index).map_or("-".to_string(), |count| count.to_string()),
                leader_size(index, partition.leader)
                    .map_or("-".to_string(), |size| size_text(size.size_bytes)),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "PARTITION",
            "LEADER",
            "EARLIEST",
            "LATEST",
            "OFFSETS",
            "SIZE",
        ],
        &rows,
    );
    let _ = writeln!(
        out,
        "\nTotal: {total_offsets} offsets, {} on the leaders ({total_bytes} bytes).",
        size_text(total_bytes)
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size_text(0), "0 B");
        assert_eq!(size_text(1023), "1023 B");
        assert_eq!(size_text(1536), "1.5 KiB");
        assert_eq!(size_text(5 * 1024 * 1024), "5.0 MiB");
    }
}
