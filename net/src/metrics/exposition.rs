//! The Prometheus text exposition format (version 0.0.4), written by hand.
//!
//! The figures are already aggregated when they get here (atomics summed
//! over shards, snapshots merged), and a histogram arrives as bucket
//! counts: a metrics crate's registry of metric objects that it owns and
//! updates would have to be filled anew on every scrape to say the same
//! thing. What the format needs is small: `# HELP`/`# TYPE` lines, samples
//! with escaped label values, cumulative `le` buckets.
//!
//! Every name starts with `sluice_`; counters end in `_total`, sizes in
//! `_bytes`, durations in `_seconds` (the README lists them all).

use std::collections::HashMap;
use std::fmt::Write;
use std::time::Instant;

use kafka_protocol::messages::ApiKey;

use super::{ApiTotals, Metrics, ShardSnapshot};
use crate::constants::{METRICS_API_KEYS_MAX, REQUEST_DURATION_BUCKETS_MICROS};

/// The content type of what [`render`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Space on one data directory's file system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirSpace {
    pub dir: String,
    /// Available to the broker (not to root only).
    pub free_bytes: u64,
    pub size_bytes: u64,
}

/// Figures the admin thread reads from the kernel itself.
#[derive(Clone, Debug, Default)]
pub struct ProcessFigures {
    pub dirs: Vec<DirSpace>,
    pub resident_bytes: Option<u64>,
    /// Bytes the broker's allocations hold (the allocator's own count).
    pub allocated_bytes: Option<u64>,
    /// Bytes the allocator holds resident: what is allocated, its free
    /// pages not yet handed back, and its own bookkeeping.
    pub allocator_resident_bytes: Option<u64>,
    /// Allocations made since the start (the allocator's own count), so
    /// that allocations per request can be read beside the request counts.
    pub allocations: Option<u64>,
}

struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (index, (label, text)) in labels.iter().enumerate() {
                if index > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape_into(&mut self.out, text);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// One histogram's samples under `labels`: cumulative `le` buckets of
    /// `REQUEST_DURATION_BUCKETS_MICROS` from per-bucket counts, `+Inf`,
    /// `_sum` and `_count`.
    fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        buckets: &[u64],
        count: u64,
        sum_micros: u64,
    ) {
        let bucket_name = format!("{name}_bucket");
        let mut cumulative = 0;
        for (bound, in_bucket) in REQUEST_DURATION_BUCKETS_MICROS.iter().zip(buckets) {
            cumulative += in_bucket;
            let le = seconds(*bound).to_string();
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket_name, &with_le, cumulative);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket_name, &with_le, count);
        self.sample(&format!("{name}_sum"), labels, seconds(sum_micros));
        self.sample(&format!("{name}_count"), labels, count);
    }
}

/// A label value as the format wants it: backslash, double quote and line
/// feed escaped. Topic and group names come from clients.
fn escape_into(out: &mut String, text: &str) {
    for character in text.chars() {
        match character {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
}

fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(api) => format!("{api:?}"),
        Err(_) => key.to_string(),
    }
}

fn seconds(micros: u64) -> f64 {
    micros as f64 / 1_000_000.0
}

