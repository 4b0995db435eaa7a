//! Transaction version 2 (KIP-890 part 2) on the wire: the feature levels
//! ApiVersions advertises, Produce v12 and TxnOffsetCommit v5 adding their
//! partitions to the transaction (no AddPartitionsToTxn, no
//! AddOffsetsToTxn), EndTxn v5 bumping the epoch, the older versions still
//! verified (KIP-890 part 1, KIP-1050 errors), transactional records
//! without a transactional id refused, and WriteTxnMarkers v2 (KIP-1228):
//! a marker of transaction version 2 must carry the bumped epoch.
//!
//! The requests are encoded with kafka-protocol because no client available
//! here speaks transaction version 2: librdkafka 2.12 (the one the rdkafka
//! crate links) and 2.16, and kafka-python 3.0.12, stop at EndTxn v3 and
//! AddPartitionsToTxn v3. The committed records are read back with
//! librdkafka's read_committed consumer.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{
    admin_options, assert_closed, consume, raw_connect, receive_response, send_request,
    start_cluster_with, text, Stop, TestBroker, WireClient,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;

use rdkafka::Offset;
use sluice_engine::batch::{attributes, build_batch, build_batch_with, BuildBatch};

const TOPIC: &str = "txn-v2";

const NONE: i16 = 0;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const CONCURRENT_TRANSACTIONS: i16 = 51;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const UNSTABLE_OFFSET_COMMIT: i16 = 88;
const TRANSACTION_ABORTABLE: i16 = 120;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// The cluster of the cross-broker test: one partition led by each broker.
const NODES: usize = 3;
/// How long a fresh cluster may take to find a coordinator or a leader.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(60);
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// WriteTxnMarkers v2 adds each marker's transaction version (KIP-1228);
/// kafka-protocol stops at v1, whose response bytes v2's are.
const WRITE_TXN_MARKERS_V2: i16 = 2;
const WRITE_TXN_MARKERS_V1: i16 = 1;
/// Transaction versions a marker may carry: from 2 on its coordinator ends
/// a transaction at a bumped epoch.
const TV1: i8 = 1;
const TV2: i8 = 2;
/// The largest count or string length one varint byte holds stored plus
/// one, as compact arrays and strings store them.
const ONE_BYTE_COMPACT_MAX: usize = 0x7e;

impl WireClient {
    /// FindCoordinator for a transactional id (1) or a group (0); creates
    /// the internal topic behind it.
    fn find_coordinator(&mut self, key: &str, key_type: i8) {
        let mut request = FindCoordinatorRequest::default();
        request.key = text(key);
        request.key_type = key_type;
        let response: FindCoordinatorResponse = self.call(ApiKey::FindCoordinator, 3, &request);
        assert_eq!(response.error_code, NONE, "FindCoordinator({key})");
    }

