//! Log compaction against the real broker and librdkafka: a compacted
//! topic read from the beginning after the cleaner ran rebuilds the same
//! table (latest value per key, deleted keys gone) as the records produced
//! and as a reader that read before, also after a restart; records without
//! a key are refused with INVALID_RECORD.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{create_topic, wait_until, Record, Rng, Stop, TestBroker, TrackedProducer};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// Distinct keys: few against the records written, so most are superseded.
const KEYS: u64 = 300;
/// Records per round of writing.
const RECORDS_PER_ROUND: usize = 6_000;
const VALUE_BYTES_MAX: usize = 200;
/// One in this many records is a tombstone.
const TOMBSTONE_ONE_IN: u64 = 10;
const WAIT: Duration = Duration::from_secs(60);
/// The topic's `segment.bytes`: small, so that the rounds roll many.
const SEGMENT_BYTES: u64 = 16384;

type Table = BTreeMap<Vec<u8>, Vec<u8>>;

/// Merging is on by default, so the test checks the default too.
fn broker() -> TestBroker {
    TestBroker::start_with(&["--log-cleaner-backoff-ms", "100"])
}

fn compacted_topic(broker: &TestBroker, topic: &str) {
    create_topic(
        &broker.admin(),
        topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", &SEGMENT_BYTES.to_string()),
            ("min.cleanable.dirty.ratio", "0.01"),
            // Tombstones go on the pass after the one that first cleans them.
            ("delete.retention.ms", "0"),
        ],
    );
}

/// Writes a round of keyed records (some tombstones) and applies them to
/// `table` as a reader would.
fn produce_round(
    broker: &TestBroker,
    topic: &str,
    compression: &str,
    rng: &mut Rng,
    table: &mut Table,
) {
    let producer: BaseProducer = broker
        .client_config()
        .set("compression.type", compression)
        .set("linger.ms", "5")
        // Batches well under a segment: segments hold many, and the
        // active one (never cleaned) little.
        .set("batch.size", "4096")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for _ in 0..RECORDS_PER_ROUND {
        let key = format!("key-{:04}", rng.below(KEYS)).into_bytes();
        let value = if rng.below(TOMBSTONE_ONE_IN) == 0 {
            None
        } else {
            let len = 1 + rng.below(VALUE_BYTES_MAX as u64) as usize;
            Some(rng.bytes(len))
        };
        let mut record = BaseRecord::<Vec<u8>, Vec<u8>>::to(topic).key(&key);
        if let Some(value) = &value {
            record = record.payload(value);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((error, _)) => panic!("send failed: {error}"),
            }
        }
        match value {
            Some(value) => table.insert(key, value),
            None => table.remove(&key),
        };
    }
    producer.flush(WAIT).expect("flush");
}

/// Reads the partition from the beginning to its end; returns the table it
/// builds and how many records it read.
fn restore(broker: &TestBroker, topic: &str) -> (Table, usize) {
    let consumer: BaseConsumer = broker.consumer(&[("enable.partition.eof", "true")]);
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, WAIT)
        .expect("watermarks");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let mut table = Table::new();
    let mut read = 0;
    let mut last_offset = -1;
    let deadline = std::time::Instant::now() + WAIT;
    while last_offset + 1 < high {
        assert!(
            std::time::Instant::now() < deadline,
            "restore stuck at {last_offset} of {high}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => {
                let position = consumer
                    .position()
                    .ok()
                    .and_then(|list| list.find_partition(topic, 0).map(|p| p.offset()));
                if position == Some(Offset::Offset(high)) {
                    break;
                }
            }
            Some(Err(error)) => panic!("consumer error: {error}"),
            Some(Ok(message)) => {
                assert!(
                    message.offset() > last_offset,
                    "offset {} after {last_offset}",
                    message.offset()
                );
                last_offset = message.offset();
                read += 1;
                let key = message.key().expect("every record has a key").to_vec();
                match message.payload() {
                    Some(value) => table.insert(key, value.to_vec()),
                    None => table.remove(&key),
                };
            }
        }
    }
    (table, read)
}