/// Everything the broker exposes, as Prometheus text.
pub fn render(metrics: &Metrics, process: &ProcessFigures, now: Instant) -> String {
    let shards = metrics.shards();
    let snapshots: Vec<(u16, std::sync::Arc<ShardSnapshot>)> = shards
        .iter()
        .map(|shard| (shard.shard.0, shard.snapshot()))
        .collect();
    let mut writer = Writer {
        out: String::with_capacity(64 * 1024),
    };
    let out = &mut writer;

    out.family(
        "sluice_ready",
        "gauge",
        "1 once data is loaded and the listeners are up.",
    );
    out.sample("sluice_ready", &[], u8::from(metrics.is_ready()));

    write_requests(out, &shards);
    write_request_queue(out, &shards);
    write_shards(out, &snapshots, now);
    write_topics(out, &snapshots);
    write_partitions(out, &snapshots);
    write_groups(out, &snapshots);

    out.family(
        "sluice_data_dir_free_bytes",
        "gauge",
        "Bytes free for the broker on each data directory's file system.",
    );
    for dir in &process.dirs {
        out.sample(
            "sluice_data_dir_free_bytes",
            &[("dir", &dir.dir)],
            dir.free_bytes,
        );
    }
    out.family(
        "sluice_data_dir_size_bytes",
        "gauge",
        "Size of each data directory's file system.",
    );
    for dir in &process.dirs {
        out.sample(
            "sluice_data_dir_size_bytes",
            &[("dir", &dir.dir)],
            dir.size_bytes,
        );
    }
    let memory = [
        (
            "sluice_memory_resident_bytes",
            "Resident memory of the broker process.",
            process.resident_bytes,
        ),
        (
            "sluice_memory_allocated_bytes",
            "Memory the broker's allocations hold, as the allocator counts it.",
            process.allocated_bytes,
        ),
        (
            "sluice_memory_allocator_resident_bytes",
            "Memory the allocator holds resident: allocations, free pages not yet returned to the kernel, metadata.",
            process.allocator_resident_bytes,
        ),
    ];
    for (name, help, figure) in memory {
        if let Some(bytes) = figure {
            out.family(name, "gauge", help);
            out.sample(name, &[], bytes);
        }
    }
    if let Some(count) = process.allocations {
        let name = "sluice_memory_allocations_total";
        out.family(
            name,
            "counter",
            "Heap allocations made since the broker started.",
        );
        out.sample(name, &[], count);
    }
    let name = "sluice_shard_sleeps_interrupted_total";
    out.family(
        name,
        "counter",
        "Shard sleeps the wake watch interrupted: a shard asleep past its heartbeat timer with work stranded.",
    );
    out.sample(name, &[], sluice_engine::wake_watch::interrupts_total());
    let name = "sluice_background_calls_taken_back_total";
    out.family(
        name,
        "counter",
        &format!(
            "Background work (the cleaner's key noting) a shard did itself because no idle CPU had started it within {} ms.",
            sluice_engine::constants::BACKGROUND_START_WAIT_MAX.as_millis()
        ),
    );
    out.sample(
        name,
        &[],
        sluice_engine::storage::background_calls_taken_back_total(),
    );
    writer.out
}

fn write_request_queue(out: &mut Writer, shards: &[std::sync::Arc<super::ShardMetrics>]) {
    let totals: Vec<(String, super::QueueTotals)> = shards
        .iter()
        .map(|shard| (shard.shard.0.to_string(), shard.queue_totals()))
        .collect();
    out.family(
        "sluice_request_queue_seconds",
        "histogram",
        "Time from a request's decoding to its handler's first run (queued behind the shard's other tasks, or the shard asleep), by shard.",
    );
    for (shard, totals) in &totals {
        out.histogram(
            "sluice_request_queue_seconds",
            &[("shard", shard)],
            &totals.buckets,
            totals.count,
            totals.micros,
        );
    }
    for tally in super::Tally::ALL {
        let (name, help) = match tally {
            super::Tally::Connections => (
                "sluice_connections",
                "Client connections open, by the shard that serves them.",
            ),
            super::Tally::Fetching => (
                "sluice_connections_fetching",
                "Client connections that have fetched (consumers, followers), by the shard that serves them.",
            ),
        };
        out.family(name, "gauge", help);
        for shard in shards {
            out.sample(
                name,
                &[("shard", &shard.shard.0.to_string())],
                shard.counted(tally),
            );
        }
    }
    out.family(
        "sluice_request_queue_seconds_max",
        "gauge",
        "The longest a request of the shard waited for its handler's first run since the broker started.",
    );
    for (shard, totals) in &totals {
        out.sample(
            "sluice_request_queue_seconds_max",
            &[("shard", shard)],
            seconds(totals.max_micros),
        );
    }
}