    /// InitProducerId v5, retried while the coordinator loads.
    fn init(&mut self, id: &str) -> (i64, i16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut request = InitProducerIdRequest::default();
            request.transactional_id = Some(TransactionalId(text(id)));
            request.transaction_timeout_ms = 60_000;
            request.producer_id = ProducerId(-1);
            request.producer_epoch = -1;
            let response: InitProducerIdResponse = self.call(ApiKey::InitProducerId, 5, &request);
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
            assert_eq!(response.error_code, NONE, "InitProducerId({id})");
            return (response.producer_id.0, response.producer_epoch);
        }
    }

    /// Produce at `version`, acks -1: one partition entry per
    /// (partition, records); returns each partition's error in order.
    fn produce(
        &mut self,
        version: i16,
        transactional_id: Option<&str>,
        entries: Vec<(i32, Vec<u8>)>,
    ) -> Vec<i16> {
        let mut topic = TopicProduceData::default();
        topic.name = TopicName(text(TOPIC));
        topic.partition_data = entries
            .into_iter()
            .map(|(partition, records)| {
                let mut data = PartitionProduceData::default();
                data.index = partition;
                data.records = Some(bytes::Bytes::from(records));
                data
            })
            .collect();
        let mut request = ProduceRequest::default();
        request.transactional_id = transactional_id.map(|id| TransactionalId(text(id)));
        request.acks = -1;
        request.timeout_ms = 10_000;
        request.topic_data = vec![topic];
        let response: ProduceResponse = self.call(ApiKey::Produce, version, &request);
        response.responses[0]
            .partition_responses
            .iter()
            .map(|partition| partition.error_code)
            .collect()
    }

    /// Produce of one transactional batch to one partition.
    fn produce_txn(
        &mut self,
        version: i16,
        id: &str,
        producer: (i64, i16),
        partition: i32,
        sequence: i32,
        values: &[&[u8]],
    ) -> i16 {
        let records = txn_batch(producer, sequence, values);
        self.produce(version, Some(id), vec![(partition, records)])[0]
    }

    /// TxnOffsetCommit of one offset of partition 0 of the topic, without a
    /// group member (generation -1, as a producer outside a group does).
    fn txn_offset_commit(
        &mut self,
        version: i16,
        id: &str,
        group: &str,
        producer: (i64, i16),
        offset: i64,
    ) -> i16 {
        let mut partition = TxnOffsetCommitRequestPartition::default();
        partition.partition_index = 0;
        partition.committed_offset = offset;
        let mut topic = TxnOffsetCommitRequestTopic::default();
        topic.name = TopicName(text(TOPIC));
        topic.partitions = vec![partition];
        let mut request = TxnOffsetCommitRequest::default();
        request.transactional_id = TransactionalId(text(id));
        request.group_id = GroupId(text(group));
        request.producer_id = ProducerId(producer.0);
        request.producer_epoch = producer.1;
        request.generation_id = -1;
        request.topics = vec![topic];
        let response: TxnOffsetCommitResponse =
            self.call(ApiKey::TxnOffsetCommit, version, &request);
        response.topics[0].partitions[0].error_code
    }

    /// EndTxn v5, retried while the coordinator loads (after a restart).
    fn end_when_loaded(
        &mut self,
        id: &str,
        producer: (i64, i16),
        commit: bool,
    ) -> (i16, (i64, i16)) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = self.end(id, producer, commit);
            let loading = [
                COORDINATOR_LOAD_IN_PROGRESS,
                COORDINATOR_NOT_AVAILABLE,
                NOT_COORDINATOR,
            ];
            if loading.contains(&answer.0) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            return answer;
        }
    }

    /// EndTxn v5: the error and the producer (id, epoch) it hands back.
    fn end(&mut self, id: &str, producer: (i64, i16), commit: bool) -> (i16, (i64, i16)) {
        let mut request = EndTxnRequest::default();
        request.transactional_id = TransactionalId(text(id));
        request.producer_id = ProducerId(producer.0);
        request.producer_epoch = producer.1;
        request.committed = commit;
        let response: EndTxnResponse = self.call(ApiKey::EndTxn, 5, &request);
        (
            response.error_code,
            (response.producer_id.0, response.producer_epoch),
        )
    }

    /// OffsetFetch v7 (require_stable) of partition 0: (error, offset).
    fn fetch_offset(&mut self, group: &str) -> (i16, i64) {
        use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
        let mut topic = OffsetFetchRequestTopic::default();
        topic.name = TopicName(text(TOPIC));
        topic.partition_indexes = vec![0];
        let mut request = OffsetFetchRequest::default();
        request.group_id = GroupId(text(group));
        request.topics = Some(vec![topic]);
        request.require_stable = true;
        let response: OffsetFetchResponse = self.call(ApiKey::OffsetFetch, 7, &request);
        let partition = &response.topics[0].partitions[0];
        (partition.error_code, partition.committed_offset)
    }

    /// The committed offset once no transaction holds it pending.
    fn stable_offset(&mut self, group: &str) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (error, offset) = self.fetch_offset(group);
            if error == UNSTABLE_OFFSET_COMMIT && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            assert_eq!(error, NONE, "OffsetFetch({group})");
            return offset;
        }
    }

    /// ListOffsets v1 latest of `partition`: the log end offset.
    fn log_end(&mut self, partition: i32) -> i64 {
        use kafka_protocol::messages::list_offsets_request::{
            ListOffsetsPartition, ListOffsetsTopic,
        };
        let mut entry = ListOffsetsPartition::default();
        entry.partition_index = partition;
        entry.timestamp = -1;
        let mut topic = ListOffsetsTopic::default();
        topic.name = TopicName(text(TOPIC));
        topic.partitions = vec![entry];
        let mut request = ListOffsetsRequest::default();
        request.replica_id = BrokerId(-1);
        request.topics = vec![topic];
        let response: ListOffsetsResponse = self.call(ApiKey::ListOffsets, 1, &request);
        let partition = &response.topics[0].partitions[0];
        assert_eq!(partition.error_code, NONE, "ListOffsets");
        partition.offset
    }
}

/// One marker of a WriteTxnMarkers request, for partitions of `TOPIC`.
#[derive(Clone)]
struct Marker {
    producer: (i64, i16),
    commit: bool,
    transaction_version: i8,
    partitions: Vec<i32>,
}

