//! Hostile or broken input costs only its own connection: malformed frames,
//! truncated headers, unknown APIs and versions, oversized and lying length
//! prefixes, garbage, and a record batch with a bad CRC (which gets
//! CORRUPT_MESSAGE, not a closed connection). After each, the broker still
//! serves a normal librdkafka client, and its memory did not balloon.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::Offset;

use common::{
    assert_closed, consume, now_ms, produce_all, raw_connect, read_response, receive_response,
    send_request, Record, Rng, Stop, TestBroker, CLIENT_TIMEOUT,
};

const TOPIC: &str = "after";
const CORRUPT_MESSAGE: i16 = 2;
const UNSUPPORTED_VERSION: i16 = 35;
/// Allowed growth of the broker's resident memory across all the cases.
const RSS_GROWTH_BYTES_MAX: u64 = 64 << 20;

/// A normal client can still produce and read back a message; the process is
/// still there. Returns the number of messages now in the check topic.
fn assert_serves(broker: &mut TestBroker, checks: &mut i64, case: &str) {
    broker.assert_running();
    let value = format!("after {case}").into_bytes();
    let record = Record {
        partition: 0,
        offset: -1,
        key: None,
        value: Some(value.clone()),
        headers: Vec::new(),
        timestamp: Some(now_ms()),
    };
    let positions = produce_all(broker, TOPIC, &[("acks", "all")], &[record]);
    assert_eq!(
        positions,
        vec![(0, *checks)],
        "{case}: the next check message's position"
    );
    let consumer = broker.consumer(&[]);
    let read = consume(
        &consumer,
        TOPIC,
        &[0],
        Offset::Offset(*checks),
        CLIENT_TIMEOUT,
        |records| !records.is_empty(),
    );
    assert_eq!(
        read[0].value.as_deref(),
        Some(value.as_slice()),
        "{case}: read back"
    );
    *checks += 1;
}

/// A request frame: length prefix + header fields given as raw bytes.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// Header v1 (api key, version, correlation id, null client id).
fn header_v1(api_key: i16, version: i16, correlation_id: i32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&api_key.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

fn send_raw(stream: &mut TcpStream, bytes: &[u8]) {
    // The broker may close while we are still writing: that is the point.
    let _ = stream.write_all(bytes);
}

fn produce_request(records: Bytes) -> ProduceRequest {
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(records);
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_static_str(TOPIC));
    topic.partition_data = vec![partition];
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 30_000;
    request.topic_data = vec![topic];
    request
}

