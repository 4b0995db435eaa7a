//! The coordinator's bounded replay: enough transactions make it rewrite
//! its `__transaction_state` partition (live state appended again, log
//! start moved past the rest); after a kill -9 and a restart every id's
//! state is what it was, a new InitProducerId bumps each epoch by one, and
//! a transaction left open is aborted once its timeout passes.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{
    raw_connect, receive_response, send_request, wait_until, Stop, TestBroker, CLIENT_TIMEOUT,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

type TxnProducer = ThreadedProducer<DefaultProducerContext>;

const TOPIC: &str = "rewrite-data";
const STATE_TOPIC: &str = "__transaction_state";
/// Records in the state log above which (and above 4 per live id) the
/// coordinator rewrites it.
const REWRITE_RECORDS_MIN: &str = "200";
/// Committing producers and their transactions each: every transaction
/// writes at least three state records (Ongoing, PrepareCommit,
/// CompleteCommit), well past the threshold.
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

/// The state partition's log start and end offsets.
fn state_log_offsets(broker: &TestBroker) -> (i64, i64) {
    let consumer: BaseConsumer = broker.consumer(&[]);
    consumer
        .fetch_watermarks(STATE_TOPIC, 0, CLIENT_TIMEOUT)
        .expect("watermarks of the state partition")
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
fn the_state_log_rewrite_survives_a_kill_9() {
    let port = common::free_ports(1)[0];
    let listen = format!("127.0.0.1:{port}");
    let mut broker = TestBroker::start_with(&[
        "--listen",
        &listen,
        "--transaction-state-log-num-partitions",
        "1",
        "--transaction-state-rewrite-records-min",
        REWRITE_RECORDS_MIN,
        "--transaction-abort-timed-out-transaction-cleanup-interval-ms",
        "200",
    ]);
    broker.create_topic(TOPIC, 2);

    let ids: Vec<String> = (0..PRODUCERS).map(|n| format!("rewrite-{n}")).collect();
    let producers: Vec<TxnProducer> = ids.iter().map(|id| producer(&broker, id, &[])).collect();
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

    // The rewrite runs with the periodic coordinator work: the log start
    // moves past the superseded records.
    let (_, end_before) = state_log_offsets(&broker);
    assert!(
        end_before > REWRITE_RECORDS_MIN.parse::<i64>().unwrap_or(0),
        "enough state records: {end_before}"
    );
    wait_until(
        "the state log was rewritten",
        Duration::from_secs(30),
        || state_log_offsets(&broker).0 > 0,
    );
    let (start, end) = state_log_offsets(&broker);
    // What is left: one record per live id from the last rewrite, and at
    // most the threshold's worth of records appended since.
    let threshold: i64 = REWRITE_RECORDS_MIN.parse().unwrap_or(0);
    assert!(
        end - start <= threshold + PRODUCERS as i64,
        "the rewritten log is bounded: {start}..{end}"
    );
    assert!(
        broker
            .log()
            .contains("rewrote __transaction_state partition"),
        "the rewrite is logged"
    );

    // An idle id and a transaction left open (with a short timeout) join
    // after the rewrite.
    let idle = producer(&broker, "rewrite-idle", &[]);
    let open = producer(
        &broker,
        "rewrite-open",
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
        .chain(["rewrite-idle", "rewrite-open"])
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
    assert_eq!(before["rewrite-idle"].state, "Empty");
    let open_before = before["rewrite-open"].clone();
    assert_eq!(open_before.state, "Ongoing");
    assert_eq!(
        open_before.partitions,
        vec![format!("{TOPIC}-0"), format!("{TOPIC}-1")]
    );

    broker.restart(Stop::Kill);
    drop(producers);
    drop(idle);
    drop(open);

    // Every finished id is exactly as it was.
    for id in ids.iter().map(String::as_str).chain(["rewrite-idle"]) {
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
    let open_after = describe_loaded(&broker, "rewrite-open");
    assert!(
        open_after == open_before || open_after.state == "CompleteAbort",
        "rewrite-open after the restart: {open_after:?}"
    );
    wait_until(
        "the open transaction is aborted",
        Duration::from_secs(30),
        || describe(&broker, "rewrite-open").state == "CompleteAbort",
    );
    let open_aborted = describe(&broker, "rewrite-open");
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
        .chain(["rewrite-idle", "rewrite-open"])
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