fn write_requests(out: &mut Writer, shards: &[std::sync::Arc<super::ShardMetrics>]) {
    // Summed over shards; APIs never called are left out.
    let mut apis: Vec<(i16, ApiTotals)> = Vec::new();
    for key in 0..METRICS_API_KEYS_MAX as i16 {
        let mut totals = ApiTotals::default();
        for shard in shards {
            totals.add(&shard.api_totals(key));
        }
        if totals.started > 0 {
            apis.push((key, totals));
        }
    }
    let named: Vec<(String, &ApiTotals)> = apis
        .iter()
        .map(|(key, totals)| (api_name(*key), totals))
        .collect();
    out.family(
        "sluice_requests_total",
        "counter",
        "Kafka requests answered, by API.",
    );
    for (api, totals) in &named {
        out.sample("sluice_requests_total", &[("api", api)], totals.finished);
    }
    out.family(
        "sluice_request_errors_total",
        "counter",
        "Kafka requests answered with an error code (Produce and Fetch: any partition's; other APIs: only requests answered by closing the connection), by API.",
    );
    for (api, totals) in &named {
        out.sample(
            "sluice_request_errors_total",
            &[("api", api)],
            totals.errors,
        );
    }
    out.family(
        "sluice_requests_in_flight",
        "gauge",
        "Kafka requests decoded and not yet answered, by API.",
    );
    for (api, totals) in &named {
        let in_flight = totals.started.saturating_sub(totals.finished);
        out.sample("sluice_requests_in_flight", &[("api", api)], in_flight);
    }
    out.family(
        "sluice_request_duration_seconds",
        "histogram",
        "Time from a request handler's first run to its response being ready, by API.",
    );
    for (api, totals) in &named {
        out.histogram(
            "sluice_request_duration_seconds",
            &[("api", api)],
            &totals.buckets,
            totals.finished,
            totals.duration_micros,
        );
    }
}

type Snapshots = [(u16, std::sync::Arc<ShardSnapshot>)];

/// One figure of a shard's snapshot, as a sample's text.
type ShardFigure = dyn Fn(&ShardSnapshot) -> String;

