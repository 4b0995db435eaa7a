//! The coordinators' logs are bounded by the log cleaner: with small
//! segments, enough transactions and offset commits make it compact
//! `__transaction_state` and `__consumer_offsets`; after a kill -9 and a
//! restart every id's state and every committed offset is what it was, a
//! new InitProducerId bumps each epoch by one, and a transaction left open
//! is aborted once its timeout passes.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{
    raw_connect, receive_response, send_request, wait_until, Stop, TestBroker, CLIENT_TIMEOUT,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AlterConfig, ResourceSpecifier};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

type TxnProducer = ThreadedProducer<DefaultProducerContext>;

const TOPIC: &str = "compacted-data";
const STATE_TOPIC: &str = "__transaction_state";
const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The internal topics' segments in this test: small, so that a few hundred
/// records fill sealed segments the cleaner takes.
const SEGMENT_BYTES: &str = "8192";
/// Offset commits of one partition by one group: all but the last are
/// superseded.
const COMMITS: i64 = 300;
const GROUP: &str = "compacted-group";
/// Committing producers and their transactions each: every transaction
/// writes at least three state records (Ongoing, PrepareCommit,
/// CompleteCommit) of the producer's one key.
const PRODUCERS: usize = 3;
const TRANSACTIONS: usize = 40;
const NONE: i16 = 0;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const CONCURRENT_TRANSACTIONS: i16 = 51;

fn producer(broker: &TestBroker, id: &str, extra: &[(&str, &str)]) -> TxnProducer {
    let mut config = broker.client_config();
    config.set("transactional.id", id);
    for (key, value) in extra {
        config.set(*key, *value);
    }
    let producer: TxnProducer = config.create().expect("creating the producer");
    producer
        .init_transactions(CLIENT_TIMEOUT)
        .expect("init_transactions");
    producer
}

fn send(producer: &TxnProducer, partition: i32, value: &str) {
    producer
        .send(
            BaseRecord::<(), str>::to(TOPIC)
                .partition(partition)
                .payload(value),
        )
        .map_err(|(error, _)| error)
        .expect("queueing a record");
}

/// An id's state as `sluice txn describe --json` prints it.
#[derive(Clone, Debug, PartialEq)]
struct Described {
    state: String,
    producer_id: i64,
    producer_epoch: i64,
    partitions: Vec<String>,
}

/// `sluice txn describe ID --json` against the broker.
fn run_describe(broker: &TestBroker, id: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "txn",
            "describe",
            id,
            "--json",
            "--bootstrap",
            &broker.bootstrap(),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running the sluice CLI")
}

