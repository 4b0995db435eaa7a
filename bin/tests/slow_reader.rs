//! A peer that stops reading stalls only its own connection. Fetch
//! responses far larger than the socket buffers are queued to a raw client
//! that reads nothing; meanwhile a second connection to the same (only)
//! shard must still be answered and a producer must still be acknowledged.
//! Then the slow peer reads everything, and every batch it gets is intact
//! and in order.

mod common;

use std::time::{Duration, Instant};

use bytes::Buf;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, TopicName,
};

use common::{
    create_topic, produce_all, raw_connect, receive_response, send_request, text, Record,
    TestBroker,
};

const TOPIC: &str = "backlog";
/// About 24 MiB in the log: more than a socket's send buffer and its peer's
/// receive buffer hold together (Linux defaults top out at 4 and 6 MiB).
const BACKLOG_RECORDS: usize = 24_000;
const RECORD_BYTES: usize = 1024;
/// Each unread fetch asks for up to 16 MiB from offset 0.
const UNREAD_FETCHES: i32 = 4;
const FETCH_MAX_BYTES: i32 = 16 << 20;
const FETCH_VERSION: i16 = 12;
/// How long the broker may take to fill the slow peer's socket.
const FILL_TIME: Duration = Duration::from_secs(2);
/// Other clients must be served within this while the peer reads nothing.
const OTHERS_DEADLINE: Duration = Duration::from_secs(10);

fn fetch_from_start() -> FetchRequest {
    let mut request = FetchRequest::default();
    request.replica_id = (-1).into();
    request.max_wait_ms = 0;
    request.min_bytes = 1;
    request.max_bytes = FETCH_MAX_BYTES;
    request.session_epoch = -1;
    let mut partition = FetchPartition::default();
    partition.partition = 0;
    partition.fetch_offset = 0;
    partition.partition_max_bytes = FETCH_MAX_BYTES;
    let mut topic = FetchTopic::default();
    topic.topic = TopicName(text(TOPIC));
    topic.partitions = vec![partition];
    request.topics = vec![topic];
    request
}

/// Walks the record batches of a fetch answer: each must start where the
/// previous one ended, from offset 0. Returns the next offset after them.
fn check_batches(mut records: bytes::Bytes) -> i64 {
    const HEADER_BYTES: usize = 61;
    let mut next = 0i64;
    while records.len() >= HEADER_BYTES {
        let base_offset = i64::from_be_bytes(records[0..8].try_into().unwrap());
        let batch_length = i32::from_be_bytes(records[8..12].try_into().unwrap()) as usize;
        let last_offset_delta = i32::from_be_bytes(records[23..27].try_into().unwrap());
        let record_count = i32::from_be_bytes(records[57..61].try_into().unwrap());
        if records.len() < 12 + batch_length {
            // A partial batch at the end is allowed (max_bytes cut it).
            break;
        }
        assert_eq!(base_offset, next, "batches must follow on");
        assert_eq!(
            last_offset_delta + 1,
            record_count,
            "batch at {base_offset}: offset delta and record count disagree"
        );
        next = base_offset + record_count as i64;
        records.advance(12 + batch_length);
    }
    next
}

#[test]
fn a_peer_that_does_not_read_stalls_only_its_own_connection() {
    let broker = TestBroker::start_with(&["--shards", "1"]);
    create_topic(&broker.admin(), TOPIC, 1, &[]);
    let records: Vec<Record> = (0..BACKLOG_RECORDS)
        .map(|index| Record {
            partition: 0,
            offset: -1,
            key: None,
            value: Some(vec![(index % 251) as u8; RECORD_BYTES]),
            headers: Vec::new(),
            timestamp: None,
        })
        .collect();
    produce_all(&broker, TOPIC, &[("linger.ms", "5")], &records);

    let mut slow = raw_connect(broker.address());
    let request = fetch_from_start();
    for correlation in 0..UNREAD_FETCHES {
        send_request(
            &mut slow,
            ApiKey::Fetch,
            FETCH_VERSION,
            correlation,
            &request,
        );
    }
    std::thread::sleep(FILL_TIME);

    // Another connection on the same shard is answered...
    let started = Instant::now();
    let mut other = raw_connect(broker.address());
    other
        .set_read_timeout(Some(OTHERS_DEADLINE))
        .expect("read timeout");
    let mut versions = ApiVersionsRequest::default();
    versions.client_software_name = text("slow-reader-test");
    versions.client_software_version = text("1");
    send_request(&mut other, ApiKey::ApiVersions, 3, 1, &versions);
    let answer: ApiVersionsResponse = receive_response(&mut other, ApiKey::ApiVersions, 3, 1);
    assert_eq!(
        answer.error_code, 0,
        "ApiVersions while a peer reads nothing"
    );
    // ...and a producer is acknowledged.
    let more = vec![Record {
        partition: 0,
        offset: -1,
        key: None,
        value: Some(b"after the stall".to_vec()),
        headers: Vec::new(),
        timestamp: None,
    }];
    let timeout_ms = OTHERS_DEADLINE.as_millis().to_string();
    let acknowledged = produce_all(
        &broker,
        TOPIC,
        &[("message.timeout.ms", timeout_ms.as_str())],
        &more,
    );
    assert_eq!(acknowledged[0].1, BACKLOG_RECORDS as i64);
    assert!(
        started.elapsed() < OTHERS_DEADLINE,
        "other clients took {:?} while one peer read nothing",
        started.elapsed()
    );

    // The slow peer gets every answer, in order and intact.
    for correlation in 0..UNREAD_FETCHES {
        let response: FetchResponse =
            receive_response(&mut slow, ApiKey::Fetch, FETCH_VERSION, correlation);
        assert_eq!(response.error_code, 0);
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0);
        let records = partition.records.clone().expect("records");
        assert!(
            records.len() >= (FETCH_MAX_BYTES as usize) / 2,
            "fetch {correlation} returned only {} bytes",
            records.len()
        );
        let next = check_batches(records);
        assert!(
            next > (BACKLOG_RECORDS / 2) as i64,
            "fetch {correlation} covered offsets up to {next} only"
        );
    }
}
