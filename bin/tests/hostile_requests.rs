//! 10,000 randomly mutated valid requests, each on a connection of its own:
//! every one is answered (with a Kafka error code or not) or its connection
//! is closed, never left hanging; the broker stays up, and a normal
//! librdkafka producer running throughout loses nothing it was told was
//! stored.
//!
//! Each mutated request is followed on its connection by a valid
//! ApiVersions: a request that gets no answer by design (a produce that
//! mutated into acks=0) is then still followed by that answer, so "no answer
//! and no close" can only be a hang.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    fetch_request, list_offsets_request, metadata_request, ApiKey, ApiVersionsRequest,
    DescribeGroupsRequest, FetchRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest,
    InitProducerIdRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest,
    RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

use common::{now_ms, read_all, Record, Rng, TestBroker, TrackedProducer};

const TOPIC: &str = "hostile";
const CASES: usize = 10_000;
/// Connections mutating at once.
const WORKERS: usize = 16;
/// How long one case may take: a mutated fetch may wait its (capped) 30 s.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);
/// Correlation id of the ApiVersions that follows each mutated request.
const PROBE_CORRELATION_ID: i32 = 0x5EED;
const SEED: u64 = 20_261_123;

fn header(api_key: ApiKey, version: i16, correlation_id: i32) -> RequestHeader {
    let mut header = RequestHeader::default();
    header.request_api_key = api_key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str("sluice-hostile-test"));
    header
}

/// A request frame without its length prefix.
fn frame<R: Encodable>(api_key: ApiKey, version: i16, body: &R) -> Vec<u8> {
    let mut out = BytesMut::new();
    header(api_key, version, 1)
        .encode(&mut out, api_key.request_header_version(version))
        .expect("encoding a header");
    body.encode(&mut out, version).expect("encoding a body");
    out.to_vec()
}

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

/// Valid requests of the APIs that read or write data and groups (not the
/// admin ones that create resources: a mutated partition count could ask
/// for 100,000 partitions, which is a quota question, not a decoding one).
fn valid_requests() -> Vec<Vec<u8>> {
    let mut requests = Vec::new();
    requests.push(frame(ApiKey::ApiVersions, 3, &{
        let mut request = ApiVersionsRequest::default();
        request.client_software_name = StrBytes::from_static_str("hostile");
        request.client_software_version = StrBytes::from_static_str("1");
        request
    }));
    requests.push(frame(ApiKey::Metadata, 12, &{
        let mut request = MetadataRequest::default();
        let mut topic = metadata_request::MetadataRequestTopic::default();
        topic.name = Some(topic_name());
        request.topics = Some(vec![topic]);
        request
    }));
    let batch = Bytes::from(sluice_engine::batch::build_batch(
        now_ms(),
        &[b"hostile one", b"hostile two"],
    ));
    for acks in [1, -1] {
        requests.push(frame(ApiKey::Produce, 9, &{
            let mut partition = PartitionProduceData::default();
            partition.index = 0;
            partition.records = Some(batch.clone());
            let mut topic = TopicProduceData::default();
            topic.name = topic_name();
            topic.partition_data = vec![partition];
            let mut request = ProduceRequest::default();
            request.acks = acks;
            request.timeout_ms = 5_000;
            request.topic_data = vec![topic];
            request
        }));
    }
    requests.push(frame(ApiKey::Fetch, 12, &{
        let mut partition = fetch_request::FetchPartition::default();
        partition.partition = 0;
        partition.fetch_offset = 0;
        partition.partition_max_bytes = 1 << 20;
        let mut topic = fetch_request::FetchTopic::default();
        topic.topic = topic_name();
        topic.partitions = vec![partition];
        let mut request = FetchRequest::default();
        request.max_wait_ms = 100;
        request.min_bytes = 1;
        request.max_bytes = 1 << 20;
        request.topics = vec![topic];
        request
    }));
    requests.push(frame(ApiKey::ListOffsets, 7, &{
        let mut partition = list_offsets_request::ListOffsetsPartition::default();
        partition.partition_index = 0;
        partition.timestamp = -1;
        let mut topic = list_offsets_request::ListOffsetsTopic::default();
        topic.name = topic_name();
        topic.partitions = vec![partition];
        let mut request = ListOffsetsRequest::default();
        request.topics = vec![topic];
        request
    }));
    requests.push(frame(ApiKey::FindCoordinator, 4, &{
        let mut request = FindCoordinatorRequest::default();
        request.coordinator_keys = vec![StrBytes::from_static_str("hostile-group")];
        request
    }));
    requests.push(frame(ApiKey::InitProducerId, 4, &{
        let mut request = InitProducerIdRequest::default();
        request.transaction_timeout_ms = 60_000;
        request.producer_id = (-1).into();
        request.producer_epoch = -1;
        request
    }));
    requests.push(frame(ApiKey::Heartbeat, 4, &{
        let mut request = HeartbeatRequest::default();
        request.group_id = GroupId(StrBytes::from_static_str("hostile-group"));
        request.generation_id = 1;
        request.member_id = StrBytes::from_static_str("nobody");
        request
    }));
    requests.push(frame(ApiKey::DescribeGroups, 5, &{
        let mut request = DescribeGroupsRequest::default();
        request.groups = vec![GroupId(StrBytes::from_static_str("hostile-group"))];
        request
    }));
    requests.push(frame(ApiKey::ListGroups, 4, &ListGroupsRequest::default()));
    requests
}