/// A WriteTxnMarkers body at `version`, laid out by hand from Kafka's
/// schema (kafka-protocol stops at v1): at v2 each marker's transaction
/// version follows its coordinator epoch.
fn write_txn_markers_body(version: i16, markers: &[Marker]) -> Vec<u8> {
    let compact = |len: usize| {
        assert!(len <= ONE_BYTE_COMPACT_MAX, "a length of {len}");
        len as u8 + 1
    };
    let mut body = vec![compact(markers.len())];
    for marker in markers {
        body.extend_from_slice(&marker.producer.0.to_be_bytes());
        body.extend_from_slice(&marker.producer.1.to_be_bytes());
        body.push(u8::from(marker.commit));
        body.push(compact(1));
        body.push(compact(TOPIC.len()));
        body.extend_from_slice(TOPIC.as_bytes());
        body.push(compact(marker.partitions.len()));
        for partition in &marker.partitions {
            body.extend_from_slice(&partition.to_be_bytes());
        }
        body.push(0); // the topic's tagged fields
        body.extend_from_slice(&0i32.to_be_bytes()); // coordinator epoch
        if version >= WRITE_TXN_MARKERS_V2 {
            body.extend_from_slice(&marker.transaction_version.to_be_bytes());
        }
        body.push(0); // the marker's tagged fields
    }
    body.push(0); // the request's tagged fields
    body
}

/// WriteTxnMarkers at `version` on a raw connection, as a coordinator on
/// another broker sends it: each partition's error, in request order.
fn write_markers(
    stream: &mut TcpStream,
    correlation_id: i32,
    version: i16,
    markers: &[Marker],
) -> Vec<i16> {
    use kafka_protocol::protocol::Encodable;
    let key = ApiKey::WriteTxnMarkers;
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(text("sluice-txn-v2-test"));
    let mut frame = bytes::BytesMut::new();
    header
        .encode(&mut frame, key.request_header_version(version))
        .expect("encoding the header");
    frame.extend_from_slice(&write_txn_markers_body(version, markers));
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&frame);
    stream.write_all(&out).expect("sending the request");
    let response: WriteTxnMarkersResponse =
        receive_response(stream, key, WRITE_TXN_MARKERS_V1, correlation_id);
    assert_eq!(response.markers.len(), markers.len());
    let mut errors = Vec::new();
    for (answer, marker) in response.markers.iter().zip(markers) {
        assert_eq!(answer.producer_id.0, marker.producer.0);
        assert_eq!(answer.topics.len(), 1);
        assert_eq!(answer.topics[0].name.0.as_str(), TOPIC);
        let partitions: Vec<i32> = answer.topics[0]
            .partitions
            .iter()
            .map(|partition| partition.partition_index)
            .collect();
        assert_eq!(partitions, marker.partitions);
        errors.extend(
            answer.topics[0]
                .partitions
                .iter()
                .map(|partition| partition.error_code),
        );
    }
    errors
}

/// An uncompressed transactional batch of `producer` at `sequence`.
fn txn_batch(producer: (i64, i16), sequence: i32, values: &[&[u8]]) -> Vec<u8> {
    build_batch_with(
        BuildBatch {
            base_timestamp: 1,
            producer_id: producer.0,
            producer_epoch: producer.1,
            base_sequence: sequence,
            attributes: attributes::TRANSACTIONAL,
        },
        values,
    )
}

fn api_versions(client: &mut WireClient, version: i16) -> ApiVersionsResponse {
    let mut request = ApiVersionsRequest::default();
    request.client_software_name = text("sluice-tests");
    request.client_software_version = text("1.0");
    client.call(ApiKey::ApiVersions, version, &request)
}

/// ApiVersions tells a Kafka 4 client that transaction version 2 is on:
/// transaction.version supported 0-2 and finalized at 2 with an epoch of at
/// least 0 (the Java client ignores features of an epoch it has seen, and
/// starts at -1). Below v4 Kafka drops supported features whose minimum is
/// 0 (KIP-1022); the finalized level is there at every flexible version.
#[test]
fn api_versions_advertise_transaction_version_2() {
    let broker = TestBroker::start();
    let mut client = WireClient::new(&broker);
    for version in [3, 4] {
        let response = api_versions(&mut client, version);
        assert_eq!(response.error_code, NONE);
        let max = |key: ApiKey| {
            response
                .api_keys
                .iter()
                .find(|api| api.api_key == key as i16)
                .map(|api| api.max_version)
        };
        // v12 is Produce's first version of transaction version 2.
        assert!(
            max(ApiKey::Produce).is_some_and(|max| max >= 12),
            "v{version}"
        );
        assert_eq!(max(ApiKey::TxnOffsetCommit), Some(5), "v{version}");
        assert_eq!(max(ApiKey::EndTxn), Some(5), "v{version}");
        assert!(
            response.finalized_features_epoch >= 0,
            "v{version}: {response:?}"
        );
        let finalized: Vec<(String, i16, i16)> = response
            .finalized_features
            .iter()
            .map(|key| {
                (
                    key.name.to_string(),
                    key.min_version_level,
                    key.max_version_level,
                )
            })
            .collect();
        assert!(
            finalized.contains(&("transaction.version".to_string(), 2, 2)),
            "v{version}: {finalized:?}"
        );
        let supported: Vec<(String, i16, i16)> = response
            .supported_features
            .iter()
            .map(|key| (key.name.to_string(), key.min_version, key.max_version))
            .collect();
        if version >= 4 {
            assert!(
                supported.contains(&("transaction.version".to_string(), 0, 2)),
                "v{version}: {supported:?}"
            );
            assert!(
                supported.contains(&("group.version".to_string(), 0, 1)),
                "v{version}: {supported:?}"
            );
        } else {
            assert!(
                supported.iter().all(|(_, min, _)| *min > 0),
                "v{version}: {supported:?}"
            );
        }
    }
    // Before the flexible versions there are no tagged fields to carry them.
    let old = api_versions(&mut client, 2);
    assert!(old.supported_features.is_empty() && old.finalized_features.is_empty());
}

