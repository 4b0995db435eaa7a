//! A topic deleted while its partitions' files are still being opened.
//!
//! A partition's writer opens a segment file at its first write and at
//! every roll; a topic deleted while it is written has file opens in flight
//! when its directories are set aside. glommio looks a
//! file's path up again after opening it and panics when the path is gone,
//! so such a deletion used to take the whole broker down (seen at the end
//! of a 10,000-partition benchmark run). The broker must stay up, and go on
//! serving.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{admin_options, create_topic, produce_all, read_all, Record, TestBroker};
use futures_lite::future::block_on;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, PurgeConfig};

/// Partitions per topic.
const PARTITIONS: i32 = 500;
/// The topics' `segment.bytes`: the smallest, so that nearly every append
/// rolls a segment and opens a file.
const SEGMENT_BYTES: &str = "4096";
const VALUE_BYTES: usize = 3_000;
/// Topics written and deleted in turn.
const ROUNDS: usize = 6;
/// How long a topic is written before it is deleted under its writers.
const WRITING: Duration = Duration::from_millis(700);

#[test]
fn deleting_a_topic_whose_files_are_being_opened_keeps_the_broker_up() {
    let mut broker = TestBroker::start();
    let admin = broker.admin();
    for round in 0..ROUNDS {
        let topic = format!("short-lived-{round}");
        create_topic(
            &admin,
            &topic,
            PARTITIONS,
            &[("segment.bytes", SEGMENT_BYTES)],
        );
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let producer: BaseProducer = broker
                .client_config()
                .set("linger.ms", "0")
                .create()
                .expect("producer");
            let (topic, stop) = (topic.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let value = vec![b'w'; VALUE_BYTES];
                let mut partition = 0;
                while !stop.load(Ordering::Relaxed) {
                    let record = BaseRecord::<(), Vec<u8>>::to(&topic)
                        .partition(partition)
                        .payload(&value);
                    // Refused sends (a full queue, the topic gone) are
                    // dropped: what matters is appends in flight.
                    let _ = producer.send(record);
                    producer.poll(Duration::ZERO);
                    partition = (partition + 1) % PARTITIONS;
                }
                producer.purge(PurgeConfig::default().queue().inflight());
            })
        };
        std::thread::sleep(WRITING);
        // Under the writers: their partitions are rolling segments.
        let results = block_on(admin.delete_topics(&[topic.as_str()], &admin_options()))
            .expect("DeleteTopics");
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("the writer thread");
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        broker.assert_running();
    }
    // Still serving: a new topic takes records and gives them back.
    create_topic(&admin, "after", 1, &[]);
    let records: Vec<Record> = (0..10)
        .map(|index| Record::with_value(0, format!("after-{index}").into_bytes()))
        .collect();
    produce_all(&broker, "after", &[], &records);
    let read = read_all(&broker, "after", 1);
    assert_eq!(read[&0].len(), records.len(), "records read back");
    broker.assert_running();
    let log = broker.log();
    assert!(
        !log.contains("panicked"),
        "the broker logged a panic:\n{log}"
    );
    // A deleted partition's failed writes are its own: the data directory
    // the other partitions share is not taken for failing.
    assert!(
        !log.contains("data directory failing"),
        "the data directory was taken for failing:\n{log}"
    );
}
