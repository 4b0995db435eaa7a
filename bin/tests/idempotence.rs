//! Idempotent produce, checked batch by batch on the wire: a retried batch
//! is answered with its original offset and not appended again (before and
//! after a clean restart and a `kill -9`), a sequence gap is refused with
//! OUT_OF_ORDER_SEQUENCE_NUMBER, a stale epoch with INVALID_PRODUCER_EPOCH,
//! and producer ids are never handed out twice, even across restarts. A
//! batch whose only gap is an earlier batch refused with a retriable error
//! gets that error, not OUT_OF_ORDER_SEQUENCE_NUMBER.

mod common;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::batch::{build_batch_with, BuildBatch};

use rdkafka::admin::{AlterConfig, ResourceSpecifier};

use common::{now_ms, raw_connect, read_all, receive_response, send_request, Stop, TestBroker};

const TOPIC: &str = "exactly-once";
const PRODUCE_VERSION: i16 = 9;
const INIT_VERSION: i16 = 4;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const NOT_ENOUGH_REPLICAS: i16 = 19;

struct Client {
    stream: std::net::TcpStream,
    correlation_id: i32,
}

impl Client {
    fn connect(broker: &TestBroker) -> Client {
        Client {
            stream: raw_connect(broker.address()),
            correlation_id: 0,
        }
    }

    fn next_id(&mut self) -> i32 {
        self.correlation_id += 1;
        self.correlation_id
    }

    /// A new producer id and epoch.
    fn init_producer_id(&mut self) -> (i64, i16) {
        let mut request = InitProducerIdRequest::default();
        request.transactional_id = None;
        request.transaction_timeout_ms = 60_000;
        request.producer_id = ProducerId(-1);
        request.producer_epoch = -1;
        let id = self.next_id();
        send_request(
            &mut self.stream,
            ApiKey::InitProducerId,
            INIT_VERSION,
            id,
            &request,
        );
        let response: InitProducerIdResponse =
            receive_response(&mut self.stream, ApiKey::InitProducerId, INIT_VERSION, id);
        assert_eq!(response.error_code, 0, "InitProducerId");
        (response.producer_id.0, response.producer_epoch)
    }

    /// Produces one batch (acks=all) to partition 0; returns the partition's
    /// (error code, base offset).
    fn produce(&mut self, batch: &[u8]) -> (i16, i64) {
        let mut partition = PartitionProduceData::default();
        partition.index = 0;
        partition.records = Some(Bytes::copy_from_slice(batch));
        let mut topic = TopicProduceData::default();
        topic.name = TopicName(StrBytes::from_static_str(TOPIC));
        topic.partition_data = vec![partition];
        let mut request = ProduceRequest::default();
        request.acks = -1;
        request.timeout_ms = 30_000;
        request.topic_data = vec![topic];
        let id = self.next_id();
        send_request(
            &mut self.stream,
            ApiKey::Produce,
            PRODUCE_VERSION,
            id,
            &request,
        );
        let response: ProduceResponse =
            receive_response(&mut self.stream, ApiKey::Produce, PRODUCE_VERSION, id);
        let partition = &response.responses[0].partition_responses[0];
        (partition.error_code, partition.base_offset)
    }
}

/// A batch of `count` records of producer `(id, epoch)` starting at
/// `sequence`; record values name the sequence numbers.
fn batch(producer: (i64, i16), sequence: i32, count: i32) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (sequence..sequence + count)
        .map(|n| format!("pid {} seq {n}", producer.0).into_bytes())
        .collect();
    let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    build_batch_with(
        BuildBatch {
            base_timestamp: now_ms(),
            producer_id: producer.0,
            producer_epoch: producer.1,
            base_sequence: sequence,
            attributes: 0,
        },
        &values,
    )
}

/// The values in the partition, in offset order.
fn values(broker: &TestBroker) -> Vec<String> {
    read_all(broker, TOPIC, 1)[&0]
        .iter()
        .map(|record| String::from_utf8(record.value.clone().expect("a value")).expect("utf-8"))
        .collect()
}

fn expected_values(producer: (i64, i16), sequences: std::ops::Range<i32>) -> Vec<String> {
    sequences
        .map(|n| format!("pid {} seq {n}", producer.0))
        .collect()
}

