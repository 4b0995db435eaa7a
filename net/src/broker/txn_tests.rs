//! The partition side of transactions through a one-shard broker: produce
//! of transactional batches, markers written with `write_marker`, and what
//! read_committed reads, ListOffsets and fenced epochs answer.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use sluice_engine::batch::{self, attributes, BuildBatch};
use sluice_engine::shard::mesh_plan;
use sluice_engine::{DmaStorage, Mesh, TxnMarker};

use super::*;
use crate::config::BrokerConfig;

const TOPIC: &str = "txn";
const PRODUCER: i64 = 77;

fn temp_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("sluice-txn-{}-{nanos}", std::process::id()))
}

fn batch_of(records: usize, options: BuildBatch) -> Bytes {
    let values: Vec<&[u8]> = (0..records).map(|_| b"value".as_slice()).collect();
    Bytes::from(batch::build_batch_with(options, &values))
}

fn transactional(epoch: i16, sequence: i32, records: usize) -> Bytes {
    batch_of(
        records,
        BuildBatch {
            producer_id: PRODUCER,
            producer_epoch: epoch,
            base_sequence: sequence,
            attributes: attributes::TRANSACTIONAL,
            // Later than the plain batches (timestamp 0): the largest
            // timestamp of the partition is in a transaction.
            base_timestamp: 1_000,
        },
    )
}

async fn produce(broker: &Broker, records: Bytes) -> ProduceOutcome {
    let entry = ProduceEntry {
        topic: TOPIC.into(),
        partition: 0,
        records: Some(records),
        transactional_id: None,
        version: 9,
    };
    let mut outcomes = broker.produce_local(vec![entry], -1, 30_000).await;
    outcomes.pop().expect("one outcome")
}

async fn read(broker: &Broker, offset: i64, read_committed: bool) -> ReadOutcome {
    let entry = ReadEntry {
        topic: TOPIC.into(),
        partition: 0,
        offset,
        max_bytes: 1 << 20,
        read_committed,
        replica: None,
    };
    broker
        .read_local(vec![entry], usize::MAX)
        .await
        .pop()
        .expect("one outcome")
}

/// The last offset of the batches a read returned, or -1.
fn last_offset_read(outcome: &ReadOutcome) -> i64 {
    let mut whole = Vec::new();
    for chunk in &outcome.chunks {
        whole.extend_from_slice(chunk);
    }
    match batch::split_and_validate(&Bytes::from(whole), usize::MAX) {
        Ok(batches) => batches
            .last()
            .map_or(-1, |(header, _)| header.last_offset()),
        Err(_) => -1,
    }
}

async fn latest(broker: &Broker, read_committed: bool) -> i64 {
    let query = (TOPIC.to_string(), 0, -1, read_committed);
    let answers = broker.list_offsets_local(vec![query]).await;
    assert_eq!(answers[0].error_code, code::NONE);
    answers[0].offset
}