fn describe(broker: &TestBroker, id: &str) -> Described {
    let output = run_describe(broker, id);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "describe {id}: {text}");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    Described {
        state: json["state"].as_str().unwrap_or("").to_string(),
        producer_id: json["producer_id"].as_i64().unwrap_or(-2),
        producer_epoch: json["producer_epoch"].as_i64().unwrap_or(-2),
        partitions: json["partitions"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|entry| entry.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// A plain InitProducerId v4 for `id` (no KIP-360 pair: a new producer),
/// retried while the coordinator loads or is busy. Returns (id, epoch).
fn init_producer_id(broker: &TestBroker, id: &str) -> (i64, i16) {
    let mut stream = raw_connect(broker.address());
    let mut find = FindCoordinatorRequest::default();
    find.key = StrBytes::from_string(id.to_string());
    find.key_type = 1;
    send_request(&mut stream, ApiKey::FindCoordinator, 3, 1, &find);
    let found: FindCoordinatorResponse =
        receive_response(&mut stream, ApiKey::FindCoordinator, 3, 1);
    assert_eq!(found.error_code, NONE, "FindCoordinator");
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut correlation = 2;
    loop {
        let mut request = InitProducerIdRequest::default();
        request.transactional_id = Some(TransactionalId(StrBytes::from_string(id.to_string())));
        request.transaction_timeout_ms = 60_000;
        request.producer_id = ProducerId(-1);
        request.producer_epoch = -1;
        send_request(
            &mut stream,
            ApiKey::InitProducerId,
            4,
            correlation,
            &request,
        );
        let response: InitProducerIdResponse =
            receive_response(&mut stream, ApiKey::InitProducerId, 4, correlation);
        correlation += 1;
        let retriable = [
            COORDINATOR_LOAD_IN_PROGRESS,
            COORDINATOR_NOT_AVAILABLE,
            NOT_COORDINATOR,
            CONCURRENT_TRANSACTIONS,
        ];
        if retriable.contains(&response.error_code) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        assert_eq!(response.error_code, NONE, "InitProducerId {id}");
        return (response.producer_id.0, response.producer_epoch);
    }
}

/// Gives an internal topic small segments, keeping the configs the broker
/// created it with (AlterConfigs replaces the whole set).
fn shrink_segments(broker: &TestBroker, topic: &str) {
    let change = AlterConfig::new(ResourceSpecifier::Topic(topic))
        .set("cleanup.policy", "compact")
        .set("retention.ms", "-1")
        .set("preallocate", "false")
        .set("segment.bytes", SEGMENT_BYTES);
    let results = futures_lite::future::block_on(
        broker
            .admin()
            .alter_configs([&change], &common::admin_options()),
    )
    .expect("AlterConfigs request");
    assert!(
        results.iter().all(Result::is_ok),
        "AlterConfigs of {topic}: {results:?}"
    );
}

/// Records left in a partition from its start to its end, and the end.
fn records_left(broker: &TestBroker, topic: &str, partition: i32) -> (usize, i64) {
    let consumer: BaseConsumer = broker.consumer(&[]);
    let (_, end) = consumer
        .fetch_watermarks(topic, partition, CLIENT_TIMEOUT)
        .expect("watermarks");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Beginning)
        .expect("adding a partition");
    consumer.assign(&assignment).expect("assign");
    let mut count = 0;
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    loop {
        let position = consumer
            .position()
            .expect("position")
            .find_partition(topic, partition)
            .map(|entry| entry.offset());
        if matches!(position, Some(Offset::Offset(at)) if at >= end) || end == 0 {
            return (count, end);
        }
        assert!(
            Instant::now() < deadline,
            "reading {topic}-{partition} timed out"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => count += 1,
            Some(Err(error)) => panic!("consumer error: {error}"),
            None => {}
        }
    }
}

/// Waits until the cleaner has compacted `topic`-`partition` to less than
/// half of the records written to it, and returns (left, end).
fn wait_compacted(broker: &TestBroker, topic: &str, partition: i32) -> (usize, i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (left, end) = records_left(broker, topic, partition);
        if (left as i64) * 2 < end {
            return (left, end);
        }
        assert!(
            Instant::now() < deadline,
            "{topic}-{partition} not compacted: {left} of {end} records left"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The group's committed offset of `TOPIC` partition 0.
fn committed_offset(broker: &TestBroker) -> Option<i64> {
    let consumer: BaseConsumer = broker.consumer(&[("group.id", GROUP)]);
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(TOPIC, 0);
    let offsets = consumer
        .committed_offsets(wanted, CLIENT_TIMEOUT)
        .expect("committed offsets");
    match offsets.find_partition(TOPIC, 0).map(|entry| entry.offset()) {
        Some(Offset::Offset(offset)) => Some(offset),
        _ => None,
    }
}

/// Every value of `TOPIC` a consumer with `isolation` reads, by partition.
fn read_values(broker: &TestBroker, isolation: &str) -> BTreeMap<i32, Vec<String>> {
    let consumer: BaseConsumer = broker.consumer(&[("isolation.level", isolation)]);
    let mut ends = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..2 {
        let (_, high) = consumer
            .fetch_watermarks(TOPIC, partition, CLIENT_TIMEOUT)
            .expect("watermarks");
        ends.insert(partition, high);
        assignment
            .add_partition_offset(TOPIC, partition, Offset::Beginning)
            .expect("adding a partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut values: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    loop {
        let positions = consumer.position().expect("position");
        let done = ends.iter().all(|(partition, end)| {
            match positions
                .find_partition(TOPIC, *partition)
                .map(|entry| entry.offset())
            {
                Some(Offset::Offset(position)) => position >= *end,
                _ => *end == 0,
            }
        });
        if done {
            return values;
        }
        assert!(
            Instant::now() < deadline,
            "reading {TOPIC} ({isolation}) timed out; read {values:?}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let value = message
                    .payload_view::<str>()
                    .and_then(Result::ok)
                    .unwrap_or("")
                    .to_string();
                values.entry(message.partition()).or_default().push(value);
            }
            Some(Err(error)) => panic!("consumer error: {error}"),
            None => {}
        }
    }
}

#[test]
fn compacted_coordinator_logs_survive_a_kill_9() {
    let port = common::free_ports(1)[0];
    let listen = format!("127.0.0.1:{port}");
    let mut broker = TestBroker::start_with(&[
        "--listen",
        &listen,
        "--transaction-state-log-num-partitions",
        "1",
        "--offsets-topic-num-partitions",
        "1",
        "--log-cleaner-backoff-ms",
        "100",
        "--transaction-abort-timed-out-transaction-cleanup-interval-ms",
        "200",
    ]);
    broker.create_topic(TOPIC, 2);

    let ids: Vec<String> = (0..PRODUCERS).map(|n| format!("compacted-{n}")).collect();
    let producers: Vec<TxnProducer> = ids.iter().map(|id| producer(&broker, id, &[])).collect();
    shrink_segments(&broker, STATE_TOPIC);

    // A group's offset of one partition, committed over and over.
    let committer: BaseConsumer = broker.consumer(&[("group.id", GROUP)]);
    let commit = |offset: i64| {
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(TOPIC, 0, Offset::Offset(offset))
            .expect("adding an offset");
        committer
            .commit(&offsets, CommitMode::Sync)
            .expect("committing an offset");
    };
    commit(0);
    shrink_segments(&broker, OFFSETS_TOPIC);
    for offset in 1..COMMITS {
        commit(offset);
    }
    let mut committed: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut aborted = 0;
    for transaction in 0..TRANSACTIONS {
        for (n, producer) in producers.iter().enumerate() {
            producer.begin_transaction().expect("begin_transaction");
            let partition = ((transaction + n) % 2) as i32;
            let value = format!("p{n}-t{transaction}");
            send(producer, partition, &value);
            // One in ten is aborted, so both endings are in the log.
            if transaction % 10 == 4 {
                producer.flush(CLIENT_TIMEOUT).expect("flush");
                producer
                    .abort_transaction(CLIENT_TIMEOUT)
                    .expect("abort_transaction");
                aborted += 1;
            } else {
                producer
                    .commit_transaction(CLIENT_TIMEOUT)
                    .expect("commit_transaction");
                committed.entry(partition).or_default().push(value);
            }
        }
    }
    assert!(aborted > 0);

    // The cleaner compacts both coordinator logs: each keeps few records
    // past the superseded ones.
    let (left, end) = wait_compacted(&broker, STATE_TOPIC, 0);
    eprintln!("{STATE_TOPIC}-0: {left} of {end} records left");
    let (left, end) = wait_compacted(&broker, OFFSETS_TOPIC, 0);
    eprintln!("{OFFSETS_TOPIC}-0: {left} of {end} records left");
    assert!(
        broker.log().contains("log cleaned"),
        "the cleaner logs its passes"
    );
    assert_eq!(committed_offset(&broker), Some(COMMITS - 1));

    // An idle id and a transaction left open (with a short timeout) join
    // after the cleaning.
    let idle = producer(&broker, "compacted-idle", &[]);
    let open = producer(
        &broker,
        "compacted-open",
        &[
            ("transaction.timeout.ms", "4000"),
            ("message.timeout.ms", "4000"),
            ("socket.timeout.ms", "4000"),
        ],
    );
    open.begin_transaction().expect("begin_transaction");
    send(&open, 0, "open-0");
    send(&open, 1, "open-1");
    open.flush(CLIENT_TIMEOUT).expect("flush");

    let mut before: BTreeMap<String, Described> = BTreeMap::new();
    for id in ids
        .iter()
        .map(String::as_str)
        .chain(["compacted-idle", "compacted-open"])
    {
        before.insert(id.to_string(), describe(&broker, id));
    }
    for id in &ids {
        let state = &before[id];
        assert!(
            state.state == "CompleteCommit" && state.partitions.is_empty(),
            "{id}: {state:?}"
        );
    }
    assert_eq!(before["compacted-idle"].state, "Empty");
    let open_before = before["compacted-open"].clone();
    assert_eq!(open_before.state, "Ongoing");
    assert_eq!(
        open_before.partitions,
        vec![format!("{TOPIC}-0"), format!("{TOPIC}-1")]
    );

    broker.restart(Stop::Kill);
    drop(committer);
    drop(producers);
    drop(idle);
    drop(open);

    // The group's offset is the last one committed.
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    while committed_offset(&broker) != Some(COMMITS - 1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        committed_offset(&broker),
        Some(COMMITS - 1),
        "after the restart"
    );

    // Every finished id is exactly as it was.
    for id in ids.iter().map(String::as_str).chain(["compacted-idle"]) {
        let mut after = describe_loaded(&broker, id);
        if after != before[id] {
            // Give a slow load one more chance before failing.
            std::thread::sleep(Duration::from_millis(500));
            after = describe(&broker, id);
        }
        assert_eq!(after, before[id], "{id} after the restart");
    }
    // The open transaction is still open, then aborted at its timeout
    // with its producer fenced (epoch + 1).
    let open_after = describe_loaded(&broker, "compacted-open");
    assert!(
        open_after == open_before || open_after.state == "CompleteAbort",
        "compacted-open after the restart: {open_after:?}"
    );
    wait_until(
        "the open transaction is aborted",
        Duration::from_secs(30),
        || describe(&broker, "compacted-open").state == "CompleteAbort",
    );
    let open_aborted = describe(&broker, "compacted-open");
    assert_eq!(open_aborted.producer_id, open_before.producer_id);
    assert_eq!(open_aborted.producer_epoch, open_before.producer_epoch + 1);
    assert!(open_aborted.partitions.is_empty());

    // read_committed sees exactly the committed records; the open
    // transaction's records are there but aborted.
    assert_eq!(read_values(&broker, "read_committed"), committed);
    let all = read_values(&broker, "read_uncommitted");
    assert!(all
        .get(&0)
        .is_some_and(|values| values.contains(&"open-0".to_string())));

    // A new producer of each id gets the next epoch of the same id.
    for id in ids
        .iter()
        .map(String::as_str)
        .chain(["compacted-idle", "compacted-open"])
    {
        let expected = describe(&broker, id);
        let (producer_id, epoch) = init_producer_id(&broker, id);
        assert_eq!(producer_id, expected.producer_id, "{id}");
        assert_eq!(i64::from(epoch), expected.producer_epoch + 1, "{id}");
    }
}

/// Describes an id, waiting while the coordinator loads after a restart.
fn describe_loaded(broker: &TestBroker, id: &str) -> Described {
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    loop {
        let output = run_describe(broker, id);
        if output.status.success() || Instant::now() > deadline {
            return describe(broker, id);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
