//! Exactly-once consume-transform-produce under crashes of the processor.
//!
//! The processor (this test binary re-run as a child process with
//! `TXN_PROCESSOR_BOOTSTRAP` set) reads the input topic read_committed from
//! its group's committed offsets, and for every few records produces their
//! results and commits the input offsets in one transaction
//! (`send_offsets_to_transaction`). The test kills it with kill -9 at
//! random moments, again and again (`TXN_KILL_CYCLES`, default 20), then
//! lets one run finish. The output, read read_committed, must hold every
//! input record's result exactly once.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Rng, TestBroker, CLIENT_TIMEOUT};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const INPUT: &str = "eos-input";
const OUTPUT: &str = "eos-output";
const PARTITIONS: i32 = 2;
const GROUP: &str = "eos-group";
const TXN_ID: &str = "eos-processor";
const RECORDS: usize = 1500;
/// Input records per transaction, at most.
const BATCH: usize = 7;

/// The processor's main loop; runs forever (the test kills it).
fn run_processor(bootstrap: &str) {
    let mut config = rdkafka::config::ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("log_level", "3");
    let mut producer_config = config.clone();
    producer_config.set("transactional.id", TXN_ID);
    let producer: ThreadedProducer<DefaultProducerContext> =
        producer_config.create().expect("producer");
    producer
        .init_transactions(CLIENT_TIMEOUT)
        .expect("init_transactions");
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", GROUP)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(INPUT, partition, Offset::Stored)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    loop {
        let mut batch = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(50);
        while batch.len() < BATCH && Instant::now() < deadline {
            if let Some(message) = consumer.poll(Duration::from_millis(10)) {
                let message = message.expect("consumer error");
                let value = message
                    .payload_view::<str>()
                    .and_then(Result::ok)
                    .unwrap_or("")
                    .to_string();
                batch.push((message.partition(), message.offset(), value));
            }
        }
        if batch.is_empty() {
            continue;
        }
        producer.begin_transaction().expect("begin_transaction");
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for (partition, offset, value) in &batch {
            producer
                .send(
                    BaseRecord::<(), str>::to(OUTPUT)
                        .partition(*partition)
                        .payload(&format!("out-{value}")),
                )
                .map_err(|(error, _)| error)
                .expect("send");
            next.insert(*partition, offset + 1);
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, offset) in next {
            offsets
                .add_partition_offset(INPUT, partition, Offset::Offset(offset))
                .expect("offset");
        }
        let metadata = consumer.group_metadata().expect("group metadata");
        producer
            .send_offsets_to_transaction(&offsets, &metadata, CLIENT_TIMEOUT)
            .expect("send_offsets_to_transaction");
        producer
            .commit_transaction(CLIENT_TIMEOUT)
            .expect("commit_transaction");
    }
}

/// The child entry point: a no-op unless this binary runs as a processor.
#[test]
fn processor_child() {
    if let Ok(bootstrap) = std::env::var("TXN_PROCESSOR_BOOTSTRAP") {
        run_processor(&bootstrap);
    }
}

fn spawn_processor(broker: &TestBroker) -> Child {
    Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "processor_child",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("TXN_PROCESSOR_BOOTSTRAP", broker.bootstrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the processor")
}

fn kill(child: &mut Child) {
    // SAFETY: kill(2) on the pid of a child this test started and has not
    // reaped yet.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// Reads the whole output read_committed: values by partition.
fn read_output(broker: &TestBroker) -> (usize, BTreeMap<String, usize>) {
    let consumer: BaseConsumer = broker.consumer(&[("isolation.level", "read_committed")]);
    let mut ends = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let (_, high) = consumer
            .fetch_watermarks(OUTPUT, partition, CLIENT_TIMEOUT)
            .expect("watermarks");
        ends.insert(partition, high);
    }
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(OUTPUT, partition, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    loop {
        let positions = consumer.position().expect("position");
        let done = (0..PARTITIONS).all(|partition| {
            let end = ends.get(&partition).copied().unwrap_or(0);
            match positions
                .find_partition(OUTPUT, partition)
                .map(|entry| entry.offset())
            {
                Some(Offset::Offset(position)) => position >= end,
                _ => end == 0,
            }
        });
        if done {
            return (total, counts);
        }
        assert!(Instant::now() < deadline, "reading the output timed out");
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("consumer error");
            let value = message
                .payload_view::<str>()
                .and_then(Result::ok)
                .unwrap_or("")
                .to_string();
            *counts.entry(value).or_default() += 1;
            total += 1;
        }
    }
}

#[test]
fn consume_transform_produce_survives_repeated_kill_9() {
    if std::env::var("TXN_PROCESSOR_BOOTSTRAP").is_ok() {
        return;
    }
    let cycles: usize = std::env::var("TXN_KILL_CYCLES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20);
    let broker = TestBroker::start();
    broker.create_topic(INPUT, PARTITIONS);
    broker.create_topic(OUTPUT, PARTITIONS);
    let inputs: Vec<(i32, String)> = (0..RECORDS)
        .map(|index| ((index % PARTITIONS as usize) as i32, format!("in-{index}")))
        .collect();
    produce_input(&broker, &inputs);

    let mut rng = Rng::new(0x05ee_de05);
    for _ in 0..cycles {
        let mut child = spawn_processor(&broker);
        std::thread::sleep(Duration::from_millis(200 + rng.below(1300)));
        kill(&mut child);
    }
    // A last run that is left to finish.
    let mut child = spawn_processor(&broker);
    let deadline = Instant::now() + Duration::from_secs(180);
    let outcome = loop {
        let (total, counts) = read_output(&broker);
        if counts.len() >= RECORDS || Instant::now() > deadline {
            break (total, counts);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    kill(&mut child);
    let (total, counts) = outcome;
    let duplicated: Vec<(&String, &usize)> = counts
        .iter()
        .filter(|(_, count)| **count > 1)
        .take(10)
        .collect();
    assert!(
        duplicated.is_empty(),
        "results seen more than once: {duplicated:?}"
    );
    for (_, value) in &inputs {
        let result = format!("out-{value}");
        assert_eq!(counts.get(&result), Some(&1), "{result} exactly once");
    }
    assert_eq!(total, RECORDS, "nothing but the results is committed");
}

/// Writes the input with an idempotent producer.
fn produce_input(broker: &TestBroker, inputs: &[(i32, String)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = broker
        .client_config()
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for (partition, value) in inputs {
        producer
            .send(
                BaseRecord::<(), str>::to(INPUT)
                    .partition(*partition)
                    .payload(value.as_str()),
            )
            .map_err(|(error, _)| error)
            .expect("send");
    }
    producer.flush(CLIENT_TIMEOUT).expect("flush");
}
