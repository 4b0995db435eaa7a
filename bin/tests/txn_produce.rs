//! Transactions with librdkafka's transactional producer against the real
//! binary: committed and aborted transactions as read_committed and
//! read_uncommitted consumers see them, zombie fencing, and the
//! coordinator aborting a transaction that outlives its timeout.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{TestBroker, CLIENT_TIMEOUT};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

type TxnProducer = ThreadedProducer<DefaultProducerContext>;

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

fn send(producer: &TxnProducer, topic: &str, partition: i32, value: &str) {
    producer
        .send(
            BaseRecord::<(), str>::to(topic)
                .partition(partition)
                .payload(value),
        )
        .map_err(|(error, _)| error)
        .expect("queueing a record");
}

/// Reads `partitions` of `topic` from the start until every partition's
/// position reaches its end (the LSO for read_committed), and returns the
/// values by partition.
fn read_values(
    broker: &TestBroker,
    topic: &str,
    partitions: i32,
    isolation: &str,
) -> BTreeMap<i32, Vec<String>> {
    let consumer: BaseConsumer = broker.consumer(&[("isolation.level", isolation)]);
    let mut ends = BTreeMap::new();
    for partition in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, CLIENT_TIMEOUT)
            .expect("watermarks");
        ends.insert(partition, high);
    }
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("adding a partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut values: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    loop {
        let positions = consumer.position().expect("position");
        let done = (0..partitions).all(|partition| {
            let end = ends.get(&partition).copied().unwrap_or(0);
            match positions
                .find_partition(topic, partition)
                .map(|entry| entry.offset())
            {
                Some(Offset::Offset(position)) => position >= end,
                _ => end == 0,
            }
        });
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reading {topic} ({isolation}) timed out; read {values:?}"
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
    values
}

#[test]
fn committed_and_aborted_transactions_as_consumers_see_them() {
    const TOPIC: &str = "txn-data";
    const PARTITIONS: i32 = 3;
    let broker = TestBroker::start();
    broker.create_topic(TOPIC, PARTITIONS);
    let producer = producer(&broker, "txn-commit-abort", &[]);
    let mut expected_committed: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut expected_all: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for transaction in 0..8 {
        producer.begin_transaction().expect("begin_transaction");
        let commit = transaction % 3 != 1;
        for partition in 0..PARTITIONS {
            for record in 0..2 {
                let value = format!("t{transaction}-p{partition}-r{record}");
                send(&producer, TOPIC, partition, &value);
                expected_all
                    .entry(partition)
                    .or_default()
                    .push(value.clone());
                if commit {
                    expected_committed.entry(partition).or_default().push(value);
                }
            }
        }
        if commit {
            producer
                .commit_transaction(CLIENT_TIMEOUT)
                .expect("commit_transaction");
        } else {
            // librdkafka drops records still queued on abort: flush first,
            // so the aborted records are in the log.
            producer.flush(CLIENT_TIMEOUT).expect("flush");
            producer
                .abort_transaction(CLIENT_TIMEOUT)
                .expect("abort_transaction");
        }
    }
    // A transaction left open: read_committed stops before it.
    producer.begin_transaction().expect("begin_transaction");
    send(&producer, TOPIC, 0, "open");
    producer.flush(CLIENT_TIMEOUT).expect("flush");
    expected_all.entry(0).or_default().push("open".to_string());

    let committed = read_values(&broker, TOPIC, PARTITIONS, "read_committed");
    assert_eq!(
        committed, expected_committed,
        "read_committed sees exactly the committed records, in order"
    );
    let all = read_values(&broker, TOPIC, PARTITIONS, "read_uncommitted");
    assert_eq!(all, expected_all, "read_uncommitted sees every record");

    producer
        .commit_transaction(CLIENT_TIMEOUT)
        .expect("committing the open transaction");
    expected_committed
        .entry(0)
        .or_default()
        .push("open".to_string());
    let committed = read_values(&broker, TOPIC, PARTITIONS, "read_committed");
    assert_eq!(committed, expected_committed);
}