#[test]
fn broken_input_closes_only_its_connection() {
    let mut broker = TestBroker::start();
    broker.create_topic(TOPIC, 1);
    let address = broker.address();
    let mut checks = 0i64;
    assert_serves(&mut broker, &mut checks, "start");
    let rss_before = broker.rss_bytes();

    // A frame shorter than any request header.
    let mut stream = raw_connect(address);
    send_raw(&mut stream, &frame(&[0, 3, 0]));
    assert_closed(&mut stream, "3-byte frame");
    assert_serves(&mut broker, &mut checks, "3-byte frame");

    // A truncated header: the client id claims more bytes than the frame has.
    let mut stream = raw_connect(address);
    let mut truncated = header_v1(3, 1, 7);
    truncated.truncate(8);
    truncated.extend_from_slice(&100i16.to_be_bytes());
    truncated.extend_from_slice(b"abc");
    send_raw(&mut stream, &frame(&truncated));
    assert_closed(&mut stream, "truncated header");
    assert_serves(&mut broker, &mut checks, "truncated header");

    // A well-framed Metadata v1 whose body stops in the middle of a topic
    // name.
    let mut stream = raw_connect(address);
    let mut body = header_v1(3, 1, 8);
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&10i16.to_be_bytes());
    body.extend_from_slice(b"short");
    send_raw(&mut stream, &frame(&body));
    assert_closed(&mut stream, "malformed Metadata body");
    assert_serves(&mut broker, &mut checks, "malformed Metadata body");

    // Trailing bytes after a complete request body.
    let mut stream = raw_connect(address);
    let mut body = header_v1(3, 1, 9);
    body.extend_from_slice(&0i32.to_be_bytes());
    body.extend_from_slice(b"extra");
    send_raw(&mut stream, &frame(&body));
    assert_closed(&mut stream, "trailing bytes");
    assert_serves(&mut broker, &mut checks, "trailing bytes");

    // An unknown API key.
    let mut stream = raw_connect(address);
    send_raw(&mut stream, &frame(&header_v1(999, 0, 10)));
    assert_closed(&mut stream, "unknown api key 999");
    let mut stream = raw_connect(address);
    send_raw(&mut stream, &frame(&header_v1(-5, 0, 10)));
    assert_closed(&mut stream, "negative api key");
    assert_serves(&mut broker, &mut checks, "unknown api keys");

    // A known API at a version the broker does not serve: closed, as Kafka.
    let mut stream = raw_connect(address);
    send_raw(&mut stream, &frame(&header_v1(0, 2, 11)));
    assert_closed(&mut stream, "Produce v2");
    let mut stream = raw_connect(address);
    send_raw(&mut stream, &frame(&header_v1(1, 3, 11)));
    assert_closed(&mut stream, "Fetch v3");
    let mut stream = raw_connect(address);
    send_raw(&mut stream, &frame(&header_v1(3, 99, 12)));
    assert_closed(&mut stream, "Metadata v99");
    // An implemented-by-the-codec but not served API (JoinGroup).
    let mut stream = raw_connect(address);
    send_raw(&mut stream, &frame(&header_v1(11, 5, 13)));
    assert_closed(&mut stream, "JoinGroup");
    assert_serves(&mut broker, &mut checks, "unsupported versions");

    // ApiVersions at an unknown version: UNSUPPORTED_VERSION with the list,
    // in the v0 layout, so the client can pick a version and retry on the
    // same connection.
    let mut stream = raw_connect(address);
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes());
    body.extend_from_slice(&99i16.to_be_bytes());
    body.extend_from_slice(&14i32.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes()); // client id
    body.push(0); // header tagged fields
    body.extend_from_slice(&[0x42; 7]); // a body from the future
    send_raw(&mut stream, &frame(&body));
    let response: ApiVersionsResponse = receive_response(&mut stream, ApiKey::ApiVersions, 0, 14);
    assert_eq!(response.error_code, UNSUPPORTED_VERSION);
    let produce = response
        .api_keys
        .iter()
        .find(|api| api.api_key == ApiKey::Produce as i16)
        .expect("Produce listed");
    assert!(
        produce.min_version <= 9 && produce.max_version >= 9,
        "{produce:?}"
    );
    let versions = response
        .api_keys
        .iter()
        .find(|api| api.api_key == 18)
        .expect("ApiVersions listed");
    assert_eq!((versions.min_version, versions.max_version), (0, 4));
    // The connection stays usable.
    send_request(
        &mut stream,
        ApiKey::ApiVersions,
        3,
        15,
        &ApiVersionsRequest::default(),
    );
    let response: ApiVersionsResponse = receive_response(&mut stream, ApiKey::ApiVersions, 3, 15);
    assert_eq!(response.error_code, 0);
    assert_serves(&mut broker, &mut checks, "ApiVersions v99");

    // Length prefixes beyond socket.request.max.bytes (100 MiB), and
    // negative ones: closed at once, before anything is allocated.
    for declared in [100 * 1024 * 1024 + 1, i32::MAX, -1, i32::MIN] {
        let mut stream = raw_connect(address);
        send_raw(&mut stream, &declared.to_be_bytes());
        send_raw(&mut stream, &header_v1(18, 3, 16));
        assert_closed(&mut stream, &format!("declared frame length {declared}"));
    }
    assert_serves(&mut broker, &mut checks, "oversized frames");

    // Connections that declare the largest legal frame and then send little:
    // the broker must not commit the declared size up front.
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut stream = raw_connect(address);
        send_raw(&mut stream, &(100 * 1024 * 1024i32).to_be_bytes());
        send_raw(&mut stream, &header_v1(0, 9, 17));
        open.push(stream);
    }
    // There is no reply to wait for; a full produce-and-consume round trip
    // on other connections gives the broker time to read what was sent.
    assert_serves(&mut broker, &mut checks, "declared 100 MiB frames");
    let rss_declared = broker.rss_bytes();
    assert!(
        rss_declared < rss_before + RSS_GROWTH_BYTES_MAX,
        "4 connections declaring 100 MiB frames took the broker from {} to {} MiB resident",
        rss_before >> 20,
        rss_declared >> 20
    );
    drop(open);

    // Garbage: random bytes (the length prefix is whatever they say).
    let mut rng = Rng::new(42);
    for round in 0..8 {
        let mut stream = raw_connect(address);
        let garbage = rng.bytes(64 + round * 100);
        send_raw(&mut stream, &garbage);
        // Whatever the broker makes of it, it must not answer garbage with a
        // crash; end our side so a plausible length prefix does not wait.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = read_response(&mut stream);
    }
    assert_serves(&mut broker, &mut checks, "garbage");

    // The 14-byte Metadata request claiming 2^31 - 1 topics (the array
    // length that makes a trusting decoder reserve tens of GiB).
    for version in [1i16, 4, 8] {
        let mut stream = raw_connect(address);
        let mut body = header_v1(3, version, 18);
        body.extend_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(body.len(), 14);
        send_raw(&mut stream, &frame(&body));
        assert_closed(
            &mut stream,
            &format!("Metadata v{version} claiming 2^31 topics"),
        );
    }
    // The flexible form: compact array length varint 0xFFFFFFFF.
    let mut stream = raw_connect(address);
    let mut body = header_v1(3, 12, 19);
    body.push(0); // header tagged fields
    body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    send_raw(&mut stream, &frame(&body));
    assert_closed(&mut stream, "Metadata v12 claiming 2^32 topics");
    assert_serves(&mut broker, &mut checks, "huge array counts");

    // Pipelined: a good request, then a malformed one. The good one is
    // answered before the connection closes.
    let mut stream = raw_connect(address);
    let mut all_topics = MetadataRequest::default();
    all_topics.topics = None;
    send_request(&mut stream, ApiKey::Metadata, 1, 20, &all_topics);
    send_raw(&mut stream, &frame(&header_v1(999, 0, 21)));
    let response: MetadataResponse = receive_response(&mut stream, ApiKey::Metadata, 1, 20);
    assert!(response
        .topics
        .iter()
        .any(|topic| topic.name.as_ref().map(|n| n.as_str()) == Some(TOPIC)));
    assert_closed(&mut stream, "after the pipelined good request");

    // A record batch whose CRC does not match: CORRUPT_MESSAGE for that
    // partition, nothing appended, and the connection stays open.
    let mut stream = raw_connect(address);
    let mut batch = sluice_engine::batch::build_batch(now_ms(), &[b"first", b"second"]);
    let last = batch.len() - 2;
    batch[last] ^= 0xff; // a byte of the last record's value, inside the CRC's range
    for (correlation_id, version) in [(22, 3i16), (23, 8), (24, 9), (25, 11)] {
        send_request(
            &mut stream,
            ApiKey::Produce,
            version,
            correlation_id,
            &produce_request(Bytes::from(batch.clone())),
        );
        let response: ProduceResponse =
            receive_response(&mut stream, ApiKey::Produce, version, correlation_id);
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(
            partition.error_code, CORRUPT_MESSAGE,
            "Produce v{version} with a bad CRC"
        );
        assert_eq!(partition.base_offset, -1);
    }
    // The same connection then produces a good batch.
    let good = sluice_engine::batch::build_batch(now_ms(), &[b"good"]);
    send_request(
        &mut stream,
        ApiKey::Produce,
        9,
        26,
        &produce_request(Bytes::from(good)),
    );
    let response: ProduceResponse = receive_response(&mut stream, ApiKey::Produce, 9, 26);
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(
        (partition.error_code, partition.base_offset),
        (0, checks),
        "a good batch after bad ones"
    );
    checks += 1;
    assert_serves(&mut broker, &mut checks, "bad CRC");

    let rss_after = broker.rss_bytes();
    assert!(
        rss_after < rss_before + RSS_GROWTH_BYTES_MAX,
        "resident memory grew from {} to {} MiB",
        rss_before >> 20,
        rss_after >> 20
    );
    // The broker logged why it closed the connections.
    assert!(
        broker.log().contains("malformed request"),
        "no 'malformed request' in the broker log"
    );
}

/// A broker whose log cannot be written (stderr on a full disk, here
/// `/dev/full`) keeps serving and stops cleanly. The log formatter reports
/// its own write failures on stderr, which panics when stderr is what
/// failed: the shard that logged died (seen when a disk shared by the data
/// and the log filled up).
#[test]
fn an_unwritable_log_does_not_stop_the_broker() {
    let mut broker = TestBroker::start_logging_to(Some(Path::new("/dev/full")), &[]);
    broker.create_topic(TOPIC, 1);
    let mut checks = 0i64;
    assert_serves(&mut broker, &mut checks, "log on a full device");
    // A malformed frame makes the broker log why it closed the connection.
    let mut stream = raw_connect(broker.address());
    send_raw(&mut stream, &frame(&[0, 3, 0]));
    assert_closed(&mut stream, "3-byte frame");
    assert_serves(&mut broker, &mut checks, "a logged connection error");
    assert!(
        broker.stop(Stop::Term),
        "the broker did not stop cleanly with an unwritable log"
    );
}