fn write_shards(out: &mut Writer, snapshots: &Snapshots, now: Instant) {
    let shard_labels: Vec<String> = snapshots
        .iter()
        .map(|(shard, _)| shard.to_string())
        .collect();
    let each = |out: &mut Writer, name: &str, value: &dyn Fn(&ShardSnapshot) -> String| {
        for ((_, snapshot), shard) in snapshots.iter().zip(&shard_labels) {
            if snapshot.made.is_some() {
                out.sample(name, &[("shard", shard)], value(snapshot));
            }
        }
    };
    out.family(
        "sluice_shard_snapshot_age_seconds",
        "gauge",
        "Age of the figures each shard last published; grows when a shard stalls.",
    );
    each(out, "sluice_shard_snapshot_age_seconds", &|snapshot| {
        let made = snapshot.made.unwrap_or(now);
        now.saturating_duration_since(made)
            .as_secs_f64()
            .to_string()
    });
    let counters: [(&str, &str, &ShardFigure); 3] = [
        (
            "sluice_shard_busy_seconds_total",
            "Time each shard spent running tasks and polling for I/O (not spinning or parked).",
            &|snapshot| snapshot.executor.busy.as_secs_f64().to_string(),
        ),
        (
            "sluice_shard_cpu_seconds_total",
            "CPU time the kernel charged each shard's thread (user and system).",
            &|snapshot| snapshot.executor.cpu.as_secs_f64().to_string(),
        ),
        (
            "sluice_shard_tasks_executed_total",
            "Tasks each shard's executor ran.",
            &|snapshot| snapshot.executor.tasks_executed.to_string(),
        ),
    ];
    for (name, help, value) in counters {
        out.family(name, "counter", help);
        each(out, name, value);
    }
    // File I/O by direction: (family, help, reads, writes).
    type ByOp = fn(&ShardSnapshot) -> (u64, u64);
    let by_op: [(&str, &str, ByOp); 2] = [
        (
            "sluice_shard_io_operations_total",
            "File reads and writes each shard submitted to io_uring.",
            |snapshot| (snapshot.executor.file_reads, snapshot.executor.file_writes),
        ),
        (
            "sluice_shard_io_bytes_total",
            "Bytes of the file reads and writes each shard submitted to io_uring.",
            |snapshot| {
                (
                    snapshot.executor.file_read_bytes,
                    snapshot.executor.file_write_bytes,
                )
            },
        ),
    ];
    for (name, help, figures) in by_op {
        out.family(name, "counter", help);
        for ((_, snapshot), shard) in snapshots.iter().zip(&shard_labels) {
            if snapshot.made.is_some() {
                let (reads, writes) = figures(snapshot);
                out.sample(name, &[("shard", shard), ("op", "read")], reads);
                out.sample(name, &[("shard", shard), ("op", "write")], writes);
            }
        }
    }
    let cleaner: [(&str, &str, &ShardFigure); 5] = [
        (
            "sluice_cleaner_passes_total",
            "Log cleaning passes each shard ran.",
            &|snapshot| snapshot.cleaner.passes.to_string(),
        ),
        (
            "sluice_cleaner_io_bytes_total",
            "Bytes each shard's log cleaner read and wrote (what log_cleaner_io_max_bytes_per_second limits).",
            &|snapshot| snapshot.cleaner.io_bytes.to_string(),
        ),
        (
            "sluice_cleaner_bytes_removed_total",
            "Bytes of log each shard's log cleaner removed.",
            &|snapshot| snapshot.cleaner.bytes_removed.to_string(),
        ),
        (
            "sluice_cleaner_records_removed_total",
            "Records (and transaction markers) each shard's log cleaner removed.",
            &|snapshot| snapshot.cleaner.records_removed.to_string(),
        ),
        (
            "sluice_cleaner_busy_seconds_total",
            "Time each shard ran its log cleaner (part of sluice_shard_busy_seconds_total).",
            &|snapshot| snapshot.cleaner.busy.as_secs_f64().to_string(),
        ),
    ];
    for (name, help, value) in cleaner {
        out.family(name, "counter", help);
        each(out, name, value);
    }
    out.family(
        "sluice_batch_cache_bytes",
        "gauge",
        "Record-batch bytes each shard's batch cache holds.",
    );
    each(out, "sluice_batch_cache_bytes", &|snapshot| {
        snapshot.cache_used_bytes.to_string()
    });
    out.family(
        "sluice_log_reads_total",
        "counter",
        "Partition log reads each shard served, by source: the batch cache, disk, or what was read from disk ahead of the reader (the cache hit ratio is cache over all three).",
    );
    for ((_, snapshot), shard) in snapshots.iter().zip(&shard_labels) {
        if snapshot.made.is_some() {
            let name = "sluice_log_reads_total";
            out.sample(
                name,
                &[("shard", shard), ("source", "cache")],
                snapshot.reads_from_cache,
            );
            out.sample(
                name,
                &[("shard", shard), ("source", "disk")],
                snapshot.reads_from_disk,
            );
            out.sample(
                name,
                &[("shard", shard), ("source", "read_ahead")],
                snapshot.reads_ahead,
            );
        }
    }
    out.family(
        "sluice_read_ahead_bytes",
        "gauge",
        "Bytes each shard has read from disk ahead of readers behind its batch cache and holds for them.",
    );
    each(out, "sluice_read_ahead_bytes", &|snapshot| {
        snapshot.read_ahead_bytes.to_string()
    });
    out.family(
        "sluice_batch_cache_budget_bytes",
        "gauge",
        "Each shard's batch-cache budget.",
    );
    each(out, "sluice_batch_cache_budget_bytes", &|snapshot| {
        snapshot.cache_budget_bytes.to_string()
    });
    out.family(
        "sluice_segment_files_open",
        "gauge",
        "Segment files each shard holds open or is opening (counted until it next makes room, so closed ones may linger in the figure).",
    );
    each(out, "sluice_segment_files_open", &|snapshot| {
        snapshot.segment_files_open.to_string()
    });
    out.family(
        "sluice_segment_files_max",
        "gauge",
        "The most segment files each shard keeps open: half the open-file limit, shared by the shards.",
    );
    each(out, "sluice_segment_files_max", &|snapshot| {
        snapshot.segment_files_max.to_string()
    });
    out.family(
        "sluice_segment_files_closed_total",
        "counter",
        "Idle segment files each shard closed to stay within its budget; each is opened again on its next use, so a fast rise means the open-file limit is too low for the partitions written.",
    );
    each(out, "sluice_segment_files_closed_total", &|snapshot| {
        snapshot.segment_files_closed_for_room.to_string()
    });
}

fn write_topics(out: &mut Writer, snapshots: &Snapshots) {
    let mut topics: Vec<(&str, u64, u64)> = Vec::new();
    {
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (_, snapshot) in snapshots {
            for (topic, traffic) in &snapshot.topics {
                let slot = *index.entry(topic.as_str()).or_insert_with(|| {
                    topics.push((topic.as_str(), 0, 0));
                    topics.len() - 1
                });
                topics[slot].1 += traffic.bytes_in;
                topics[slot].2 += traffic.bytes_out;
            }
        }
    }
    topics.sort_unstable();
    out.family(
        "sluice_topic_bytes_in_total",
        "counter",
        "Record-batch bytes produced to each topic and accepted.",
    );
    for (topic, bytes_in, _) in &topics {
        out.sample("sluice_topic_bytes_in_total", &[("topic", topic)], bytes_in);
    }
    out.family(
        "sluice_topic_bytes_out_total",
        "counter",
        "Record-batch bytes consumers fetched from each topic (replication not counted).",
    );
    for (topic, _, bytes_out) in &topics {
        out.sample(
            "sluice_topic_bytes_out_total",
            &[("topic", topic)],
            bytes_out,
        );
    }
}