/// The partition's segment files: how many, and their bytes.
fn segments(data_dir: &Path, topic: &str) -> (u64, u64) {
    let (mut count, mut total) = (0, 0);
    let mut stack = vec![data_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".log")
                && path.to_string_lossy().contains(&format!("{topic}-0"))
            {
                count += 1;
                total += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    (count, total)
}

/// Segments the cleaner's passes merged into others, from its log lines.
fn merged_segments(broker: &TestBroker) -> usize {
    broker
        .log()
        .lines()
        .filter(|line| line.contains("log cleaned"))
        .filter_map(|line| line.split("merged=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<usize>().ok())
        .sum()
}

fn cleaned_passes(broker: &TestBroker) -> usize {
    broker.log().matches("log cleaned").count()
}

#[test]
fn a_compacted_topic_restores_the_same_table() {
    let mut broker = broker();
    let topic = "changelog";
    compacted_topic(&broker, topic);
    let mut rng = Rng::new(0x5eed_c0de);
    let mut table = Table::new();
    let mut produced = 0;
    for compression in ["lz4", "none", "zstd", "gzip", "snappy"] {
        produce_round(&broker, topic, compression, &mut rng, &mut table);
        produced += RECORDS_PER_ROUND;
    }
    let (early, _) = restore(&broker, topic);
    assert_eq!(early, table, "a reader rebuilds the table produced");
    // A last round rolls the segments holding the rest; a pass after it
    // cleans them (and drops the tombstones earlier passes cleaned).
    let before_passes = cleaned_passes(&broker);
    produce_round(&broker, topic, "lz4", &mut rng, &mut table);
    produced += RECORDS_PER_ROUND;
    wait_until("a cleaning pass after the last round", WAIT, || {
        cleaned_passes(&broker) > before_passes
    });
    let (restored, read) = restore(&broker, topic);
    assert_eq!(restored.len(), table.len(), "keys after compaction");
    assert_eq!(restored, table, "the table after compaction");
    assert!(
        read < produced / 3,
        "compaction left {read} of {produced} records"
    );
    // Random values do not compress: what is stored is about what was
    // sent, and after compaction a small part of it.
    let (_, compacted) = segments(&broker.data_dir(), topic);
    let sent = produced as u64 * (VALUE_BYTES_MAX as u64 / 2);
    assert!(
        compacted < sent / 4,
        "segments hold {compacted} bytes of about {sent} sent"
    );
    // Cleaned segments are merged, as Kafka's cleaner merges them, so
    // the segment count follows what the log keeps, not how many segments
    // were ever rolled. Once no two neighbours fit one segment, any two
    // neighbours hold more than `segment.bytes`: fewer than 2 x bytes /
    // `segment.bytes` + 2 segments, plus the active one.
    let merged_enough = || {
        let (files, bytes) = segments(&broker.data_dir(), topic);
        files <= 2 * bytes / SEGMENT_BYTES + 3
    };
    wait_until("cleaned segments merged", WAIT, merged_enough);
    let merged = merged_segments(&broker);
    let (files, _) = segments(&broker.data_dir(), topic);
    eprintln!(
        "{produced} records produced (~{sent} value bytes), {read} read after compaction, {} keys; segments {compacted} bytes in {files} files, {merged} merged away",
        table.len()
    );
    assert!(merged > 0, "no pass merged cleaned segments");
    // The compacted segments, their rebuilt indexes and the cleaner
    // checkpoint survive a restart, clean or not.
    for how in [Stop::Term, Stop::Kill] {
        broker.restart(how);
        let (after, _) = restore(&broker, topic);
        assert_eq!(after, table, "the table after a restart ({how:?})");
    }
}

#[test]
fn a_record_without_a_key_is_refused_by_a_compacted_topic() {
    let broker = broker();
    let topic = "keyed-only";
    compacted_topic(&broker, topic);
    let mut producer = TrackedProducer::new(&broker, topic, &[("message.send.max.retries", "0")]);
    let keyless = Record::with_value(0, b"no key".to_vec());
    let mut keyed = Record::with_value(0, b"value".to_vec());
    keyed.key = Some(b"key".to_vec());
    producer.send(&keyless);
    producer.flush();
    producer.send(&keyed);
    producer.flush();
    let reports = producer.reports();
    match &reports[0] {
        Some(Err(error)) => assert!(
            error.contains("InvalidRecord"),
            "error for a keyless record: {error}"
        ),
        other => panic!("a keyless record was not refused: {other:?}"),
    }
    assert!(
        matches!(reports[1], Some(Ok((0, 0)))),
        "a keyed record: {:?}",
        reports[1]
    );
    let consumer: BaseConsumer = broker.consumer(&[]);
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, WAIT)
        .expect("watermarks");
    assert_eq!((low, high), (0, 1), "only the keyed record is stored");
}
