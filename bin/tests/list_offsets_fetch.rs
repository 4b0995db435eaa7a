//! Finding offsets and waiting for them: ListOffsets by timestamp, earliest
//! and latest (also after retention moved the log start), Fetch long polls
//! that wait when there is nothing and return as soon as data arrives, and
//! OFFSET_OUT_OF_RANGE for a position past the end or before the start.

mod common;

use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use common::{
    consume, create_topic, now_ms, produce_all, raw_connect, receive_response, send_request,
    wait_until, Record, TestBroker, CLIENT_TIMEOUT,
};

/// Timestamps of the `times` topic: message i has `base + TIME_STEP * i`,
/// with `base` an hour ago (older data would fall to the default retention).
const TIME_STEP: i64 = 10;
const TIMED_MESSAGES: usize = 3_000;

fn record(partition: i32, timestamp: i64, value: Vec<u8>) -> Record {
    Record {
        timestamp: Some(timestamp),
        ..Record::with_value(partition, value)
    }
}

fn offsets_for_time(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Offset {
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset(topic, partition, Offset::Offset(timestamp))
        .expect("query");
    let found = consumer
        .offsets_for_times(query, CLIENT_TIMEOUT)
        .expect("offsets_for_times");
    let element = found
        .find_partition(topic, partition)
        .expect("the queried partition");
    assert!(
        element.error().is_ok(),
        "offsets_for_times {topic}/{partition} @{timestamp}: {:?}",
        element.error()
    );
    element.offset()
}

/// A raw Fetch v12 of one partition (the version and encoder are the
/// reference crate's, so this checks the broker's long-poll timing alone).
fn fetch_request(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> FetchRequest {
    let mut request = FetchRequest::default();
    request.replica_id = (-1).into();
    request.max_wait_ms = max_wait_ms;
    request.min_bytes = 1;
    request.max_bytes = 1 << 20;
    request.session_epoch = -1;
    let mut fetch_partition = FetchPartition::default();
    fetch_partition.partition = partition;
    fetch_partition.fetch_offset = offset;
    fetch_partition.partition_max_bytes = 1 << 20;
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = TopicName(StrBytes::from_string(topic.to_string()));
    fetch_topic.partitions = vec![fetch_partition];
    request.topics = vec![fetch_topic];
    request
}

const FETCH_VERSION: i16 = 12;

/// Base offsets of a partition's segments, from the `<base>.log` file names.
fn segment_bases(dir: &std::path::Path) -> Vec<i64> {
    let mut bases: Vec<i64> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| {
                    entry
                        .ok()?
                        .file_name()
                        .to_str()?
                        .strip_suffix(".log")?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    bases.sort();
    bases
}

fn raw_fetch(
    stream: &mut TcpStream,
    correlation_id: i32,
    request: &FetchRequest,
) -> (FetchResponse, Duration) {
    let started = Instant::now();
    send_request(
        stream,
        ApiKey::Fetch,
        FETCH_VERSION,
        correlation_id,
        request,
    );
    let response: FetchResponse =
        receive_response(stream, ApiKey::Fetch, FETCH_VERSION, correlation_id);
    (response, started.elapsed())
}

#[test]
fn offsets_by_time_and_position_and_long_polls() {
    let broker = TestBroker::start_with(&["--retention-check-interval-ms", "100"]);
    let admin = broker.admin();
    // Small segments so lookups cross segment and index boundaries.
    create_topic(
        &admin,
        "times",
        2,
        &[("segment.bytes", "16384"), ("index.interval.bytes", "512")],
    );
    create_topic(&admin, "polls", 1, &[]);
    let consumer = broker.consumer(&[]);
    let time_base = now_ms() - 3_600_000;

    // ---- ListOffsets by timestamp ------------------------------------
    let timed: Vec<Record> = (0..TIMED_MESSAGES)
        .map(|i| {
            record(
                0,
                time_base + TIME_STEP * i as i64,
                format!("message {i}").into_bytes(),
            )
        })
        .collect();
    let positions = produce_all(
        &broker,
        "times",
        &[("acks", "1"), ("batch.num.messages", "20")],
        &timed,
    );
    for (i, (partition, offset)) in positions.iter().enumerate() {
        assert_eq!((*partition, *offset), (0, i as i64), "message {i}");
    }
    assert_eq!(
        consumer
            .fetch_watermarks("times", 0, CLIENT_TIMEOUT)
            .expect("watermarks"),
        (0, TIMED_MESSAGES as i64)
    );
    assert_eq!(
        consumer
            .fetch_watermarks("times", 1, CLIENT_TIMEOUT)
            .expect("watermarks"),
        (0, 0),
        "empty partition"
    );
    for i in [0usize, 1, 7, 500, 1234, 2047, TIMED_MESSAGES - 1] {
        let exact = time_base + TIME_STEP * i as i64;
        assert_eq!(
            offsets_for_time(&consumer, "times", 0, exact),
            Offset::Offset(i as i64),
            "exactly message {i}'s time"
        );
        if i + 1 < TIMED_MESSAGES {
            // Between two messages: the first one at or after the time.
            assert_eq!(
                offsets_for_time(&consumer, "times", 0, exact + 1),
                Offset::Offset(i as i64 + 1),
                "after {i}"
            );
        }
    }
    assert_eq!(
        offsets_for_time(&consumer, "times", 0, 0),
        Offset::Offset(0),
        "before everything"
    );
    let after_all = time_base + TIME_STEP * TIMED_MESSAGES as i64;
    assert_eq!(
        offsets_for_time(&consumer, "times", 0, after_all),
        Offset::End,
        "after everything"
    );
    assert_eq!(
        offsets_for_time(&consumer, "times", 1, 0),
        Offset::End,
        "empty partition"
    );

    // ---- Earliest after retention --------------------------------------
    // The same hour-old messages in a topic with a 30-minute retention:
    // retention removes every sealed segment, so the log start moves up to
    // the active segment's base.
    create_topic(
        &admin,
        "expiring",
        1,
        &[
            ("segment.bytes", "16384"),
            ("index.interval.bytes", "512"),
            ("retention.ms", "1800000"),
        ],
    );
    produce_all(
        &broker,
        "expiring",
        &[("acks", "1"), ("batch.num.messages", "20")],
        &timed,
    );
    // Retention deletes sealed segments as the writer finishes them, over
    // several passes; wait until only the active segment is left on disk, so
    // the log start no longer moves under the checks below.
    let partition_dir = broker.data_dir().join("expiring-0");
    let mut segments = Vec::new();
    wait_until(
        "retention to leave only the active segment",
        CLIENT_TIMEOUT,
        || {
            segments = segment_bases(&partition_dir);
            segments.len() == 1
        },
    );
    let (low, high) = consumer
        .fetch_watermarks("expiring", 0, CLIENT_TIMEOUT)
        .expect("watermarks");
    assert_eq!(
        low, segments[0],
        "the log start is the remaining segment's base offset"
    );
    assert!(low > 0 && low < high, "log start {low}, end {high}");
    assert_eq!(
        high, TIMED_MESSAGES as i64,
        "retention does not move the end"
    );
    assert_eq!(
        offsets_for_time(&consumer, "expiring", 0, 0),
        Offset::Offset(low),
        "by time after retention"
    );
    // Reading from the beginning starts at the new log start.
    let early = consume(
        &consumer,
        "expiring",
        &[0],
        Offset::Beginning,
        CLIENT_TIMEOUT,
        |records| !records.is_empty(),
    );
    assert_eq!(early[0].offset, low);
    assert_eq!(
        early[0].value.as_deref(),
        Some(format!("message {low}").as_bytes())
    );
    // A fetch below the log start is out of range; with reset=earliest the
    // consumer lands on the log start.
    let reset = broker.consumer(&[("auto.offset.reset", "earliest")]);
    let first = consume(
        &reset,
        "expiring",
        &[0],
        Offset::Offset(0),
        CLIENT_TIMEOUT,
        |records| !records.is_empty(),
    );
    assert_eq!(
        first[0].offset, low,
        "reset to earliest after OFFSET_OUT_OF_RANGE"
    );
    let mut stream = raw_connect(broker.address());
    let (response, _) = raw_fetch(&mut stream, 1, &fetch_request("expiring", 0, 0, 0));
    let partition = &response.responses[0].partitions[0];
    assert_eq!(
        partition.error_code, 1,
        "fetch below the log start: OFFSET_OUT_OF_RANGE"
    );
    assert_eq!(partition.log_start_offset, low);

    // ---- OFFSET_OUT_OF_RANGE past the end -------------------------------
    let (response, _) = raw_fetch(&mut stream, 2, &fetch_request("times", 0, high + 100, 0));
    let partition = &response.responses[0].partitions[0];
    assert_eq!(
        partition.error_code, 1,
        "fetch past the end: OFFSET_OUT_OF_RANGE"
    );
    assert_eq!(partition.high_watermark, high);
    let strict = broker.consumer(&[("auto.offset.reset", "error")]);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("times", 0, Offset::Offset(high + 100))
        .expect("partition");
    strict.assign(&assignment).expect("assign");
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    loop {
        assert!(
            Instant::now() < deadline,
            "no out-of-range error from the consumer"
        );
        match strict.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Ok(message)) => panic!(
                "read offset {} past the end",
                rdkafka::Message::offset(&message)
            ),
            Some(Err(KafkaError::MessageConsumption(code))) => {
                assert!(
                    matches!(
                        code,
                        RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset
                    ),
                    "unexpected consumer error {code:?}"
                );
                break;
            }
            Some(Err(error)) => panic!("unexpected consumer error {error}"),
        }
    }

    // ---- LogAppendTime ---------------------------------------------------
    // A topic stamped by the broker: consumers see the append time (as
    // LogAppendTime), whatever the producer set, and lookups by time use it.
    create_topic(
        &admin,
        "appended",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let before = now_ms();
    let stamped: Vec<Record> = (0..100)
        .map(|i| record(0, 1_000_000 + i, format!("stamped {i}").into_bytes()))
        .collect();
    produce_all(
        &broker,
        "appended",
        &[("acks", "all"), ("compression.type", "lz4")],
        &stamped,
    );
    let after = now_ms();
    let stamped_consumer = broker.consumer(&[]);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("appended", 0, Offset::Beginning)
        .expect("partition");
    stamped_consumer.assign(&assignment).expect("assign");
    let mut seen = 0;
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    while seen < stamped.len() {
        assert!(Instant::now() < deadline, "read {seen} stamped messages");
        let Some(message) = stamped_consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.expect("consumer error");
        match rdkafka::Message::timestamp(&message) {
            rdkafka::Timestamp::LogAppendTime(at) => {
                assert!(
                    (before..=after).contains(&at),
                    "append time {at} outside [{before}, {after}]"
                )
            }
            other => panic!("message {seen}: timestamp {other:?}, not LogAppendTime"),
        }
        assert_eq!(
            rdkafka::Message::payload(&message),
            Some(format!("stamped {seen}").as_bytes())
        );
        seen += 1;
    }
    assert_eq!(
        offsets_for_time(&consumer, "appended", 0, 1_000_050),
        Offset::Offset(0),
        "create times are gone"
    );
    assert_eq!(
        offsets_for_time(&consumer, "appended", 0, after + 60_000),
        Offset::End
    );

    // ---- Long polls ---------------------------------------------------
    // Nothing to read: the broker holds the fetch for max_wait_ms.
    let (response, waited) = raw_fetch(&mut stream, 3, &fetch_request("polls", 0, 0, 500));
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert!(partition
        .records
        .as_ref()
        .is_none_or(|records| records.is_empty()));
    assert!(
        waited >= Duration::from_millis(450),
        "an empty fetch returned after {waited:?}, not ~500 ms"
    );
    assert!(
        waited < Duration::from_secs(10),
        "an empty fetch took {waited:?}"
    );

    // A fetch waiting up to 20 s returns as soon as a message is produced.
    let fetch_stream = stream.try_clone().expect("clone");
    let (done_sender, done_receiver) = mpsc::channel();
    let poller = thread::spawn(move || {
        let mut stream = fetch_stream;
        let result = raw_fetch(&mut stream, 4, &fetch_request("polls", 0, 0, 20_000));
        let _ = done_sender.send(Instant::now());
        result
    });
    // The fetch must be parked at the broker before the produce for this to
    // measure anything: give it time, then check it has not returned.
    thread::sleep(Duration::from_millis(300));
    assert!(
        done_receiver.try_recv().is_err(),
        "the 20 s fetch returned with nothing to read"
    );
    let produced_at = Instant::now();
    produce_all(
        &broker,
        "polls",
        &[("acks", "1")],
        &[record(0, now_ms(), b"wake up".to_vec())],
    );
    let returned_at = done_receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("the fetch to return");
    let (response, _) = poller.join().expect("poller");
    let latency = returned_at.saturating_duration_since(produced_at);
    assert!(
        latency < Duration::from_secs(5),
        "the long poll returned {latency:?} after the produce, not early"
    );
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert!(
        partition
            .records
            .as_ref()
            .is_some_and(|records| !records.is_empty()),
        "the woken fetch carries the record"
    );
    eprintln!("raw long poll woke {latency:?} after the produce was acknowledged");

    // The same through librdkafka: each message produced while the
    // consumer's fetch (fetch.wait.max.ms=5000) is parked arrives well
    // before the wait would end. A broker that does not wake fetches on
    // append fails this: a message then waits for the end of the poll.
    let waiting = broker.consumer(&[("fetch.wait.max.ms", "5000"), ("fetch.min.bytes", "1")]);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("polls", 0, Offset::Offset(1))
        .expect("partition");
    waiting.assign(&assignment).expect("assign");
    assert!(
        waiting.poll(Duration::from_millis(500)).is_none(),
        "nothing to read yet"
    );
    let mut latencies = Vec::new();
    for round in 0..5 {
        let produced_at = Instant::now();
        produce_all(
            &broker,
            "polls",
            &[("acks", "1")],
            &[record(0, now_ms(), format!("round {round}").into_bytes())],
        );
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        let message = loop {
            assert!(
                Instant::now() < deadline,
                "round {round}: message not consumed"
            );
            if let Some(message) = waiting.poll(Duration::from_millis(10)) {
                break message.expect("consumer error");
            }
        };
        latencies.push(produced_at.elapsed());
        assert_eq!(
            rdkafka::Message::payload(&message),
            Some(format!("round {round}").as_bytes())
        );
        // Let the consumer park its next fetch.
        assert!(waiting.poll(Duration::from_millis(300)).is_none());
    }
    eprintln!("librdkafka long-poll latencies: {latencies:?}");
    for (round, latency) in latencies.iter().enumerate() {
        assert!(
            *latency < Duration::from_millis(2_500),
            "round {round}: {latency:?} from produce to consume"
        );
    }
}