fn write_partitions(out: &mut Writer, snapshots: &Snapshots) {
    let mut partitions: Vec<&super::PartitionGauges> = snapshots
        .iter()
        .flat_map(|(_, snapshot)| &snapshot.partitions)
        .collect();
    partitions.sort_unstable_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let numbers: Vec<String> = partitions
        .iter()
        .map(|partition| partition.partition.to_string())
        .collect();
    let gauge = |out: &mut Writer,
                 name: &str,
                 help: &str,
                 value: &dyn Fn(&super::PartitionGauges) -> i128| {
        out.family(name, "gauge", help);
        for (partition, number) in partitions.iter().zip(&numbers) {
            out.sample(
                name,
                &[("topic", &partition.topic), ("partition", number)],
                value(partition),
            );
        }
    };
    gauge(
        out,
        "sluice_partition_log_start_offset",
        "First offset each partition replica keeps.",
        &|partition| i128::from(partition.log_start),
    );
    gauge(
        out,
        "sluice_partition_high_watermark",
        "Each partition replica's high watermark (the end of what consumers may read).",
        &|partition| i128::from(partition.high_watermark),
    );
    gauge(
        out,
        "sluice_partition_log_end_offset",
        "The offset each partition replica's next record gets.",
        &|partition| i128::from(partition.log_end),
    );
    gauge(
        out,
        "sluice_partition_size_bytes",
        "Bytes of each partition replica's segments.",
        &|partition| i128::from(partition.size_bytes),
    );
    gauge(
        out,
        "sluice_partition_leader",
        "1 when this broker leads the partition.",
        &|partition| i128::from(partition.leader),
    );
    let under_replicated = partitions
        .iter()
        .filter(|partition| partition.under_replicated)
        .count();
    out.family(
        "sluice_under_replicated_partitions",
        "gauge",
        "Partitions this broker leads with fewer in-sync replicas than replicas.",
    );
    out.sample("sluice_under_replicated_partitions", &[], under_replicated);
    out.family(
        "sluice_offline_partitions",
        "gauge",
        "Partitions without a leader, as this broker's metadata image has them.",
    );
    if let Some(offline) = snapshots
        .iter()
        .find_map(|(_, snapshot)| snapshot.offline_partitions)
    {
        out.sample("sluice_offline_partitions", &[], offline);
    }
}

