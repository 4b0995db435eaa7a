//! Everything librdkafka produces comes back byte-equal, in order, at the
//! offsets it was acknowledged with: every codec (none, gzip, snappy, lz4,
//! zstd) × acks 0 / 1 / all × idempotence (with acks=all), 200,000 keyed
//! messages with headers, null values and explicit timestamps into one
//! 8-partition topic, read back with `assign()` from the beginning.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use common::{now_ms, produce_all, read_all, Record, Rng, TestBroker};

const TOPIC: &str = "matrix";
const PARTITIONS: i32 = 8;
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
/// (acks, enable.idempotence)
const MODES: [(&str, bool); 4] = [("0", false), ("1", false), ("all", false), ("all", true)];
const MESSAGES_PER_RUN: usize = 10_000;
/// Keys per run: each key's messages must come back in the order sent.
const KEYS_PER_RUN: usize = 50;
const VALUE_BYTES_MAX: u64 = 200;
const LARGE_MESSAGES: usize = 20;
/// Under librdkafka's 1,000,000-byte `message.max.bytes` default with the
/// record and batch overhead.
const LARGE_VALUE_BYTES: usize = 990_000;

/// The messages of run `run`, regenerated identically on every call.
fn messages(run: usize, base_timestamp: i64) -> Vec<Record> {
    let mut rng = Rng::new(run as u64 + 1);
    (0..MESSAGES_PER_RUN)
        .map(|index| {
            let value_len = rng.below(VALUE_BYTES_MAX) as usize;
            // Every 101st message is a tombstone (null value).
            let value = (index % 101 != 100).then(|| rng.bytes(value_len));
            let mut headers = vec![
                ("run".to_string(), Some(run.to_string().into_bytes())),
                ("index".to_string(), Some(index.to_string().into_bytes())),
            ];
            if index % 7 == 0 {
                headers.push(("null-header".to_string(), None));
            }
            if index % 3 == 0 {
                let len = rng.below(12) as usize;
                headers.push(("bytes".to_string(), Some(rng.bytes(len))));
            }
            Record {
                partition: -1,
                offset: -1,
                key: Some(format!("run{run}-key{}", index % KEYS_PER_RUN).into_bytes()),
                value,
                headers,
                timestamp: Some(base_timestamp + index as i64),
            }
        })
        .collect()
}

fn header<'a>(record: &'a Record, name: &str) -> &'a [u8] {
    record
        .headers
        .iter()
        .find(|(key, _)| key == name)
        .and_then(|(_, value)| value.as_deref())
        .unwrap_or_else(|| {
            panic!(
                "record at {}/{} lacks header {name}",
                record.partition, record.offset
            )
        })
}

fn number(bytes: &[u8]) -> usize {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .expect("a decimal header")
}