#[test]
fn a_second_producer_fences_the_first() {
    const TOPIC: &str = "txn-zombie";
    let broker = TestBroker::start();
    broker.create_topic(TOPIC, 2);
    let zombie = producer(&broker, "txn-shared", &[]);
    zombie.begin_transaction().expect("begin_transaction");
    send(&zombie, TOPIC, 0, "zombie-before");
    zombie.flush(CLIENT_TIMEOUT).expect("flush");

    // The new instance fences the old one and aborts its open transaction.
    let fresh = producer(&broker, "txn-shared", &[]);
    send(&zombie, TOPIC, 1, "zombie-after");
    let outcome = zombie.commit_transaction(CLIENT_TIMEOUT);
    match outcome {
        Err(KafkaError::Transaction(error)) => {
            assert!(error.is_fatal(), "fencing is fatal for the zombie: {error}");
        }
        other => panic!("the zombie's commit must fail with a fatal error, got {other:?}"),
    }

    fresh.begin_transaction().expect("begin_transaction");
    send(&fresh, TOPIC, 0, "fresh");
    send(&fresh, TOPIC, 1, "fresh");
    fresh
        .commit_transaction(CLIENT_TIMEOUT)
        .expect("the new producer commits");
    let committed = read_values(&broker, TOPIC, 2, "read_committed");
    let expected: BTreeMap<i32, Vec<String>> = BTreeMap::from([
        (0, vec!["fresh".to_string()]),
        (1, vec!["fresh".to_string()]),
    ]);
    assert_eq!(
        committed, expected,
        "only the new producer's records are committed"
    );
}

#[test]
fn the_coordinator_aborts_a_transaction_past_its_timeout() {
    const TOPIC: &str = "txn-timeout";
    let broker = TestBroker::start_with(&[
        "--transaction-abort-timed-out-transaction-cleanup-interval-ms",
        "200",
    ]);
    broker.create_topic(TOPIC, 2);
    let settings = [
        ("transaction.timeout.ms", "3000"),
        ("message.timeout.ms", "3000"),
        ("socket.timeout.ms", "3000"),
    ];
    let slow = producer(&broker, "txn-slow", &settings);
    slow.begin_transaction().expect("begin_transaction");
    send(&slow, TOPIC, 0, "late");
    send(&slow, TOPIC, 1, "late");
    slow.flush(CLIENT_TIMEOUT).expect("flush");
    std::thread::sleep(Duration::from_millis(7000));
    assert!(
        slow.commit_transaction(CLIENT_TIMEOUT).is_err(),
        "a commit after the coordinator aborted the transaction fails"
    );
    // Nothing of it is visible, and the partitions are not stuck: a later
    // transaction of a new producer with the same id commits and is read.
    let next = producer(&broker, "txn-slow", &settings);
    next.begin_transaction().expect("begin_transaction");
    send(&next, TOPIC, 0, "on-time");
    next.commit_transaction(CLIENT_TIMEOUT)
        .expect("commit within the timeout");
    let committed = read_values(&broker, TOPIC, 2, "read_committed");
    let expected: BTreeMap<i32, Vec<String>> = BTreeMap::from([(0, vec!["on-time".to_string()])]);
    assert_eq!(committed, expected);
}

/// A broker on a fixed port, so clients reconnect after a restart.
fn broker_on_fixed_port(extra: &[&str]) -> TestBroker {
    let port = common::free_ports(1)[0];
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["--listen", listen.as_str()];
    args.extend_from_slice(extra);
    TestBroker::start_with(&args)
}