fn write_groups(out: &mut Writer, snapshots: &Snapshots) {
    // High watermarks of the partitions this broker leads: lag is what a
    // group has yet to read of what it may read.
    let mut high_watermarks: HashMap<(&str, i32), i64> = HashMap::new();
    for (_, snapshot) in snapshots {
        for partition in snapshot
            .partitions
            .iter()
            .filter(|partition| partition.leader)
        {
            high_watermarks.insert(
                (partition.topic.as_str(), partition.partition),
                partition.high_watermark,
            );
        }
    }
    let mut committed: Vec<&super::CommittedOffset> = snapshots
        .iter()
        .flat_map(|(_, snapshot)| &snapshot.committed)
        .collect();
    committed.sort_unstable_by(|a, b| {
        (&a.group, &a.topic, a.partition).cmp(&(&b.group, &b.topic, b.partition))
    });
    let numbers: Vec<String> = committed
        .iter()
        .map(|offset| offset.partition.to_string())
        .collect();
    out.family(
        "sluice_consumer_group_committed_offset",
        "gauge",
        "Each group's committed offset per partition (groups this broker coordinates).",
    );
    for (offset, number) in committed.iter().zip(&numbers) {
        out.sample(
            "sluice_consumer_group_committed_offset",
            &[
                ("group", &offset.group),
                ("topic", &offset.topic),
                ("partition", number),
            ],
            offset.offset,
        );
    }
    out.family(
        "sluice_consumer_group_lag",
        "gauge",
        "High watermark minus committed offset, for partitions this broker leads.",
    );
    for (offset, number) in committed.iter().zip(&numbers) {
        let key = (offset.topic.as_str(), offset.partition);
        if let Some(high_watermark) = high_watermarks.get(&key) {
            out.sample(
                "sluice_consumer_group_lag",
                &[
                    ("group", &offset.group),
                    ("topic", &offset.topic),
                    ("partition", number),
                ],
                (high_watermark - offset.offset).max(0),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{PartitionGauges, TopicTraffic};
    use sluice_engine::ShardId;
    use std::time::Duration;

    /// Every `sluice_...` name in `text`.
    fn names_in(text: &str) -> Vec<&str> {
        let mut names = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("sluice_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            // The prefix alone is how the README states the scheme.
            if end > "sluice_".len() {
                names.push(&tail[..end]);
            }
            rest = &tail[end..];
        }
        names
    }

    #[test]
    fn the_readme_and_the_dashboard_name_the_metrics_there_are() {
        let process = ProcessFigures {
            resident_bytes: Some(1),
            allocated_bytes: Some(1),
            allocator_resident_bytes: Some(1),
            allocations: Some(1),
            ..ProcessFigures::default()
        };
        let text = render(&Metrics::default(), &process, Instant::now());
        let families: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|line| line.split(' ').next())
            .collect();
        let readme = include_str!("../../../README.md");
        let dashboard = include_str!("../../../docs/grafana-dashboard.json");
        for family in &families {
            assert!(
                names_in(readme).contains(family),
                "{family} is not in the README"
            );
        }
        for name in names_in(readme).into_iter().chain(names_in(dashboard)) {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|family| families.contains(family))
                .unwrap_or(name);
            assert!(families.contains(&family), "{name} is not a metric");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        escape_into(&mut out, "a\"b\\c\nd");
        assert_eq!(out, "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn histograms_are_cumulative_and_shards_summed() {
        let metrics = Metrics::default();
        for shard in 0..2 {
            let shard = metrics.register(ShardId(shard));
            shard.request_started(0);
            shard.request_finished(0, Duration::from_micros(50));
            shard.request_started(0);
            shard.request_finished(0, Duration::from_millis(3));
            shard.request_failed(0);
            let snapshot = ShardSnapshot {
                made: Some(Instant::now()),
                topics: vec![(
                    "orders".to_string(),
                    TopicTraffic {
                        bytes_in: 10,
                        bytes_out: 1,
                    },
                )],
                partitions: vec![PartitionGauges {
                    topic: "orders".to_string(),
                    partition: i32::from(shard.shard.0),
                    log_end: 5,
                    high_watermark: 5,
                    leader: true,
                    ..PartitionGauges::default()
                }],
                reads_from_disk: 3,
                reads_ahead: 9,
                read_ahead_bytes: 4096,
                segment_files_closed_for_room: 12,
                ..ShardSnapshot::default()
            };
            shard.publish(snapshot);
        }
        let text = render(&metrics, &ProcessFigures::default(), Instant::now());
        for line in [
            "sluice_requests_total{api=\"Produce\"} 4",
            "sluice_request_errors_total{api=\"Produce\"} 2",
            "sluice_request_duration_seconds_bucket{api=\"Produce\",le=\"0.0001\"} 2",
            "sluice_request_duration_seconds_bucket{api=\"Produce\",le=\"0.0025\"} 2",
            "sluice_request_duration_seconds_bucket{api=\"Produce\",le=\"0.005\"} 4",
            "sluice_request_duration_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 4",
            "sluice_request_duration_seconds_count{api=\"Produce\"} 4",
            "sluice_topic_bytes_in_total{topic=\"orders\"} 20",
            "sluice_partition_log_end_offset{topic=\"orders\",partition=\"1\"} 5",
            "sluice_log_reads_total{shard=\"1\",source=\"disk\"} 3",
            "sluice_log_reads_total{shard=\"1\",source=\"read_ahead\"} 9",
            "sluice_read_ahead_bytes{shard=\"0\"} 4096",
            "sluice_segment_files_closed_total{shard=\"1\"} 12",
            "sluice_ready 0",
        ] {
            assert!(
                text.lines().any(|sample| sample == line),
                "{line} missing from\n{text}"
            );
        }
        assert!(
            !text.contains("api=\"Fetch\""),
            "an API never called is left out"
        );
    }
}
