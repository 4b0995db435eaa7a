//! A data directory written by a single-node broker of the metadata-file
//! era (`meta/cluster.snapshot`, no metadata log) opens with no new flags:
//! its topics move into the metadata log once, the file is set aside, and
//! every record is still there, then and after later restarts.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{produce_all, read_all, Record, Stop, TestBroker};
use sluice_engine::metadata::{FileMetadataStore, MetadataStore};
use sluice_engine::{ClusterMetadata, DmaStorage, PartitionState, TopicMetadata};

const TOPIC: &str = "kept";
const PARTITIONS: i32 = 3;
const RECORDS: usize = 30;

/// Writes the metadata-file-era layout: the metadata file, no log.
fn write_single_node_metadata(data_dir: &Path) {
    std::fs::remove_dir_all(data_dir.join("meta/raft")).expect("remove the metadata log");
    let mut metadata = ClusterMetadata {
        version: 42,
        cluster_id: "single-node-cluster".into(),
        next_producer_id: 5000,
        ..Default::default()
    };
    metadata.topics.insert(
        TOPIC.into(),
        TopicMetadata {
            name: TOPIC.into(),
            id: [7; 16],
            partitions: PARTITIONS,
            configs: BTreeMap::new(),
            placement: (0..PARTITIONS).map(|_| PartitionState::led_by(1)).collect(),
        },
    );
    let dir = data_dir.to_path_buf();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            FileMetadataStore::new(DmaStorage, dir, 1)
                .save(&metadata)
                .await
                .expect("write the metadata file");
        })
        .expect("executor")
        .join()
        .expect("join");
}

#[test]
fn a_single_node_metadata_file_moves_into_the_metadata_log() {
    let mut broker = TestBroker::start();
    broker.create_topic(TOPIC, PARTITIONS);
    let records: Vec<Record> = (0..RECORDS)
        .map(|index| Record::with_value(index as i32 % PARTITIONS, format!("v{index}").into()))
        .collect();
    produce_all(&broker, TOPIC, &[("acks", "all")], &records);
    assert!(broker.stop(Stop::Term), "clean stop");

    let data_dir = broker.data_dir();
    write_single_node_metadata(&data_dir);
    broker.start_again();
    let read = read_all(&broker, TOPIC, PARTITIONS);
    let count: usize = read.values().map(Vec::len).sum();
    assert_eq!(count, RECORDS, "records after migration: {read:?}");
    assert!(data_dir.join("meta/raft/snapshot").exists());
    assert!(data_dir.join("meta/cluster.snapshot.migrated").exists());
    assert!(!data_dir.join("meta/cluster.snapshot").exists());

    // From the metadata log alone, after a clean stop and after kill -9.
    broker.restart(Stop::Term);
    broker.restart(Stop::Kill);
    let read = read_all(&broker, TOPIC, PARTITIONS);
    let count: usize = read.values().map(Vec::len).sum();
    assert_eq!(count, RECORDS, "records after restarts: {read:?}");
    broker.stop(Stop::Term);
}
