//! A full data disk: produce requests are answered (KAFKA_STORAGE_ERROR, not
//! silence), deleting a topic works and frees the disk, producing succeeds
//! again afterwards, and nothing acknowledged is lost, before or after a
//! restart.
//!
//! The data directory is a small ext4 file system on a loop device, so this
//! test needs root (as CI runs it).

mod common;

use std::time::{Duration, Instant};

use common::disk::{fill_up, SmallDisk};
use common::{
    admin_options, indexed_value, read_all, wait_until, Record, Stop, TestBroker, TrackedProducer,
};
use rdkafka::consumer::Consumer;

/// The data file system's size: a few seconds of produce fill it.
const DISK_BYTES: u64 = 128 * 1024 * 1024;
const RECORD_BYTES: usize = 64 * 1024;
/// Records sent at most while filling (twice the disk).
const FILL_RECORDS_MAX: usize = (2 * DISK_BYTES as usize) / RECORD_BYTES;
/// acks=1 records sent once the disk is full: 25 MiB, more than a
/// partition's write-behind queue holds.
const BURST_RECORDS: usize = 400;
/// Refused deliveries to see before the disk counts as full.
const REFUSALS_WANTED: usize = 20;

fn record(partition: i32, index: usize) -> Record {
    Record::with_value(partition, indexed_value(index, RECORD_BYTES))
}

/// The indexes stored in `keep`, checked to be in send order and unique.
fn stored_indexes(broker: &TestBroker) -> Vec<usize> {
    let stored = read_all(broker, "keep", 1);
    let indexes: Vec<usize> = stored[&0].iter().map(Record::value_index).collect();
    for pair in indexes.windows(2) {
        assert!(
            pair[0] < pair[1],
            "keep holds record {} after record {} (out of order or twice)",
            pair[1],
            pair[0]
        );
    }
    indexes
}

#[test]
fn a_full_disk_refuses_produce_and_deleting_a_topic_frees_it() {
    let mut disk = None;
    let mut broker = TestBroker::start_prepared(None, &[], |data_dir| {
        disk = Some(SmallDisk::mount(data_dir, DISK_BYTES));
    });
    broker.create_topic("keep", 1);
    broker.create_topic("filler", 1);

    // Fill the disk: one producer writes both topics, without retries, so
    // that every refusal is reported as the broker gave it.
    let mut keep = TrackedProducer::new(
        &broker,
        "keep",
        &[
            ("acks", "all"),
            ("retries", "0"),
            ("request.timeout.ms", "30000"),
        ],
    );
    let mut filler = TrackedProducer::new(&broker, "filler", &[("acks", "all"), ("retries", "0")]);
    let refusals = |producer: &TrackedProducer| {
        producer
            .reports()
            .iter()
            .filter(|report| matches!(report, Some(Err(_))))
            .count()
    };
    let mut sent = 0;
    while sent < FILL_RECORDS_MAX && refusals(&keep) + refusals(&filler) < REFUSALS_WANTED {
        keep.send(&record(0, sent));
        filler.send(&record(0, sent));
        sent += 1;
        if sent % 64 == 0 {
            // Let the reports catch up with what was sent.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Whatever the segments left free, another writer takes: the disk is
    // full to the last block, as a disk filled by anything else would be.
    fill_up(&broker.data_dir().join(".ballast"));
    // acks=1 appends are answered before they are written, so a burst of
    // them fills the partition's write-behind queue on the full disk; what
    // comes after must be refused, not left waiting for room that does not
    // come.
    let mut burst = TrackedProducer::new(
        &broker,
        "keep",
        &[
            ("acks", "1"),
            ("retries", "0"),
            ("request.timeout.ms", "30000"),
        ],
    );
    let burst_from = sent;
    for _ in 0..BURST_RECORDS {
        burst.send(&record(0, sent));
        sent += 1;
    }
    let started = Instant::now();
    keep.flush();
    filler.flush();
    burst.flush();
    let refused = refusals(&keep) + refusals(&filler);
    assert!(
        refused > 0,
        "{sent} records of {RECORD_BYTES} bytes to each topic fit on a {DISK_BYTES}-byte disk"
    );
    // Every delivery has an answer, and a refusal is the broker's storage
    // error, not a request that timed out unanswered.
    let all_reports = [keep.reports(), filler.reports(), burst.reports()].concat();
    assert!(
        burst
            .reports()
            .iter()
            .any(|report| matches!(report, Some(Err(_)))),
        "the burst on the full disk was accepted whole"
    );
    for report in &all_reports {
        match report {
            Some(Ok(_)) => {}
            Some(Err(error)) => assert!(
                error.contains("KafkaStorageError"),
                "a produce on the full disk failed with {error}, not KAFKA_STORAGE_ERROR"
            ),
            None => panic!(
                "a produce has no delivery report {:?} after flush",
                started.elapsed()
            ),
        }
    }
    let acknowledged_by = |producer: &TrackedProducer, first: usize| -> Vec<usize> {
        producer
            .reports()
            .iter()
            .enumerate()
            .filter(|(_, report)| matches!(report, Some(Ok(_))))
            .map(|(index, _)| first + index)
            .collect()
    };
    let acknowledged = [
        acknowledged_by(&keep, 0),
        acknowledged_by(&burst, burst_from),
    ]
    .concat();
    assert!(
        !acknowledged.is_empty(),
        "nothing was acknowledged before the disk filled"
    );
    drop(keep);
    drop(filler);
    drop(burst);

    // Deleting the filler topic works on the full disk and frees it.
    let admin = broker.admin();
    let deleted =
        futures_lite::future::block_on(admin.delete_topics(&["filler"], &admin_options()))
            .expect("DeleteTopics request");
    assert_eq!(deleted.len(), 1);
    assert!(
        deleted[0].is_ok(),
        "deleting a topic on a full disk failed: {:?}",
        deleted[0]
    );

    // Producing works again once the space is back (the partition's writer
    // retries on its own). This producer retries, and a batch answered
    // KAFKA_STORAGE_ERROR while the writer was still failing can be written
    // by the writer's own retry once space is back: as with Kafka's
    // retriable errors, only an idempotent producer's retry is then
    // recognised as the same batch, so this one is idempotent.
    let mut after = TrackedProducer::new(
        &broker,
        "keep",
        &[("acks", "all"), ("enable.idempotence", "true")],
    );
    after.send(&record(0, sent));
    after.flush();
    assert!(
        matches!(after.reports()[0], Some(Ok(_))),
        "produce after freeing the disk: {:?}",
        after.reports()[0]
    );
    drop(after);

    // Nothing acknowledged is lost, and the same holds after a restart.
    let check = |broker: &TestBroker| {
        let stored = stored_indexes(broker);
        for index in &acknowledged {
            assert!(
                stored.binary_search(index).is_ok(),
                "acknowledged record {index} is missing"
            );
        }
        assert!(
            stored.binary_search(&sent).is_ok(),
            "the record sent after freeing is missing"
        );
        stored
    };
    let before_restart = check(&broker);
    broker.restart(Stop::Term);
    wait_until(
        "the restarted broker serves metadata",
        Duration::from_secs(30),
        || {
            broker
                .consumer(&[])
                .fetch_metadata(Some("keep"), Duration::from_secs(5))
                .is_ok()
        },
    );
    assert_eq!(
        check(&broker),
        before_restart,
        "the restart changed what keep holds"
    );
    let topics = broker
        .consumer(&[])
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    assert!(
        topics.topics().iter().all(|topic| topic.name() != "filler"),
        "the deleted topic came back after the restart"
    );
    drop(broker);
    drop(disk);
}
