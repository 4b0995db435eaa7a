//! Incremental fetch sessions (KIP-227) on the wire: a full request opens a
//! session, incremental requests name only what changed and are answered
//! only about partitions with news, and the session errors are Kafka's.
//! Records are written by librdkafka; the fetches are raw requests encoded
//! by the reference protocol crate, so every field the broker answers can be
//! checked (the compat script checks kafka-python's consumer, which uses
//! sessions by default).

mod common;

use std::net::TcpStream;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use common::{
    create_topic, produce_all, raw_connect, receive_response, send_request, Record, TestBroker,
};

/// Topics named by name.
const BY_NAME: i16 = 12;
/// Topics named by id.
const BY_ID: i16 = 17;
const PARTITIONS: i32 = 4;
const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
const FETCH_SESSION_TOPIC_ID_ERROR: i16 = 106;
/// Long enough to see that a fetch with no news waits; short enough to keep
/// the test quick.
const WAIT_MS: i32 = 200;

struct Wire {
    stream: TcpStream,
    correlation_id: i32,
}

impl Wire {
    fn fetch(&mut self, version: i16, request: &FetchRequest) -> FetchResponse {
        self.correlation_id += 1;
        send_request(
            &mut self.stream,
            ApiKey::Fetch,
            version,
            self.correlation_id,
            request,
        );
        receive_response(
            &mut self.stream,
            ApiKey::Fetch,
            version,
            self.correlation_id,
        )
    }
}

enum Topic<'a> {
    Name(&'a str),
    Id(uuid::Uuid),
}

fn request(session_id: i32, epoch: i32, topic: &Topic, partitions: &[(i32, i64)]) -> FetchRequest {
    let mut request = FetchRequest::default();
    request.replica_id = (-1).into();
    request.max_wait_ms = WAIT_MS;
    request.min_bytes = 1;
    request.max_bytes = 1 << 20;
    request.session_id = session_id;
    request.session_epoch = epoch;
    if !partitions.is_empty() {
        request.topics = vec![fetch_topic(topic, partitions)];
    }
    request
}

fn fetch_topic(topic: &Topic, partitions: &[(i32, i64)]) -> FetchTopic {
    let mut fetch_topic = FetchTopic::default();
    match topic {
        Topic::Name(name) => fetch_topic.topic = TopicName(StrBytes::from_string(name.to_string())),
        Topic::Id(id) => fetch_topic.topic_id = *id,
    }
    fetch_topic.partitions = partitions
        .iter()
        .map(|&(partition, offset)| {
            let mut fetch_partition = FetchPartition::default();
            fetch_partition.partition = partition;
            fetch_partition.fetch_offset = offset;
            fetch_partition.partition_max_bytes = 1 << 20;
            fetch_partition
        })
        .collect();
    fetch_topic
}

/// (partition, high watermark, has records) of each partition a response
/// names, in its order.
fn named(response: &FetchResponse) -> Vec<(i32, i64, bool)> {
    assert_eq!(response.error_code, 0, "top-level error");
    response
        .responses
        .iter()
        .flat_map(|topic| &topic.partitions)
        .map(|partition| {
            assert_eq!(
                partition.error_code, 0,
                "partition {}",
                partition.partition_index
            );
            (
                partition.partition_index,
                partition.high_watermark,
                partition.records.as_ref().is_some_and(|r| !r.is_empty()),
            )
        })
        .collect()
}

fn produce(broker: &TestBroker, topic: &str, partitions: &[i32], each: usize) {
    let records: Vec<Record> = partitions
        .iter()
        .flat_map(|&partition| {
            (0..each).map(move |index| {
                Record::with_value(partition, format!("{partition}-{index}").into_bytes())
            })
        })
        .collect();
    produce_all(broker, topic, &[("acks", "all")], &records);
}