#[test]
fn every_codec_and_ack_mode_round_trips_in_order() {
    // The smallest batch cache: reading back ~20 MB must come from disk.
    let broker = TestBroker::start_with(&["--cache-bytes-per-shard", "1048576"]);
    broker.create_topic(TOPIC, PARTITIONS);
    let base_timestamp = now_ms() - 3_600_000;

    // run -> the acknowledged (partition, offset) of each message
    let mut acknowledged: Vec<Vec<(i32, i64)>> = Vec::new();
    let mut runs = Vec::new();
    for codec in CODECS {
        for (acks, idempotent) in MODES {
            let run = runs.len();
            let started = Instant::now();
            let settings = [
                ("compression.type", codec),
                ("acks", acks),
                (
                    "enable.idempotence",
                    if idempotent { "true" } else { "false" },
                ),
                ("batch.num.messages", "1000"),
            ];
            let positions = produce_all(&broker, TOPIC, &settings, &messages(run, base_timestamp));
            eprintln!(
                "run {run}: {MESSAGES_PER_RUN} messages, codec={codec} acks={acks} idempotent={idempotent} in {:?}",
                started.elapsed()
            );
            if acks != "0" {
                for (index, (partition, offset)) in positions.iter().enumerate() {
                    assert!(
                        (0..PARTITIONS).contains(partition) && *offset >= 0,
                        "run {run} message {index} acknowledged at {partition}/{offset}"
                    );
                }
            }
            acknowledged.push(positions);
            runs.push((codec, acks, idempotent));
        }
    }
    let total = runs.len() * MESSAGES_PER_RUN;
    assert!(total >= 200_000);

    // Near-limit messages (frames of ~1 MiB, read in many socket reads) in
    // their own topic: they come back byte-equal too.
    broker.create_topic("large", 2);
    let mut rng = Rng::new(99);
    let large: Vec<Record> = (0..LARGE_MESSAGES)
        .map(|index| Record {
            partition: (index % 2) as i32,
            offset: -1,
            key: Some(format!("large{index}").into_bytes()),
            value: Some(rng.bytes(LARGE_VALUE_BYTES)),
            headers: vec![("index".into(), Some(index.to_string().into_bytes()))],
            timestamp: Some(base_timestamp + index as i64),
        })
        .collect();
    let positions = produce_all(
        &broker,
        "large",
        &[("acks", "all"), ("linger.ms", "0")],
        &large,
    );
    let read = read_all(&broker, "large", 2);
    for (index, (want, (partition, offset))) in large.iter().zip(positions).enumerate() {
        let got = &read[&partition][offset as usize];
        assert_eq!(
            (&got.key, &got.value, &got.headers),
            (&want.key, &want.value, &want.headers),
            "large message {index}"
        );
    }

    let started = Instant::now();
    // read_all checks that every partition's offsets are contiguous from 0.
    let read = read_all(&broker, TOPIC, PARTITIONS);
    eprintln!("read {total} messages back in {:?}", started.elapsed());
    let count: usize = read.values().map(Vec::len).sum();
    assert_eq!(
        count, total,
        "messages read back (acks=0 on loopback must lose nothing either)"
    );
    for (partition, records) in &read {
        assert_eq!(
            records.first().map(|record| record.offset).unwrap_or(0),
            0,
            "partition {partition} starts at 0"
        );
    }

    // Index what was read by (run, index); nothing may be read twice.
    let mut found: HashMap<(usize, usize), &Record> = HashMap::with_capacity(total);
    for record in read.values().flatten() {
        let key = (
            number(header(record, "run")),
            number(header(record, "index")),
        );
        assert!(
            found.insert(key, record).is_none(),
            "message {key:?} read twice"
        );
    }

    // Per key: one partition, and indexes strictly increasing in offset order.
    let mut last_index: HashMap<&[u8], (i32, usize)> = HashMap::new();
    for (partition, records) in &read {
        for record in records {
            let key = record.key.as_deref().expect("every message has a key");
            let index = number(header(record, "index"));
            if let Some((key_partition, previous)) = last_index.insert(key, (*partition, index)) {
                assert_eq!(
                    key_partition,
                    *partition,
                    "key {:?} in two partitions",
                    String::from_utf8_lossy(key)
                );
                assert!(
                    previous < index,
                    "key {:?}: message {index} at offset {} comes after message {previous}",
                    String::from_utf8_lossy(key),
                    record.offset
                );
            }
        }
    }

    // Byte-equal keys, values, headers and timestamps, at the acknowledged
    // position when the broker acknowledged one.
    for (run, (codec, acks, idempotent)) in runs.iter().enumerate() {
        let mut per_partition: BTreeMap<i32, usize> = BTreeMap::new();
        for (index, expected) in messages(run, base_timestamp).into_iter().enumerate() {
            let got = found
                .get(&(run, index))
                .unwrap_or_else(|| panic!("run {run} ({codec}, acks={acks}, idempotent={idempotent}): message {index} missing"));
            let context = format!(
                "run {run} ({codec}, acks={acks}, idempotent={idempotent}) message {index}"
            );
            assert_eq!(got.key, expected.key, "{context}: key");
            assert_eq!(got.value, expected.value, "{context}: value");
            assert_eq!(got.headers, expected.headers, "{context}: headers");
            assert_eq!(got.timestamp, expected.timestamp, "{context}: timestamp");
            if *acks != "0" {
                let (partition, offset) = acknowledged[run][index];
                assert_eq!(
                    (got.partition, got.offset),
                    (partition, offset),
                    "{context}: acknowledged position"
                );
            }
            *per_partition.entry(got.partition).or_default() += 1;
        }
        // 50 keys over 8 partitions: the keyed partitioner spreads them.
        assert!(
            per_partition.len() >= 4,
            "run {run}: messages landed in only {per_partition:?}"
        );
    }
}
