//! Records of one producer connection keep their send order in every
//! partition, without idempotence: Kafka handles the requests of one
//! connection one after another, so a plain producer's records land in the
//! order it sent them. Sluice pipelines a connection's requests; its appends
//! must still reach each partition in request order, whatever backpressure
//! (a write-behind queue that is full), frame size or shard hop is involved.
//!
//! The shape is the one that showed the defect: many small records (large
//! requests), then large records (one per request, dozens pipelined) that
//! fill the partition's write-behind queue, acks=all. Before the fix, every
//! run stored some records out of order (e.g. record 1679 after 1692).

mod common;

use common::{indexed_value, read_all, Record, TestBroker, TrackedProducer};

const PARTITIONS: i32 = 1;
const SMALL_RECORDS: usize = 1_000;
const SMALL_RECORD_BYTES: usize = 10 * 1024;
const LARGE_RECORDS: usize = 1_000;
const LARGE_RECORD_BYTES: usize = 500 * 1024;

#[test]
fn pipelined_requests_append_in_send_order() {
    let broker = TestBroker::start();
    let topic = "send-order";
    broker.create_topic(topic, PARTITIONS);
    // No idempotence and librdkafka's default in-flight limit: nothing but
    // the broker keeps the order.
    let mut producer = TrackedProducer::new(
        &broker,
        topic,
        &[
            ("enable.idempotence", "false"),
            ("acks", "all"),
            ("message.max.bytes", "1000000"),
        ],
    );
    let sizes = std::iter::repeat_n(SMALL_RECORD_BYTES, SMALL_RECORDS)
        .chain(std::iter::repeat_n(LARGE_RECORD_BYTES, LARGE_RECORDS));
    for (index, len) in sizes.enumerate() {
        let partition = (index % PARTITIONS as usize) as i32;
        producer.send(&Record::with_value(partition, indexed_value(index, len)));
    }
    producer.flush();
    let reports = producer.reports();
    let failed: Vec<_> = reports
        .iter()
        .enumerate()
        .filter(|(_, report)| !matches!(report, Some(Ok(_))))
        .take(5)
        .collect();
    assert!(failed.is_empty(), "deliveries failed: {failed:?}");
    // librdkafka retried nothing (no errors), so the order it sent in is the
    // order of the indexes within each partition.
    let stored = read_all(&broker, topic, PARTITIONS);
    for (partition, records) in &stored {
        assert_eq!(
            records.len(),
            (SMALL_RECORDS + LARGE_RECORDS) / PARTITIONS as usize,
            "partition {partition} holds every record once"
        );
        for pair in records.windows(2) {
            let (before, after) = (pair[0].value_index(), pair[1].value_index());
            assert!(
                before < after,
                "partition {partition}: record {after} was sent before record {before} but is \
                 stored after it (offsets {} and {})",
                pair[1].offset,
                pair[0].offset
            );
        }
        // The delivery reports agree with what is stored.
        for record in records {
            let index = record.value_index();
            assert_eq!(
                reports[index],
                Some(Ok((*partition, record.offset))),
                "record {index}: delivery report and stored position differ"
            );
        }
    }
}