#[test]
fn open_and_aborted_transactions_through_the_broker() {
    let dir = temp_dir();
    let cleanup = dir.clone();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            sluice_engine::metadata::prepare_data_dir(&DmaStorage, &dir)
                .await
                .expect("data dir");
            let mesh = Mesh::join(mesh_plan::<ShardRequest, ShardResponse>(1))
                .await
                .expect("mesh");
            let config = BrokerConfig {
                data_dir: dir,
                shards: 1,
                pin_shards: false,
                ..Default::default()
            };
            let broker = Broker::new(Arc::new(config), mesh).await.expect("broker");
            broker.start_controller().await.expect("controller");
            broker.wait_ready().await;
            let topic = NewTopic {
                name: TOPIC.into(),
                partitions: 1,
                replication_factor: -1,
                assignments: Vec::new(),
                configs: Default::default(),
                validate_only: false,
            };
            broker
                .controller_call(ControllerRequest::CreateTopics(vec![topic]))
                .await
                .expect("create");

            // Offsets 0..=2 plain, 3..=4 an open transaction, 5..=6 plain.
            let plain = produce(&broker, batch_of(3, BuildBatch::default())).await;
            assert_eq!((plain.error_code, plain.base_offset), (code::NONE, 0));
            let open = produce(&broker, transactional(0, 0, 2)).await;
            assert_eq!((open.error_code, open.base_offset), (code::NONE, 3));
            let after = produce(&broker, batch_of(2, BuildBatch::default())).await;
            assert_eq!(after.base_offset, 5);

            let committed = read(&broker, 0, true).await;
            assert_eq!(committed.error_code, code::NONE);
            assert_eq!(committed.high_watermark, 7);
            assert_eq!(committed.last_stable_offset, 3);
            assert_eq!(
                last_offset_read(&committed),
                2,
                "read_committed stops at the LSO"
            );
            assert!(committed.aborted_transactions.is_empty());
            let uncommitted = read(&broker, 0, false).await;
            assert_eq!(last_offset_read(&uncommitted), 6);
            assert!(uncommitted.aborted_transactions.is_empty());
            assert_eq!(latest(&broker, true).await, 3);
            assert_eq!(latest(&broker, false).await, 7);
            // By time: the records at and after the LSO are not offered to
            // read_committed consumers.
            let max_time = |read_committed| (TOPIC.to_string(), 0, -3, read_committed);
            let answers = broker
                .list_offsets_local(vec![max_time(true), max_time(false)])
                .await;
            assert_eq!(
                (
                    answers[0].error_code,
                    answers[0].timestamp,
                    answers[0].offset
                ),
                (code::NONE, -1, -1)
            );
            assert_eq!(
                (
                    answers[1].error_code,
                    answers[1].timestamp,
                    answers[1].offset
                ),
                (code::NONE, 1_000, 4)
            );

            // The coordinator aborts with a bumped epoch (marker at 7).
            let abort = TxnMarker {
                producer_id: PRODUCER,
                producer_epoch: 1,
                commit: false,
                coordinator_epoch: 0,
                transaction_version: 0,
            };
            assert_eq!(broker.write_marker(TOPIC, 0, abort).await, code::NONE);
            let committed = read(&broker, 0, true).await;
            assert_eq!(committed.last_stable_offset, 8);
            assert_eq!(last_offset_read(&committed), 7);
            assert_eq!(committed.aborted_transactions, vec![(PRODUCER, 3)]);
            let tail = read(&broker, 5, true).await;
            assert_eq!(tail.aborted_transactions, vec![(PRODUCER, 3)]);
            let past = {
                let more = produce(&broker, batch_of(1, BuildBatch::default())).await;
                assert_eq!(more.base_offset, 8);
                read(&broker, 8, true).await
            };
            assert!(past.aborted_transactions.is_empty(), "the abort lies below");
            assert_eq!(latest(&broker, true).await, 9);

            // The old epoch is fenced: markers and produce requests get
            // INVALID_PRODUCER_EPOCH, as from Kafka's partition leader.
            let stale = TxnMarker {
                producer_epoch: 0,
                ..abort
            };
            assert_eq!(
                broker.write_marker(TOPIC, 0, stale).await,
                code::INVALID_PRODUCER_EPOCH
            );
            let fenced = produce(&broker, transactional(0, 2, 1)).await;
            assert_eq!(fenced.error_code, code::INVALID_PRODUCER_EPOCH);
            // Unknown partitions.
            assert_eq!(
                broker.write_marker("missing", 0, abort).await,
                code::UNKNOWN_TOPIC_OR_PARTITION
            );
            assert_eq!(
                broker.write_marker(TOPIC, 4, abort).await,
                code::UNKNOWN_TOPIC_OR_PARTITION
            );
            // A commit of a new transaction in the bumped epoch.
            let next = produce(&broker, transactional(1, 0, 2)).await;
            assert_eq!((next.error_code, next.base_offset), (code::NONE, 9));
            assert_eq!(latest(&broker, true).await, 9);
            let commit = TxnMarker {
                commit: true,
                ..abort
            };
            assert_eq!(broker.write_marker(TOPIC, 0, commit).await, code::NONE);
            assert_eq!(latest(&broker, true).await, 12);
            let all = read(&broker, 0, true).await;
            assert_eq!(all.aborted_transactions, vec![(PRODUCER, 3)]);
            broker.shutting_down.set(true);
            broker.close_logs().await;
        })
        .expect("executor")
        .join()
        .expect("executor ran");
    let _ = std::fs::remove_dir_all(cleanup);
}