#[test]
fn incremental_fetches_name_only_partitions_with_news() {
    let broker = TestBroker::start();
    create_topic(&broker.admin(), "news", PARTITIONS, &[]);
    produce(&broker, "news", &[0, 1, 2, 3], 5);
    let mut wire = Wire {
        stream: raw_connect(broker.address()),
        correlation_id: 0,
    };
    let topic = Topic::Name("news");
    let all: Vec<(i32, i64)> = (0..PARTITIONS).map(|p| (p, 0)).collect();

    // A full request opens a session and is answered about everything.
    let opened = wire.fetch(BY_NAME, &request(0, 0, &topic, &all));
    let id = opened.session_id;
    assert!(id > 0, "no session opened: id {id}");
    assert_eq!(
        named(&opened),
        [(0, 5, true), (1, 5, true), (2, 5, true), (3, 5, true)]
    );

    // Every partition moved to offset 5: nothing new, nothing named, and
    // the request waited for news.
    let moved: Vec<(i32, i64)> = (0..PARTITIONS).map(|p| (p, 5)).collect();
    let started = std::time::Instant::now();
    let quiet = wire.fetch(BY_NAME, &request(id, 1, &topic, &moved));
    assert_eq!(quiet.session_id, id);
    assert!(named(&quiet).is_empty(), "{:?}", named(&quiet));
    assert!(started.elapsed().as_millis() >= (WAIT_MS as u128) * 9 / 10);

    // New records in partition 2 only: an incremental request that names
    // no partition at all is answered about partition 2 alone.
    produce(&broker, "news", &[2], 3);
    let news = wire.fetch(BY_NAME, &request(id, 2, &topic, &[]));
    assert_eq!(named(&news), [(2, 8, true)]);

    // The session remembers where partition 2 was asked from (5) until
    // the client says otherwise: the same records again.
    let again = wire.fetch(BY_NAME, &request(id, 3, &topic, &[]));
    assert_eq!(named(&again), [(2, 8, true)]);
    let caught_up = wire.fetch(BY_NAME, &request(id, 4, &topic, &[(2, 8)]));
    assert!(named(&caught_up).is_empty());

    // A forgotten partition is not read any more.
    let mut forget = request(id, 5, &topic, &[]);
    let mut forgotten = ForgottenTopic::default();
    forgotten.topic = TopicName(StrBytes::from_static_str("news"));
    forgotten.partitions = vec![1];
    forget.forgotten_topics_data = vec![forgotten];
    assert!(named(&wire.fetch(BY_NAME, &forget)).is_empty());
    produce(&broker, "news", &[1, 3], 1);
    assert_eq!(
        named(&wire.fetch(BY_NAME, &request(id, 6, &topic, &[]))),
        [(3, 6, true)]
    );

    // Session errors: the wrong epoch, a session of names read by ids, an
    // unknown session. None of them moves the session on.
    let stale = wire.fetch(BY_NAME, &request(id, 6, &topic, &[]));
    assert_eq!(stale.error_code, INVALID_FETCH_SESSION_EPOCH);
    assert_eq!(stale.session_id, 0);
    assert!(stale.responses.is_empty());
    let by_id = wire.fetch(BY_ID, &request(id, 7, &Topic::Id(uuid::Uuid::nil()), &[]));
    assert_eq!(by_id.error_code, FETCH_SESSION_TOPIC_ID_ERROR);
    let unknown = wire.fetch(BY_NAME, &request(id ^ 1, 1, &topic, &[]));
    assert_eq!(unknown.error_code, FETCH_SESSION_ID_NOT_FOUND);
    let still = wire.fetch(BY_NAME, &request(id, 7, &topic, &[(3, 6)]));
    assert!(named(&still).is_empty());

    // Epoch -1 closes the session; the request is answered in full, and
    // sessionless.
    let closed = wire.fetch(BY_NAME, &request(id, -1, &topic, &[(0, 0)]));
    assert_eq!(closed.session_id, 0);
    assert_eq!(named(&closed), [(0, 5, true)]);
    let gone = wire.fetch(BY_NAME, &request(id, 8, &topic, &[]));
    assert_eq!(gone.error_code, FETCH_SESSION_ID_NOT_FOUND);
}

#[test]
fn a_session_of_topic_ids_and_its_reopening() {
    let broker = TestBroker::start();
    create_topic(&broker.admin(), "ids", 2, &[]);
    produce(&broker, "ids", &[0, 1], 2);
    let mut wire = Wire {
        stream: raw_connect(broker.address()),
        correlation_id: 0,
    };
    let id = topic_id(&mut wire, "ids");
    let topic = Topic::Id(id);
    let opened = wire.fetch(BY_ID, &request(0, 0, &topic, &[(0, 0), (1, 2)]));
    assert!(opened.session_id > 0);
    assert_eq!(named(&opened), [(0, 2, true), (1, 2, false)]);
    assert_eq!(opened.responses[0].topic_id, id);
    produce(&broker, "ids", &[1], 1);
    let news = wire.fetch(BY_ID, &request(opened.session_id, 1, &topic, &[(0, 2)]));
    assert_eq!(named(&news), [(1, 3, true)]);
    assert_eq!(news.responses[0].topic_id, id);
    // A full request naming its session closes it and opens another.
    let reopened = wire.fetch(
        BY_ID,
        &request(opened.session_id, 0, &topic, &[(0, 2), (1, 3)]),
    );
    assert!(reopened.session_id > 0);
    assert_ne!(reopened.session_id, opened.session_id);
    let old = wire.fetch(BY_ID, &request(opened.session_id, 2, &topic, &[]));
    assert_eq!(old.error_code, FETCH_SESSION_ID_NOT_FOUND);
}

fn topic_id(wire: &mut Wire, topic: &str) -> uuid::Uuid {
    const METADATA_VERSION: i16 = 12;
    let mut request = MetadataRequest::default();
    let mut wanted = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
    wanted.name = Some(TopicName(StrBytes::from_string(topic.to_string())));
    request.topics = Some(vec![wanted]);
    wire.correlation_id += 1;
    send_request(
        &mut wire.stream,
        ApiKey::Metadata,
        METADATA_VERSION,
        wire.correlation_id,
        &request,
    );
    let response: MetadataResponse = receive_response(
        &mut wire.stream,
        ApiKey::Metadata,
        METADATA_VERSION,
        wire.correlation_id,
    );
    let id = response.topics[0].topic_id;
    assert!(!id.is_nil(), "{topic} has no id");
    id
}