#[test]
fn broker_kill_9_mid_transactions_keeps_them_atomic() {
    const TOPIC: &str = "txn-crash";
    let mut broker = broker_on_fixed_port(&[]);
    broker.create_topic(TOPIC, 2);
    for round in 0..3u64 {
        let committed_acks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let worker = {
            let committed_acks = std::sync::Arc::clone(&committed_acks);
            let stop = std::sync::Arc::clone(&stop);
            let config = broker.client_config();
            std::thread::spawn(move || {
                let mut config = config;
                config.set("transactional.id", "txn-crash-producer");
                let producer: TxnProducer = config.create().expect("producer");
                if producer.init_transactions(CLIENT_TIMEOUT).is_err() {
                    return;
                }
                let mut transaction = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    transaction += 1;
                    let name = format!("r{round}-t{transaction}");
                    if producer.begin_transaction().is_err() {
                        return;
                    }
                    send(&producer, TOPIC, 0, &name);
                    send(&producer, TOPIC, 1, &name);
                    match producer.commit_transaction(CLIENT_TIMEOUT) {
                        Ok(()) => committed_acks.lock().expect("lock").push(name),
                        Err(_) => {
                            // Abortable errors end this transaction; fatal
                            // ones end the producer.
                            if producer.abort_transaction(CLIENT_TIMEOUT).is_err() {
                                return;
                            }
                        }
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(1500 + 700 * round));
        broker.restart(common::Stop::Kill);
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        worker.join().expect("the producer thread");

        // A new producer with the same id resolves whatever was left open,
        // and commits one more transaction.
        let last = producer(&broker, "txn-crash-producer", &[]);
        last.begin_transaction().expect("begin_transaction");
        let final_name = format!("r{round}-final");
        send(&last, TOPIC, 0, &final_name);
        send(&last, TOPIC, 1, &final_name);
        last.commit_transaction(CLIENT_TIMEOUT)
            .expect("committing after the restart");
        drop(last);

        // read_committed reaches the high watermark (the LSO is not stuck),
        // and both partitions hold the same transactions: all or nothing.
        let committed = read_values(&broker, TOPIC, 2, "read_committed");
        let first = committed.get(&0).cloned().unwrap_or_default();
        let second = committed.get(&1).cloned().unwrap_or_default();
        assert_eq!(
            first, second,
            "every transaction is in both partitions or neither"
        );
        for name in committed_acks.lock().expect("lock").iter() {
            assert!(first.contains(name), "{name} was acknowledged as committed");
        }
        assert!(first.contains(&final_name));
        let mut unique = first.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            first.len(),
            "no transaction is committed twice"
        );
    }
}

#[test]
fn describe_producers_shows_the_open_transaction() {
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::{
        ApiKey, DescribeProducersRequest, DescribeProducersResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    const TOPIC: &str = "txn-producers";
    let broker = TestBroker::start();
    broker.create_topic(TOPIC, 2);
    let open = producer(&broker, "txn-described", &[]);
    open.begin_transaction().expect("begin_transaction");
    send(&open, TOPIC, 0, "a");
    send(&open, TOPIC, 0, "b");
    open.flush(CLIENT_TIMEOUT).expect("flush");

    let describe = |stream: &mut std::net::TcpStream, correlation: i32| {
        let mut topic = TopicRequest::default();
        topic.name = TopicName(StrBytes::from_static_str(TOPIC));
        topic.partition_indexes = vec![0, 1, 9];
        let mut request = DescribeProducersRequest::default();
        request.topics = vec![topic];
        common::send_request(stream, ApiKey::DescribeProducers, 0, correlation, &request);
        common::receive_response::<DescribeProducersResponse>(
            stream,
            ApiKey::DescribeProducers,
            0,
            correlation,
        )
    };
    let mut stream = common::raw_connect(broker.address());
    let response = describe(&mut stream, 1);
    let partitions = &response.topics[0].partitions;
    assert_eq!(partitions.len(), 3);
    assert_eq!(partitions[0].error_code, 0);
    assert_eq!(partitions[0].active_producers.len(), 1);
    let state = &partitions[0].active_producers[0];
    assert!(state.producer_id.0 >= 0);
    assert_eq!(state.producer_epoch, 0);
    assert_eq!(
        state.current_txn_start_offset, 0,
        "the open transaction starts at 0"
    );
    assert!(state.last_sequence >= 0);
    assert_eq!(partitions[1].error_code, 0);
    assert!(partitions[1].active_producers.is_empty());
    assert_eq!(partitions[2].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");

    open.commit_transaction(CLIENT_TIMEOUT).expect("commit");
    let response = describe(&mut stream, 2);
    let state = &response.topics[0].partitions[0].active_producers[0];
    assert_eq!(
        state.current_txn_start_offset, -1,
        "no open transaction after the commit"
    );
}
