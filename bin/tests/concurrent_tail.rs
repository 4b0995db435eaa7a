//! Concurrent producers and tailing consumers agree on one log: three
//! librdkafka producers (different codecs and acks) write to the same six
//! partitions while two consumers tail them from the beginning and a third
//! starts late (so it reads old data from disk past a tiny batch cache while
//! new data arrives). Every consumer sees every message exactly once, at the
//! position the broker acknowledged, byte-equal, in per-key order.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::Offset;

use common::{
    consume, now_ms, wait_until, Record, Rng, TestBroker, TrackedProducer, CLIENT_TIMEOUT,
};

const TOPIC: &str = "live";
const PARTITIONS: i32 = 6;
const MESSAGES_PER_PRODUCER: usize = 30_000;
/// (compression.type, acks, enable.idempotence)
const PRODUCERS: [(&str, &str, &str); 3] = [
    ("zstd", "all", "true"),
    ("none", "1", "false"),
    ("lz4", "all", "false"),
];
const KEYS_PER_PRODUCER: usize = 40;

fn message(producer: usize, index: usize, base_timestamp: i64) -> Record {
    let mut rng = Rng::new(((producer as u64) << 40) | index as u64);
    let len = rng.below(400) as usize;
    Record {
        partition: -1,
        offset: -1,
        key: Some(format!("p{producer}-k{}", index % KEYS_PER_PRODUCER).into_bytes()),
        value: Some(rng.bytes(len)),
        headers: vec![
            ("producer".into(), Some(producer.to_string().into_bytes())),
            ("index".into(), Some(index.to_string().into_bytes())),
        ],
        timestamp: Some(base_timestamp + index as i64),
    }
}

fn number(record: &Record, name: &str) -> usize {
    record
        .headers
        .iter()
        .find(|(key, _)| key == name)
        .and_then(|(_, value)| value.as_deref())
        .and_then(|bytes| std::str::from_utf8(bytes).ok()?.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "record {}/{} lacks header {name}",
                record.partition, record.offset
            )
        })
}

/// Checks one consumer's view against what the producers were told.
fn check_view(
    name: &str,
    records: &[Record],
    acknowledged: &[Vec<(i32, i64)>],
    base_timestamp: i64,
) {
    let total = PRODUCERS.len() * MESSAGES_PER_PRODUCER;
    assert_eq!(records.len(), total, "{name}: messages read");
    let mut per_partition: BTreeMap<i32, Vec<&Record>> = BTreeMap::new();
    for record in records {
        per_partition
            .entry(record.partition)
            .or_default()
            .push(record);
    }
    let mut seen = HashSet::with_capacity(total);
    for (partition, records) in &per_partition {
        let offsets: Vec<i64> = records.iter().map(|record| record.offset).collect();
        let want: Vec<i64> = (0..records.len() as i64).collect();
        assert!(
            offsets == want,
            "{name}: partition {partition} offsets are not 0..{} in order",
            records.len()
        );
        let mut last: BTreeMap<&[u8], usize> = BTreeMap::new();
        for record in records {
            let (producer, index) = (number(record, "producer"), number(record, "index"));
            assert!(
                seen.insert((producer, index)),
                "{name}: producer {producer} message {index} read twice"
            );
            let mut want = message(producer, index, base_timestamp);
            want.partition = record.partition;
            want.offset = record.offset;
            assert_eq!(
                *record, &want,
                "{name}: producer {producer} message {index}"
            );
            let key = record.key.as_deref().expect("keyed");
            if let Some(previous) = last.insert(key, index) {
                assert!(
                    previous < index,
                    "{name}: key order broken at {partition}/{}",
                    record.offset
                );
            }
            let acked = acknowledged[producer][index];
            assert_eq!(
                acked,
                (record.partition, record.offset),
                "{name}: acknowledged position of {producer}/{index}"
            );
        }
    }
}

#[test]
fn concurrent_producers_and_tailing_consumers_agree() {
    let broker = TestBroker::start_with(&["--cache-bytes-per-shard", "1048576"]);
    broker.create_topic(TOPIC, PARTITIONS);
    let base_timestamp = now_ms() - 60_000;
    let total = PRODUCERS.len() * MESSAGES_PER_PRODUCER;
    let all: Vec<i32> = (0..PARTITIONS).collect();
    let started = Instant::now();

    // Tailing consumers, assigned before anything is produced.
    let tailers: Vec<_> = (0..2)
        .map(|n| {
            let consumer = broker.consumer(&[("fetch.wait.max.ms", "100")]);
            let all = all.clone();
            thread::spawn(move || {
                let records = consume(
                    &consumer,
                    TOPIC,
                    &all,
                    Offset::Beginning,
                    2 * CLIENT_TIMEOUT,
                    |records| records.len() >= total,
                );
                (format!("tailer {n}"), records)
            })
        })
        .collect();

    let sent_count = Arc::new(AtomicUsize::new(0));
    let producers: Vec<_> = PRODUCERS
        .iter()
        .enumerate()
        .map(|(id, (codec, acks, idempotent))| {
            let mut producer = TrackedProducer::new(
                &broker,
                TOPIC,
                &[
                    ("compression.type", codec),
                    ("acks", acks),
                    ("enable.idempotence", idempotent),
                ],
            );
            let sent_count = Arc::clone(&sent_count);
            thread::spawn(move || {
                for index in 0..MESSAGES_PER_PRODUCER {
                    producer.send(&message(id, index, base_timestamp));
                    if index % 1000 == 999 {
                        sent_count.fetch_add(1000, Ordering::Relaxed);
                        // Pace the producers so the stream lasts a while.
                        thread::sleep(Duration::from_millis(20));
                    }
                }
                producer.flush();
                producer
                    .reports()
                    .into_iter()
                    .enumerate()
                    .map(|(index, report)| match report {
                        Some(Ok(position)) => position,
                        other => panic!("producer {id} message {index}: {other:?}"),
                    })
                    .collect::<Vec<(i32, i64)>>()
            })
        })
        .collect();

    // A late consumer: from the beginning once a third is written, so it
    // reads evicted (on-disk) data while producers keep appending.
    wait_until("a third of the messages to be sent", CLIENT_TIMEOUT, || {
        sent_count.load(Ordering::Relaxed) >= total / 3
    });
    let late = {
        let consumer = broker.consumer(&[]);
        let all = all.clone();
        thread::spawn(move || {
            let records = consume(
                &consumer,
                TOPIC,
                &all,
                Offset::Beginning,
                2 * CLIENT_TIMEOUT,
                |records| records.len() >= total,
            );
            ("late reader".to_string(), records)
        })
    };

    let acknowledged: Vec<Vec<(i32, i64)>> = producers
        .into_iter()
        .map(|producer| producer.join().expect("producer thread"))
        .collect();
    eprintln!(
        "{total} messages produced by {} producers in {:?}",
        PRODUCERS.len(),
        started.elapsed()
    );
    let mut views = Vec::new();
    for reader in tailers.into_iter().chain([late]) {
        views.push(reader.join().expect("consumer thread"));
    }
    eprintln!("all consumers done after {:?}", started.elapsed());
    for (name, records) in &views {
        check_view(name, records, &acknowledged, base_timestamp);
    }
}