/// One random change: flipped bits, a run of random bytes, a count or
/// length field made huge or negative, a cut, or inserted bytes.
fn mutate(rng: &mut Rng, frame: &[u8]) -> Vec<u8> {
    let mut out = frame.to_vec();
    for _ in 0..=rng.below(3) {
        if out.is_empty() {
            out.push(rng.next() as u8);
        }
        let at = rng.below(out.len() as u64) as usize;
        match rng.below(6) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => {
                for byte in out.iter_mut().skip(at).take(1 + rng.below(8) as usize) {
                    *byte = rng.next() as u8;
                }
            }
            2 => {
                let value: [u8; 4] = match rng.below(4) {
                    0 => i32::MAX.to_be_bytes(),
                    1 => (-1i32).to_be_bytes(),
                    2 => i32::MIN.to_be_bytes(),
                    _ => 0x0100_0000i32.to_be_bytes(),
                };
                for (byte, value) in out.iter_mut().skip(at).zip(value) {
                    *byte = value;
                }
            }
            3 => out.truncate(at.max(1)),
            4 => {
                let len = 1 + rng.below(16) as usize;
                let inserted = rng.bytes(len);
                out.splice(at..at, inserted);
            }
            _ => out[at] = 0xFF,
        }
    }
    out
}

/// What happened to one mutated request.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The probe after it was answered.
    Answered,
    /// The broker closed the connection.
    Closed,
}

fn send_frame(stream: &mut TcpStream, frame: &[u8]) -> std::io::Result<()> {
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(frame);
    stream.write_all(&out)
}

/// Sends the mutated frame, then the probe, and reads until the probe's
/// answer or the end of the connection. Panics on a hang.
fn run_case(broker: std::net::SocketAddr, case: usize, mutated: &[u8]) -> Outcome {
    let mut stream = common::raw_connect(broker);
    stream
        .set_read_timeout(Some(CASE_TIMEOUT))
        .expect("read timeout");
    let probe = {
        let mut out = BytesMut::new();
        header(ApiKey::ApiVersions, 0, PROBE_CORRELATION_ID)
            .encode(&mut out, ApiKey::ApiVersions.request_header_version(0))
            .expect("encoding the probe");
        ApiVersionsRequest::default()
            .encode(&mut out, 0)
            .expect("encoding the probe");
        out
    };
    if send_frame(&mut stream, mutated).is_err() || send_frame(&mut stream, &probe).is_err() {
        // The broker closed the connection before taking all of it.
        return Outcome::Closed;
    }
    loop {
        match common::read_response(&mut stream) {
            Ok(response) => {
                if response.get(..4) == Some(&PROBE_CORRELATION_ID.to_be_bytes()[..]) {
                    return Outcome::Answered;
                }
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                return Outcome::Closed
            }
            Err(error) => panic!("case {case}: neither answered nor closed: {error}"),
        }
    }
}

#[test]
fn mutated_requests_are_answered_or_closed_and_hurt_no_one() {
    let mut broker = TestBroker::start();
    broker.create_topic(TOPIC, 1);
    let address = broker.address();

    // A normal producer runs throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let normal = {
        let stop = Arc::clone(&stop);
        let mut producer = TrackedProducer::new(&broker, "normal", &[("acks", "all")]);
        thread::spawn(move || {
            let mut index = 0;
            while !stop.load(Ordering::SeqCst) {
                producer.send(&Record::with_value(0, common::indexed_value(index, 100)));
                index += 1;
                thread::sleep(Duration::from_millis(2));
            }
            producer.flush();
            producer.reports()
        })
    };

    let frames = Arc::new(valid_requests());
    let next = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (frames, next, closed) =
                (Arc::clone(&frames), Arc::clone(&next), Arc::clone(&closed));
            thread::spawn(move || loop {
                let case = next.fetch_add(1, Ordering::SeqCst);
                if case >= CASES {
                    return;
                }
                let mut rng = Rng::new(SEED + case as u64);
                let valid = &frames[rng.below(frames.len() as u64) as usize];
                let mutated = mutate(&mut rng, valid);
                if run_case(address, case, &mutated) == Outcome::Closed {
                    closed.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a case failed (see above)");
    }
    broker.assert_running();
    stop.store(true, Ordering::SeqCst);
    let reports = normal.join().expect("the normal producer");
    let closed = closed.load(Ordering::SeqCst);
    eprintln!(
        "{CASES} mutated requests: {} answered, {closed} closed; normal producer sent {}",
        CASES - closed,
        reports.len()
    );
    // Both outcomes happen: the mutations reach the decoders and the
    // handlers, not just one of them.
    assert!(closed > 0 && closed < CASES, "{closed} of {CASES} closed");

    // Every acknowledged normal record is there, in order, once.
    let acknowledged: Vec<usize> = reports
        .iter()
        .enumerate()
        .filter(|(_, report)| matches!(report, Some(Ok(_))))
        .map(|(index, _)| index)
        .collect();
    assert!(
        !acknowledged.is_empty(),
        "the normal producer got nothing stored"
    );
    assert_eq!(
        acknowledged.len(),
        reports.len(),
        "the normal producer had failures beside the hostile traffic"
    );
    let stored: Vec<usize> = read_all(&broker, "normal", 1)[&0]
        .iter()
        .map(Record::value_index)
        .collect();
    assert_eq!(stored, acknowledged, "the normal producer's records");
}