#[test]
fn retried_batches_are_written_once_across_restarts() {
    let mut broker = TestBroker::start();
    broker.create_topic(TOPIC, 1);
    let mut client = Client::connect(&broker);
    let producer = client.init_producer_id();
    let other = client.init_producer_id();
    assert_ne!(
        producer.0, other.0,
        "two InitProducerId calls gave the same id"
    );

    let first = batch(producer, 0, 3);
    let second = batch(producer, 3, 2);
    assert_eq!(client.produce(&first), (0, 0));
    assert_eq!(client.produce(&second), (0, 3));
    // A retry of either of the last batches: its original offset, no append.
    assert_eq!(client.produce(&first), (0, 0), "retried first batch");
    assert_eq!(client.produce(&second), (0, 3), "retried second batch");
    // A gap in the sequence.
    assert_eq!(
        client.produce(&batch(producer, 9, 1)).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER,
        "sequence gap"
    );
    // An epoch older than the producer's current one.
    let bumped = (producer.0, producer.1 + 1);
    assert_eq!(
        client.produce(&batch(bumped, 0, 1)),
        (0, 5),
        "new epoch starting at sequence 0"
    );
    assert_eq!(
        client.produce(&batch(producer, 5, 1)).0,
        INVALID_PRODUCER_EPOCH,
        "stale epoch"
    );
    let mut want = expected_values(producer, 0..5);
    want.extend(expected_values(bumped, 0..1));
    assert_eq!(values(&broker), want);

    // The producer state survives a clean restart.
    broker.restart(Stop::Term);
    let mut client = Client::connect(&broker);
    assert_eq!(
        client.produce(&batch(bumped, 0, 1)),
        (0, 5),
        "retry after a clean restart"
    );
    assert_eq!(client.produce(&batch(bumped, 1, 2)), (0, 6));
    assert_eq!(
        client.produce(&batch(bumped, 9, 1)).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER,
        "gap after a restart"
    );
    want.extend(expected_values(bumped, 1..3));
    assert_eq!(values(&broker), want);

    // And a crash: rebuilt from the log.
    broker.restart(Stop::Kill);
    let mut client = Client::connect(&broker);
    assert_eq!(
        client.produce(&batch(bumped, 1, 2)),
        (0, 6),
        "retry after kill -9"
    );
    assert_eq!(client.produce(&batch(bumped, 3, 1)), (0, 8));
    want.extend(expected_values(bumped, 3..4));
    assert_eq!(values(&broker), want);

    // Producer ids are not reused after restarts.
    let after = client.init_producer_id();
    assert!(
        after.0 > other.0,
        "producer id {} handed out again after restarts (had {})",
        after.0,
        other.0
    );
}

/// A client pipelines its batches: when the first is refused with a
/// retriable error (here NOT_ENOUGH_REPLICAS) and the condition clears
/// before the second arrives, the second finds a sequence gap. Answered
/// OUT_OF_ORDER_SEQUENCE_NUMBER, it makes librdkafka bump its epoch and
/// renumber every batch it holds for retry, on all partitions, so batches
/// another broker stored without acknowledging are stored twice
/// (librdkafka issue 4953; the fault harness found such duplicates). The
/// second batch gets the first one's error instead, and both are then
/// retried in order with their own sequences, each stored once.
#[test]
fn a_batch_behind_a_refused_one_gets_its_error() {
    let broker = TestBroker::start();
    let admin = broker.admin();
    // One replica with min.insync.replicas=2: acks=all is refused with
    // NOT_ENOUGH_REPLICAS until the setting is lowered.
    common::create_topic(&admin, TOPIC, 1, &[("min.insync.replicas", "2")]);
    let set_min_insync = |value: &str| {
        let change =
            AlterConfig::new(ResourceSpecifier::Topic(TOPIC)).set("min.insync.replicas", value);
        futures_lite::future::block_on(admin.alter_configs([&change], &common::admin_options()))
            .expect("AlterConfigs request");
    };
    let mut client = Client::connect(&broker);
    let producer = client.init_producer_id();
    let first = batch(producer, 0, 3);
    let second = batch(producer, 3, 2);
    assert_eq!(
        client.produce(&first).0,
        NOT_ENOUGH_REPLICAS,
        "first batch with too few in-sync replicas"
    );
    set_min_insync("1");
    assert_eq!(
        client.produce(&second).0,
        NOT_ENOUGH_REPLICAS,
        "the batch behind the refused one"
    );
    assert_eq!(
        client.produce(&batch(producer, 7, 1)).0,
        NOT_ENOUGH_REPLICAS,
        "a later batch behind the same refused one"
    );
    assert_eq!(client.produce(&first), (0, 0), "the refused batch, retried");
    assert_eq!(client.produce(&second), (0, 3), "the batch behind it");
    // A gap that is not a refused batch is out of order, as before.
    assert_eq!(
        client.produce(&batch(producer, 9, 1)).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER,
        "a gap with no refused batch in it"
    );
    assert_eq!(values(&broker), expected_values(producer, 0..5));

    // The same for a producer the partition knows: the gap it expects to
    // be filled is the refused batch.
    set_min_insync("2");
    let third = batch(producer, 5, 1);
    let fourth = batch(producer, 6, 2);
    assert_eq!(client.produce(&third).0, NOT_ENOUGH_REPLICAS, "third batch");
    set_min_insync("1");
    assert_eq!(
        client.produce(&second),
        (0, 3),
        "a retry of a stored batch is still answered as one"
    );
    assert_eq!(
        client.produce(&fourth).0,
        NOT_ENOUGH_REPLICAS,
        "the batch behind the refused third"
    );
    assert_eq!(client.produce(&third), (0, 5));
    assert_eq!(client.produce(&fourth), (0, 6));
    assert_eq!(values(&broker), expected_values(producer, 0..8));

    // Two batches in a row refused: the gap starts at the first of them,
    // so a third one is still behind a refused batch (the fault schedule
    // saw this: the second refusal had replaced the first).
    set_min_insync("2");
    let fifth = batch(producer, 8, 1);
    let sixth = batch(producer, 9, 1);
    assert_eq!(client.produce(&fifth).0, NOT_ENOUGH_REPLICAS, "fifth batch");
    assert_eq!(client.produce(&sixth).0, NOT_ENOUGH_REPLICAS, "sixth batch");
    set_min_insync("1");
    assert_eq!(
        client.produce(&batch(producer, 10, 1)).0,
        NOT_ENOUGH_REPLICAS,
        "the batch behind two refused ones"
    );
    assert_eq!(client.produce(&fifth), (0, 8));
    assert_eq!(client.produce(&sixth), (0, 9));
    assert_eq!(values(&broker), expected_values(producer, 0..10));
}