/// A whole transaction as a Kafka 4 client runs it: no AddPartitionsToTxn,
/// no AddOffsetsToTxn. The committed one is read by librdkafka's
/// read_committed consumer and its offset is fetched; the aborted one at the
/// bumped epoch leaves no record and no offset; the old epochs are fenced.
#[test]
fn a_tv2_transaction_commits_and_aborts_without_add_requests() {
    const ID: &str = "tv2-whole";
    const GROUP: &str = "tv2-group";
    let broker = TestBroker::start();
    broker.create_topic(TOPIC, 2);
    let mut client = WireClient::new(&broker);
    client.find_coordinator(ID, 1);
    client.find_coordinator(GROUP, 0);
    let first = client.init(ID);

    // Transaction 1: two partitions, offsets, commit.
    for partition in [0, 1] {
        let value = format!("commit-{partition}");
        let error = client.produce_txn(
            12,
            ID,
            first,
            partition,
            0,
            &[value.as_bytes(), b"commit-x"],
        );
        assert_eq!(error, NONE, "Produce v12 to partition {partition}");
    }
    assert_eq!(client.txn_offset_commit(5, ID, GROUP, first, 7), NONE);
    let (error, second) = client.end(ID, first, true);
    assert_eq!(error, NONE, "commit");
    assert_eq!(second, (first.0, first.1 + 1), "EndTxn v5 bumps the epoch");
    assert_eq!(client.stable_offset(GROUP), 7);

    // Transaction 2 at the bumped epoch, aborted. Right after an end the
    // coordinator may still write the markers: CONCURRENT_TRANSACTIONS,
    // which a client retries.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let error = client.produce_txn(12, ID, second, 0, 0, &[b"abort-0"]);
        if error == CONCURRENT_TRANSACTIONS && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        assert_eq!(error, NONE, "Produce v12 at the bumped epoch");
        break;
    }
    assert_eq!(
        client.produce_txn(12, ID, second, 1, 0, &[b"abort-1"]),
        NONE
    );
    assert_eq!(client.txn_offset_commit(5, ID, GROUP, second, 99), NONE);
    let (error, third) = client.end(ID, second, false);
    assert_eq!(error, NONE, "abort");
    assert_eq!(third, (first.0, first.1 + 2));
    assert_eq!(client.stable_offset(GROUP), 7, "the aborted offset is gone");

    // The epochs the two transactions ran with are fenced (Kafka converts
    // the coordinator's PRODUCER_FENCED to INVALID_PRODUCER_EPOCH for
    // Produce, at every version).
    for old in [first, second] {
        assert_eq!(
            client.produce_txn(12, ID, old, 0, 5, &[b"stale"]),
            INVALID_PRODUCER_EPOCH,
            "epoch {}",
            old.1
        );
    }

    // A plain record after everything: once the consumer has it, every
    // committed record before it has been read.
    for partition in [0, 1] {
        let errors = client.produce(9, None, vec![(partition, build_batch(2, &[b"end"]))]);
        assert_eq!(errors, vec![NONE]);
    }
    let consumer = broker.consumer(&[("isolation.level", "read_committed")]);
    let records = consume(
        &consumer,
        TOPIC,
        &[0, 1],
        Offset::Beginning,
        Duration::from_secs(30),
        |records| {
            records
                .iter()
                .filter(|record| record.value.as_deref() == Some(&b"end"[..]))
                .count()
                == 2
        },
    );
    let mut values: Vec<(i32, String)> = records
        .iter()
        .map(|record| {
            (
                record.partition,
                String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    values.sort();
    let expected: Vec<(i32, String)> = [
        (0, "commit-0"),
        (0, "commit-x"),
        (0, "end"),
        (1, "commit-1"),
        (1, "commit-x"),
        (1, "end"),
    ]
    .iter()
    .map(|(partition, value)| (*partition, value.to_string()))
    .collect();
    assert_eq!(values, expected);
}

/// Below Produce v12 a transaction's first batch in a partition still needs
/// the partition added (KIP-890 part 1): v11 gets TRANSACTION_ABORTABLE
/// (KIP-1050), older versions INVALID_TXN_STATE. v12 adds it. TxnOffsetCommit
/// below v5 likewise needs AddOffsetsToTxn first.
#[test]
fn below_v12_the_partition_must_be_added_v12_adds_it() {
    const ID: &str = "tv2-verify";
    const GROUP: &str = "tv2-verify-group";
    let broker = TestBroker::start();
    broker.create_topic(TOPIC, 2);
    let mut client = WireClient::new(&broker);
    client.find_coordinator(ID, 1);
    client.find_coordinator(GROUP, 0);
    let producer = client.init(ID);

    assert_eq!(
        client.produce_txn(11, ID, producer, 0, 0, &[b"v11"]),
        TRANSACTION_ABORTABLE
    );
    assert_eq!(
        client.produce_txn(10, ID, producer, 0, 0, &[b"v10"]),
        INVALID_TXN_STATE
    );
    assert_eq!(client.log_end(0), 0, "refused batches are not in the log");
    assert_eq!(client.produce_txn(12, ID, producer, 0, 0, &[b"v12"]), NONE);
    // The transaction is open in partition 0 now: v11 batches continue it.
    assert_eq!(
        client.produce_txn(11, ID, producer, 0, 1, &[b"v11-next"]),
        NONE
    );
    // Partition 1 was not added.
    assert_eq!(
        client.produce_txn(11, ID, producer, 1, 0, &[b"v11-other"]),
        TRANSACTION_ABORTABLE
    );
    assert_eq!(client.log_end(1), 0);

    // The offsets partition is not in the transaction either.
    assert_eq!(
        client.txn_offset_commit(4, ID, GROUP, producer, 3),
        TRANSACTION_ABORTABLE
    );
    assert_eq!(
        client.txn_offset_commit(3, ID, GROUP, producer, 3),
        INVALID_TXN_STATE
    );
    assert_eq!(client.txn_offset_commit(5, ID, GROUP, producer, 3), NONE);
    // Added by v5: the older versions may commit into it now.
    assert_eq!(client.txn_offset_commit(3, ID, GROUP, producer, 4), NONE);

    let (error, _) = client.end(ID, producer, true);
    assert_eq!(error, NONE);
    assert_eq!(client.stable_offset(GROUP), 4);
    assert_eq!(client.log_end(0), 3, "two batches and the commit marker");
}

/// Transactional records need the request's transactional id: Kafka refuses
/// the whole request with TRANSACTIONAL_ID_AUTHORIZATION_FAILED for every
/// partition (plain ones too) and appends nothing; with acks=0 there is no
/// response to carry the error, so the connection is closed.
#[test]
fn transactional_records_without_a_transactional_id_are_refused() {
    const ID: &str = "tv2-no-id";
    let broker = TestBroker::start();
    broker.create_topic(TOPIC, 2);
    let mut client = WireClient::new(&broker);
    client.find_coordinator(ID, 1);
    let producer = client.init(ID);
    for version in [3, 9, 11, 12] {
        let errors = client.produce(
            version,
            None,
            vec![
                (0, build_batch(1, &[b"plain"])),
                (1, txn_batch(producer, 0, &[b"txn"])),
            ],
        );
        assert_eq!(
            errors,
            vec![TRANSACTIONAL_ID_AUTHORIZATION_FAILED; 2],
            "Produce v{version}"
        );
    }
    assert_eq!(client.log_end(0), 0, "nothing appended");
    assert_eq!(client.log_end(1), 0, "nothing appended");

    let mut request = ProduceRequest::default();
    let mut data = PartitionProduceData::default();
    data.index = 1;
    data.records = Some(bytes::Bytes::from(txn_batch(producer, 0, &[b"txn"])));
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(text(TOPIC));
    topic.partition_data = vec![data];
    request.acks = 0;
    request.timeout_ms = 10_000;
    request.topic_data = vec![topic];
    let mut stream = raw_connect(broker.address());
    send_request(&mut stream, ApiKey::Produce, 12, 1, &request);
    assert_closed(&mut stream, "acks=0 transactional records without an id");
    assert_eq!(client.log_end(1), 0, "nothing appended");
}

/// The partitions Produce v12 and TxnOffsetCommit v5 add are in the
/// coordinator's durable state before they are acknowledged: after a kill -9
/// the restarted coordinator still has them, so the commit writes its
/// markers there and the records and the offset become visible.
#[test]
fn partitions_added_by_produce_v12_survive_kill_9() {
    const ID: &str = "tv2-crash";
    const GROUP: &str = "tv2-crash-group";
    let mut broker = TestBroker::start();
    broker.create_topic(TOPIC, 2);
    let mut client = WireClient::new(&broker);
    client.find_coordinator(ID, 1);
    client.find_coordinator(GROUP, 0);
    let producer = client.init(ID);
    for partition in [0, 1] {
        assert_eq!(
            client.produce_txn(12, ID, producer, partition, 0, &[b"kept"]),
            NONE
        );
    }
    assert_eq!(client.txn_offset_commit(5, ID, GROUP, producer, 11), NONE);

    drop(client);
    broker.restart(Stop::Kill);
    let mut client = WireClient::new(&broker);
    let (error, bumped) = client.end_when_loaded(ID, producer, true);
    assert_eq!(
        error, NONE,
        "the restarted coordinator knows the transaction"
    );
    assert_eq!(bumped, (producer.0, producer.1 + 1));
    assert_eq!(client.stable_offset(GROUP), 11);

    let consumer = broker.consumer(&[("isolation.level", "read_committed")]);
    let records = consume(
        &consumer,
        TOPIC,
        &[0, 1],
        Offset::Beginning,
        Duration::from_secs(30),
        |records| records.len() == 2,
    );
    let mut seen: Vec<(i32, Option<Vec<u8>>)> = records
        .into_iter()
        .map(|record| (record.partition, record.value))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![(0, Some(b"kept".to_vec())), (1, Some(b"kept".to_vec()))]
    );
}

/// One Produce v12 request starting a transaction in partitions owned by
/// both shards: each shard's leader asks the coordinator to add its
/// partitions at the same time, and the second addition finds the first
/// being written (CONCURRENT_TRANSACTIONS). The leader retries that, as
/// Kafka's does, so every partition of every transaction is accepted.
#[test]
fn concurrent_implicit_additions_from_both_shards_all_succeed() {
    const ID: &str = "tv2-both-shards";
    const PARTITIONS: i32 = 8;
    const TRANSACTIONS: i32 = 10;
    let broker = TestBroker::start();
    broker.create_topic(TOPIC, PARTITIONS);
    let mut client = WireClient::new(&broker);
    client.find_coordinator(ID, 1);
    let mut producer = client.init(ID);
    for transaction in 0..TRANSACTIONS {
        let value = format!("txn-{transaction}");
        let entries = (0..PARTITIONS)
            .map(|partition| (partition, txn_batch(producer, 0, &[value.as_bytes()])))
            .collect();
        let errors = client.produce(12, Some(ID), entries);
        assert_eq!(
            errors,
            vec![NONE; PARTITIONS as usize],
            "transaction {transaction}: every partition added and appended"
        );
        let (error, next) = client.end(ID, producer, true);
        assert_eq!(error, NONE, "commit of transaction {transaction}");
        producer = next;
    }
    for partition in 0..PARTITIONS {
        // Each transaction: one record and one commit marker.
        assert_eq!(
            client.log_end(partition),
            i64::from(TRANSACTIONS) * 2,
            "partition {partition}"
        );
    }
}

/// EndTxn v5 abort with nothing added bumps the epoch (the client may have
/// failed before adding anything); a commit of the completed abort at the
/// new epoch is not a retry and is refused; the retry epoch repeats the abort.
#[test]
fn an_empty_abort_bumps_the_epoch() {
    const ID: &str = "tv2-empty-abort";
    let broker = TestBroker::start();
    broker.create_topic(TOPIC, 1);
    let mut client = WireClient::new(&broker);
    client.find_coordinator(ID, 1);
    let first = client.init(ID);
    let (error, second) = client.end(ID, first, false);
    assert_eq!(error, NONE, "abort of an empty transaction");
    assert_eq!(second, (first.0, first.1 + 1), "the epoch is bumped");
    let (error, _) = client.end(ID, second, true);
    assert_eq!(error, INVALID_TXN_STATE, "commit after the abort");
    let (error, repeated) = client.end(ID, first, false);
    assert_eq!((error, repeated), (NONE, second), "the abort's retry");
    // The bumped epoch runs the next transaction.
    assert_eq!(client.produce_txn(12, ID, second, 0, 0, &[b"after"]), NONE);
    let (error, third) = client.end(ID, second, true);
    assert_eq!((error, third), (NONE, (first.0, first.1 + 2)));
}

/// WriteTxnMarkers v2 (KIP-1228), as a transaction coordinator on another
/// broker sends it. A marker of transaction version 2 at the epoch of the
/// transaction open in the partition is not the bumped epoch that ends it
/// (a late or duplicate marker): refused with INVALID_PRODUCER_EPOCH, as
/// Kafka's partition leader refuses it, and nothing is written, while the
/// other marker of the same request is written. The same marker of version
/// 1, or sent at v1 (which has no version), passes the older check and ends
/// the transaction. The bumped epoch ends a transaction of version 2; that
/// marker again, with nothing open, is a retry and is accepted (Kafka,
/// KAFKA-19999); an older epoch is refused at any version.
#[test]
fn write_txn_markers_v2_refuses_a_tv2_marker_at_the_transactions_epoch() {
    const ID: &str = "tv2-markers";
    let broker = TestBroker::start();
    broker.create_topic(TOPIC, 1);
    let mut client = WireClient::new(&broker);
    client.find_coordinator(ID, 1);
    let producer = client.init(ID);
    let marker = |epoch: i16, transaction_version: i8| Marker {
        producer: (producer.0, epoch),
        commit: false,
        transaction_version,
        partitions: vec![0],
    };
    let same = producer.1;
    let bumped = producer.1 + 1;
    let mut stream = raw_connect(broker.address());

    assert_eq!(client.produce_txn(12, ID, producer, 0, 0, &[b"one"]), NONE);
    let another = Marker {
        producer: (producer.0 + 1, 0),
        commit: true,
        transaction_version: TV2,
        partitions: vec![0],
    };
    assert_eq!(
        write_markers(
            &mut stream,
            1,
            WRITE_TXN_MARKERS_V2,
            &[marker(same, TV2), another]
        ),
        vec![INVALID_PRODUCER_EPOCH, NONE]
    );
    assert_eq!(
        client.log_end(0),
        2,
        "the batch and the other producer's marker"
    );
    assert_eq!(
        write_markers(&mut stream, 2, WRITE_TXN_MARKERS_V2, &[marker(same, TV1)]),
        vec![NONE]
    );
    assert_eq!(client.log_end(0), 3, "the version 1 marker is written");

    // The coordinator still has the partition in the transaction: the next
    // batch opens a transaction there again.
    assert_eq!(client.produce_txn(12, ID, producer, 0, 1, &[b"two"]), NONE);
    assert_eq!(
        write_markers(&mut stream, 3, WRITE_TXN_MARKERS_V2, &[marker(same, TV2)]),
        vec![INVALID_PRODUCER_EPOCH]
    );
    assert_eq!(client.log_end(0), 4, "nothing written");
    assert_eq!(
        write_markers(&mut stream, 4, WRITE_TXN_MARKERS_V1, &[marker(same, TV2)]),
        vec![NONE],
        "v1 carries no transaction version"
    );
    assert_eq!(client.log_end(0), 5);

    assert_eq!(
        client.produce_txn(12, ID, producer, 0, 2, &[b"three"]),
        NONE
    );
    for (correlation_id, what) in [(5, "the bumped epoch"), (6, "its retry")] {
        assert_eq!(
            write_markers(
                &mut stream,
                correlation_id,
                WRITE_TXN_MARKERS_V2,
                &[marker(bumped, TV2)]
            ),
            vec![NONE],
            "{what}"
        );
    }
    assert_eq!(client.log_end(0), 8);
    for (correlation_id, version, transaction_version) in [
        (7, WRITE_TXN_MARKERS_V2, TV2),
        (8, WRITE_TXN_MARKERS_V2, TV1),
        (9, WRITE_TXN_MARKERS_V1, TV1),
    ] {
        assert_eq!(
            write_markers(
                &mut stream,
                correlation_id,
                version,
                &[marker(same, transaction_version)]
            ),
            vec![INVALID_PRODUCER_EPOCH],
            "an older epoch at v{version}, transaction version {transaction_version}"
        );
    }
    assert_eq!(client.log_end(0), 8);

    // Every transaction here was aborted: a read_committed consumer reads
    // only the plain record after them.
    let committed = {
        let errors = client.produce(9, None, vec![(0, build_batch(2, &[b"end"]))]);
        assert_eq!(errors, vec![NONE]);
        let consumer = broker.consumer(&[("isolation.level", "read_committed")]);
        consume(
            &consumer,
            TOPIC,
            &[0],
            Offset::Beginning,
            Duration::from_secs(30),
            |records| {
                records
                    .iter()
                    .any(|record| record.value.as_deref() == Some(&b"end"[..]))
            },
        )
    };
    let values: Vec<Option<Vec<u8>>> = committed.into_iter().map(|record| record.value).collect();
    assert_eq!(
        values,
        vec![Some(b"end".to_vec())],
        "every transaction aborted"
    );
}

/// A transaction of version 2 whose partitions are led by other brokers
/// than its coordinator: the coordinator sends each leader WriteTxnMarkers
/// v2 with transaction version 2 and the epoch bumped at the end, which
/// passes the leader's check (above the transaction's epoch), so every
/// partition gets its marker; the next transaction at the bumped epoch
/// commits the same way. Markers at the transaction's own epoch would be
/// refused, the partitions would stay open and read_committed would see
/// nothing.
#[test]
fn tv2_markers_to_other_brokers_carry_the_bumped_epoch() {
    const ID: &str = "tv2-across";
    let brokers = start_cluster_with(NODES, &[]);
    let replicas: Vec<[i32; 1]> = (1..=NODES as i32).map(|node| [node]).collect();
    let assignment: Vec<&[i32]> = replicas.iter().map(|replica| &replica[..]).collect();
    let topic = rdkafka::admin::NewTopic::new(
        TOPIC,
        NODES as i32,
        rdkafka::admin::TopicReplication::Variable(&assignment),
    );
    let created = futures_lite::future::block_on(
        brokers[0].admin().create_topics(&[topic], &admin_options()),
    )
    .expect("CreateTopics answered");
    assert!(created[0].is_ok(), "{created:?}");

    // The coordinator, from any broker once the state topic has leaders.
    let mut any = WireClient::new(&brokers[0]);
    let deadline = Instant::now() + CLUSTER_TIMEOUT;
    let coordinator = loop {
        let mut request = FindCoordinatorRequest::default();
        request.key = text(ID);
        request.key_type = 1;
        let response: FindCoordinatorResponse = any.call(ApiKey::FindCoordinator, 3, &request);
        if response.error_code == NONE {
            break response.node_id.0;
        }
        assert!(Instant::now() < deadline, "no coordinator: {response:?}");
        std::thread::sleep(RETRY_INTERVAL);
    };
    let node_index = |node: i32| usize::try_from(node - 1).expect("node ids start at 1");
    let mut coordinator_client = WireClient::new(&brokers[node_index(coordinator)]);
    let mut leaders: Vec<WireClient> = brokers.iter().map(WireClient::new).collect();
    let mut producer = coordinator_client.init(ID);
    for transaction in 0..2 {
        for (partition, leader) in leaders.iter_mut().enumerate() {
            let partition = partition as i32;
            let value = format!("txn-{transaction}-{partition}");
            let deadline = Instant::now() + CLUSTER_TIMEOUT;
            loop {
                let error = leader.produce_txn(12, ID, producer, partition, 0, &[value.as_bytes()]);
                // A leader that has not learnt of the partition yet, a
                // coordinator still loading, or the previous transaction's
                // markers still being written: a client retries these.
                let retriable = [
                    UNKNOWN_TOPIC_OR_PARTITION,
                    NOT_LEADER_OR_FOLLOWER,
                    COORDINATOR_LOAD_IN_PROGRESS,
                    COORDINATOR_NOT_AVAILABLE,
                    NOT_COORDINATOR,
                    CONCURRENT_TRANSACTIONS,
                ];
                if retriable.contains(&error) && Instant::now() < deadline {
                    std::thread::sleep(RETRY_INTERVAL);
                    continue;
                }
                assert_eq!(
                    error, NONE,
                    "transaction {transaction}, partition {partition}"
                );
                break;
            }
        }
        let (error, next) = coordinator_client.end(ID, producer, true);
        assert_eq!(error, NONE, "commit of transaction {transaction}");
        assert_eq!(
            next,
            (producer.0, producer.1 + 1),
            "EndTxn v5 bumps the epoch"
        );
        producer = next;
    }

    // Each partition, on its own leader: two records and two commit
    // markers, every transaction ended.
    for (partition, leader) in leaders.iter_mut().enumerate() {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        while leader.log_end(partition as i32) < 4 && Instant::now() < deadline {
            std::thread::sleep(RETRY_INTERVAL);
        }
        assert_eq!(leader.log_end(partition as i32), 4, "partition {partition}");
    }
    let partitions: Vec<i32> = (0..NODES as i32).collect();
    let consumer = brokers[0].consumer(&[("isolation.level", "read_committed")]);
    let records = consume(
        &consumer,
        TOPIC,
        &partitions,
        Offset::Beginning,
        CLUSTER_TIMEOUT,
        |records| records.len() == 2 * NODES,
    );
    let mut values: Vec<String> = records
        .iter()
        .map(|record| {
            String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned()
        })
        .collect();
    values.sort();
    let expected: Vec<String> = (0..2)
        .flat_map(|transaction| {
            (0..NODES).map(move |partition| format!("txn-{transaction}-{partition}"))
        })
        .collect();
    assert_eq!(values, expected);
}
