//! Writes the seed corpora of the fuzz targets: a handful of valid inputs
//! each, made with the project's own encoders (and `kafka-protocol`'s for
//! requests), so the fuzzer starts past the first checks of every decoder.
//!
//! Usage: `make_corpus <corpus dir> [<bomb dir>]`. Built by
//! `cargo fuzz build --features corpus make_corpus`; `tests/fuzz/run.sh
//! --seeds` does both. The optional bomb directory receives record sets
//! whose one batch inflates past the client's decompression cap, one per
//! codec; they are kept out of the corpus because each run of one inflates
//! 64 MiB.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use futures_lite::future::block_on;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use sluice_cluster::records::{encode_records, MetadataRecord};
use sluice_cluster::wal::{encode_raft_snapshot, Wal};
use sluice_engine::batch::{self, attributes, BuildBatch};
use sluice_engine::metadata::{
    BrokerInfo, ClusterMetadata, FileMetadataStore, MetadataStore, PartitionState, TopicMetadata,
};
use sluice_engine::storage::MemStorage;
use sluice_engine::txn::{build_control_batch, TxnMarker};
use sluice_engine::{BatchCache, LeaderEpoch, LogConfig, PartitionLog, Storage};
use sluice_fuzz::{
    coordinator_mode, engine_file, engine_flags, join_chunks, metadata_mode, wal_file,
};
use sluice_net::codec::SUPPORTED_APIS;
use sluice_net::glommio_client::records::{BatchBuilder, ProducerIdentity};
use sluice_net::glommio_client::Compression;
use sluice_net::groups::consumer_records::{self, ConsumerKey, CurrentAssignment, MemberMetadata};
use sluice_net::groups::records::{self as group_records, GroupValue, KeyedRecord, MemberValue};
use sluice_net::txn::records::{self as txn_records, TxnStatus, TxnValue};

/// A fixed timestamp, so the corpus is the same on every run.
const TIMESTAMP: i64 = 1_700_000_000_000;
/// The client's cap on a batch's inflated size; a bomb inflates past it.
const BOMB_BYTES: usize = sluice_net::glommio_client::constants::DECOMPRESSED_BATCH_BYTES_MAX + 1;

struct Corpus {
    dir: PathBuf,
    written: usize,
}

impl Corpus {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.dir.join(target);
        std::fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        self.written += 1;
    }
}

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: make_corpus <corpus dir> [<bomb dir>]");
        std::process::exit(2);
    };
    let mut corpus = Corpus {
        dir: PathBuf::from(dir),
        written: 0,
    };
    requests(&mut corpus);
    record_batches(&mut corpus);
    engine_files(&mut corpus);
    metadata_records(&mut corpus);
    coordinator_records(&mut corpus);
    if let Some(bombs) = args.next() {
        write_bombs(Path::new(&bombs));
    }
    println!(
        "wrote {} seeds under {}",
        corpus.written,
        corpus.dir.display()
    );
}

fn str(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

fn encode<R: Encodable>(request: &R, version: i16) -> Option<Vec<u8>> {
    let mut out = BytesMut::new();
    request.encode(&mut out, version).ok()?;
    Some(out.to_vec())
}

/// The body of a default (empty) request of `key` at `version`.
fn default_body(key: ApiKey, version: i16) -> Option<Vec<u8>> {
    macro_rules! body {
        ($($key:ident => $request:ty),* $(,)?) => {
            match key {
                $(ApiKey::$key => encode(&<$request>::default(), version),)*
                _ => None,
            }
        };
    }
    body!(
        Produce => ProduceRequest,
        Fetch => FetchRequest,
        ListOffsets => ListOffsetsRequest,
        Metadata => MetadataRequest,
        OffsetCommit => OffsetCommitRequest,
        OffsetFetch => OffsetFetchRequest,
        FindCoordinator => FindCoordinatorRequest,
        JoinGroup => JoinGroupRequest,
        Heartbeat => HeartbeatRequest,
        LeaveGroup => LeaveGroupRequest,
        SyncGroup => SyncGroupRequest,
        DescribeGroups => DescribeGroupsRequest,
        ListGroups => ListGroupsRequest,
        SaslHandshake => SaslHandshakeRequest,
        ApiVersions => ApiVersionsRequest,
        CreateTopics => CreateTopicsRequest,
        DeleteTopics => DeleteTopicsRequest,
        DeleteRecords => DeleteRecordsRequest,
        InitProducerId => InitProducerIdRequest,
        OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
        AddPartitionsToTxn => AddPartitionsToTxnRequest,
        AddOffsetsToTxn => AddOffsetsToTxnRequest,
        EndTxn => EndTxnRequest,
        WriteTxnMarkers => WriteTxnMarkersRequest,
        TxnOffsetCommit => TxnOffsetCommitRequest,
        DescribeConfigs => DescribeConfigsRequest,
        AlterConfigs => AlterConfigsRequest,
        DescribeLogDirs => DescribeLogDirsRequest,
        SaslAuthenticate => SaslAuthenticateRequest,
        CreatePartitions => CreatePartitionsRequest,
        DeleteGroups => DeleteGroupsRequest,
        ElectLeaders => ElectLeadersRequest,
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
        AlterPartitionReassignments => AlterPartitionReassignmentsRequest,
        ListPartitionReassignments => ListPartitionReassignmentsRequest,
        OffsetDelete => OffsetDeleteRequest,
        DescribeQuorum => DescribeQuorumRequest,
        DescribeCluster => DescribeClusterRequest,
        DescribeProducers => DescribeProducersRequest,
        DescribeTransactions => DescribeTransactionsRequest,
        ListTransactions => ListTransactionsRequest,
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest,
        ConsumerGroupDescribe => ConsumerGroupDescribeRequest,
        DescribeTopicPartitions => DescribeTopicPartitionsRequest,
        ListConfigResources => ListConfigResourcesRequest,
        AlterReplicaLogDirs => AlterReplicaLogDirsRequest,
        DescribeUserScramCredentials => DescribeUserScramCredentialsRequest,
        AlterUserScramCredentials => AlterUserScramCredentialsRequest,
    )
}

/// A request header as a client sends it before `key` at `version`.
fn header(key: ApiKey, version: i16) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(str("fuzz-seed")));
    encode(&header, key.request_header_version(version)).unwrap_or_default()
}

/// The `request_decode` input for `key` at `version`: selectors, then bytes.
fn request_input(key: ApiKey, version: i16, rest: &[u8]) -> Vec<u8> {
    let Some(index) = SUPPORTED_APIS.iter().position(|(api, _)| *api == key) else {
        panic!("{key:?} is not in SUPPORTED_APIS");
    };
    let (min, _) = SUPPORTED_APIS[index].1;
    let mut out = vec![index as u8, (version - min) as u8];
    out.extend_from_slice(rest);
    out
}

fn requests(corpus: &mut Corpus) {
    const TARGET: &str = "request_decode";
    // Every API at its lowest and highest version, empty.
    for (key, (min, max)) in SUPPORTED_APIS {
        for version in [*min, *max] {
            if let Some(body) = default_body(*key, version) {
                let name = format!("{key:?}-v{version}");
                corpus.put(TARGET, &name, &request_input(*key, version, &body));
            }
        }
    }
    // A few filled in, some as whole frames (header, then body).
    let batch = built_batch(Compression::None, ProducerIdentity::NONE);
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(str("orders")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(TopicName(str("orders")))),
    ]));
    let fetch = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(str("orders")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(42)
                .with_partition_max_bytes(1 << 20)])]);
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(str("orders")))
            .with_num_partitions(3)
            .with_replication_factor(1)
            .with_configs(vec![CreatableTopicConfig::default()
                .with_name(str("retention.ms"))
                .with_value(Some(str("60000")))])]);
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(str("group")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(30_000)
        .with_protocol_type(str("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(str("range"))
            .with_metadata(Bytes::from_static(
                b"\x00\x01\x00\x00\x00\x01\x00\x06orders",
            ))]);
    // Each API with the versions to encode it at and the encoded body.
    type Bodies = Vec<(i16, Option<Vec<u8>>)>;
    let filled: [(ApiKey, Bodies); 5] = [
        (
            ApiKey::Produce,
            vec![
                (3, encode(&produce, 3)),
                (9, encode(&produce, 9)),
                (11, encode(&produce, 11)),
            ],
        ),
        (
            ApiKey::Metadata,
            vec![(1, encode(&metadata, 1)), (12, encode(&metadata, 12))],
        ),
        (
            ApiKey::Fetch,
            vec![(4, encode(&fetch, 4)), (12, encode(&fetch, 12))],
        ),
        (ApiKey::CreateTopics, vec![(7, encode(&create, 7))]),
        (
            ApiKey::JoinGroup,
            vec![(5, encode(&join, 5)), (9, encode(&join, 9))],
        ),
    ];
    for (key, versions) in filled {
        for (version, body) in versions {
            let Some(body) = body else {
                continue;
            };
            let name = format!("{key:?}-v{version}-filled");
            corpus.put(TARGET, &name, &request_input(key, version, &body));
            let mut frame = header(key, version);
            frame.extend_from_slice(&body);
            let name = format!("{key:?}-v{version}-frame");
            corpus.put(TARGET, &name, &request_input(key, version, &frame));
        }
    }
}

/// A batch of three records built by the client's own producer path.
fn built_batch(compression: Compression, identity: ProducerIdentity) -> Bytes {
    let mut builder = BatchBuilder::new(16 * 1024, compression);
    for (at, value) in [&b"first value"[..], b"second", b"third and last"]
        .into_iter()
        .enumerate()
    {
        let key = format!("key-{at}");
        builder.append(
            TIMESTAMP + at as i64,
            Some(key.as_bytes()),
            &[value, b" tail"],
        );
    }
    builder
        .finish(identity)
        .unwrap_or_else(|error| panic!("building a {compression:?} batch: {error}"))
}

/// Flag bit of `record_batch` inputs that recomputes CRCs.
const FIX_CRCS: u8 = 0x01;
/// Flag bit of `record_batch` inputs whose client checks CRCs.
const CLIENT_CHECKS_CRCS: u8 = 0x02;

fn record_batches(corpus: &mut Corpus) {
    const TARGET: &str = "record_batch";
    let idempotent = ProducerIdentity {
        producer_id: 4000,
        epoch: 0,
        base_sequence: 0,
    };
    for codec in Compression::ALL {
        let batch = built_batch(codec, idempotent);
        for flags in [CLIENT_CHECKS_CRCS, FIX_CRCS] {
            let mut input = vec![flags];
            input.extend_from_slice(&batch);
            corpus.put(TARGET, &format!("{}-flags{flags}", codec.name()), &input);
        }
    }
    let marker = build_control_batch(
        &TxnMarker {
            producer_id: 4000,
            producer_epoch: 0,
            commit: true,
            coordinator_epoch: 3,
            transaction_version: 0,
        },
        TIMESTAMP,
    );
    let transactional = batch::build_batch_with(
        BuildBatch {
            base_timestamp: TIMESTAMP,
            producer_id: 4000,
            producer_epoch: 0,
            base_sequence: 0,
            attributes: attributes::TRANSACTIONAL,
        },
        &[b"in a transaction", b"also"],
    );
    let mut two = transactional.clone();
    two.extend_from_slice(&marker);
    for (name, set) in [
        ("control", marker),
        ("transactional", transactional),
        ("two", two),
    ] {
        let mut input = vec![CLIENT_CHECKS_CRCS];
        input.extend_from_slice(&set);
        corpus.put(TARGET, name, &input);
    }
}

/// Runs a real partition log on an in-memory disk and returns its files:
/// idempotent and transactional appends, an abort and a commit marker, a
/// leader epoch, DeleteRecords, and recovery points after every write.
fn real_log_files() -> BTreeMap<String, Vec<u8>> {
    let handle = glommio::LocalExecutorBuilder::default()
        .name("make-corpus")
        .spawn(|| async {
            let storage = MemStorage::new(1);
            let dir = PathBuf::from("/corpus/orders-0");
            let config = LogConfig {
                index_interval_bytes: 1,
                recovery_point_interval_bytes: 1,
                ..LogConfig::default()
            };
            let cache = BatchCache::new(1 << 20);
            let log = PartitionLog::open(storage.clone(), dir.clone(), config, cache)
                .await
                .unwrap_or_else(|error| panic!("open: {error}"));
            log.set_leader_epoch(LeaderEpoch(3))
                .await
                .unwrap_or_else(|error| panic!("epoch: {error}"));
            // The next sequence number of the one idempotent producer.
            let mut sequence = 0;
            let mut append = |producer_id: i64, attributes: i16, values: &[&[u8]]| {
                let base_sequence = if producer_id < 0 { -1 } else { sequence };
                let built = batch::build_batch_with(
                    BuildBatch {
                        base_timestamp: TIMESTAMP,
                        producer_id,
                        producer_epoch: 0,
                        base_sequence,
                        attributes,
                    },
                    values,
                );
                if producer_id >= 0 {
                    sequence += values.len() as i32;
                }
                let batches = batch::split_and_validate(&Bytes::from(built), usize::MAX)
                    .unwrap_or_else(|error| panic!("built batch: {error}"));
                log.append(&batches)
                    .unwrap_or_else(|error| panic!("append: {error}"));
            };
            append(-1, 0, &[b"plain"]);
            append(10, 0, &[b"idempotent", b"two"]);
            append(10, attributes::TRANSACTIONAL, &[b"to abort"]);
            let abort = TxnMarker {
                producer_id: 10,
                producer_epoch: 0,
                commit: false,
                coordinator_epoch: 1,
                transaction_version: 0,
            };
            log.append_marker(abort)
                .unwrap_or_else(|error| panic!("marker: {error}"));
            append(10, attributes::TRANSACTIONAL, &[b"to commit"]);
            log.append_marker(TxnMarker {
                commit: true,
                ..abort
            })
            .unwrap_or_else(|error| panic!("marker: {error}"));
            append(-1, attributes::COMPRESSION_MASK & 4, &[b"not really zstd"]);
            let end = log.offsets().leo;
            log.set_high_watermark(end);
            log.wait_durable(end)
                .await
                .unwrap_or_else(|error| panic!("durable: {error}"));
            log.delete_records_before(1)
                .await
                .unwrap_or_else(|error| panic!("delete records: {error}"));
            log.wait_durable(end)
                .await
                .unwrap_or_else(|error| panic!("durable: {error}"));
            let mut files = BTreeMap::new();
            for name in storage.list_dir(&dir).unwrap_or_default() {
                if let Ok(bytes) = storage.read_small(&dir.join(&name), 1 << 24).await {
                    files.insert(name, bytes);
                }
            }
            log.close()
                .await
                .unwrap_or_else(|error| panic!("close: {error}"));
            files
        })
        .unwrap_or_else(|error| panic!("executor: {error}"));
    handle
        .join()
        .unwrap_or_else(|error| panic!("executor: {error:?}"))
}

/// The checkpoint frame's header: magic u32, version u16, length u32.
const CHECKPOINT_HEADER_BYTES: usize = 10;
/// The CRC-32C after a checkpoint frame's payload.
const CHECKPOINT_CRC_BYTES: usize = 4;

/// The payload inside a checkpoint frame (for inputs framed by the target).
fn checkpoint_payload(frame: &[u8]) -> &[u8] {
    frame
        .get(CHECKPOINT_HEADER_BYTES..frame.len().saturating_sub(CHECKPOINT_CRC_BYTES))
        .unwrap_or(&[])
}

fn engine_files(corpus: &mut Corpus) {
    const TARGET: &str = "engine_files";
    let files = real_log_files();
    let file = |suffix: &str| {
        files
            .iter()
            .find(|(name, _)| name.ends_with(suffix))
            .map(|(_, bytes)| bytes.clone())
            .unwrap_or_default()
    };
    let segment = file(".log");
    let offset_index = file(".index");
    let time_index = file(".timeindex");
    let txn_index = file(".txnindex");
    let recovery_point = file("recovery-point");
    let log_start = file("log-start-offset");
    let epochs = file("leader-epoch-checkpoint");
    // The producer part of the recovery point, framed as a snapshot.
    let producers = checkpoint_payload(&recovery_point)
        .get(sluice_engine::recovery_point::RECOVERY_POINT_BYTES..)
        .unwrap_or(&[])
        .to_vec();
    let whole = join_chunks(&[
        (engine_file::SEGMENT, &segment),
        (engine_file::OFFSET_INDEX, &offset_index),
        (engine_file::TIME_INDEX, &time_index),
        (engine_file::TXN_INDEX, &txn_index),
        (engine_file::RECOVERY_POINT, &recovery_point),
        (engine_file::LOG_START, &log_start),
        (engine_file::EPOCH_CHECKPOINT, &epochs),
    ]);
    let mut input = vec![0];
    input.extend_from_slice(&whole);
    corpus.put(TARGET, "log-dir", &input);
    let mut input = vec![engine_flags::FIX_BATCH_CRCS];
    input.extend_from_slice(&join_chunks(&[(engine_file::SEGMENT, &segment)]));
    corpus.put(TARGET, "segment-only", &input);
    // Checkpoint payloads for the target to frame.
    let framed = join_chunks(&[
        (engine_file::SEGMENT, &segment),
        (engine_file::OFFSET_INDEX, &offset_index),
        (engine_file::TIME_INDEX, &time_index),
        (
            engine_file::RECOVERY_POINT,
            checkpoint_payload(&recovery_point),
        ),
        (engine_file::PRODUCER_SNAPSHOT, &producers),
        (engine_file::LOG_START, checkpoint_payload(&log_start)),
    ]);
    let mut input = vec![engine_flags::FRAME | engine_flags::FIX_BATCH_CRCS];
    input.extend_from_slice(&framed);
    corpus.put(TARGET, "log-dir-payloads", &input);
    let mut input = vec![0];
    input.extend_from_slice(&join_chunks(&[
        (engine_file::EPOCH_CHECKPOINT, b"0\n3\n0 0\n2 10\n5 99\n"),
        (engine_file::TXN_INDEX, &txn_index),
    ]));
    corpus.put(TARGET, "epochs-and-txnindex", &input);

    // The metadata store's snapshot, saved by the store itself.
    let mut image = ClusterMetadata {
        version: 9,
        cluster_id: "fuzz-cluster".into(),
        next_producer_id: 5000,
        ..ClusterMetadata::default()
    };
    image.topics.insert("orders".into(), topic("orders", 3));
    image
        .topics
        .insert("__consumer_offsets".into(), topic("__consumer_offsets", 2));
    let storage = MemStorage::new(1);
    let data_dir = PathBuf::from("/corpus/data");
    let snapshot = block_on(async {
        let store = FileMetadataStore::new(storage.clone(), data_dir.clone(), 1);
        store
            .save(&image)
            .await
            .unwrap_or_else(|error| panic!("save metadata: {error}"));
        storage
            .read_small(&data_dir.join("meta/cluster.snapshot"), 1 << 24)
            .await
            .unwrap_or_else(|error| panic!("read metadata: {error}"))
    });
    let mut input = vec![engine_flags::METADATA_STORE];
    input.extend_from_slice(&snapshot);
    corpus.put(TARGET, "metadata-store", &input);
    let mut input = vec![engine_flags::METADATA_STORE | engine_flags::FRAME];
    input.extend_from_slice(checkpoint_payload(&snapshot));
    corpus.put(TARGET, "metadata-store-payload", &input);
}

fn topic(name: &str, partitions: i32) -> TopicMetadata {
    TopicMetadata {
        name: name.into(),
        id: [7; 16],
        partitions,
        configs: BTreeMap::from([("retention.ms".to_string(), "60000".to_string())]),
        placement: (0..partitions).map(|_| PartitionState::led_by(1)).collect(),
    }
}

fn sample_records() -> Vec<MetadataRecord> {
    vec![
        MetadataRecord::ClusterId {
            id: "fuzz-cluster".into(),
        },
        MetadataRecord::RegisterBroker(BrokerInfo {
            id: 1,
            incarnation: 77,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: Some("rack-a".into()),
            fenced: false,
            endpoints: Vec::new(),
        }),
        MetadataRecord::FenceBroker {
            id: 1,
            incarnation: 77,
        },
        MetadataRecord::UnfenceBroker {
            id: 1,
            incarnation: 77,
        },
        MetadataRecord::Topic {
            name: "orders".into(),
            id: [9; 16],
            configs: BTreeMap::from([("cleanup.policy".to_string(), "delete".to_string())]),
        },
        MetadataRecord::Partition {
            topic: "orders".into(),
            partition: 0,
            state: PartitionState {
                replicas: vec![1, 2, 3],
                isr: vec![1, 2],
                leader: 1,
                leader_epoch: 4,
                partition_epoch: 6,
                adding: vec![3],
                removing: vec![2],
            },
        },
        MetadataRecord::TopicConfigs {
            name: "orders".into(),
            configs: BTreeMap::new(),
        },
        MetadataRecord::ProducerIds { next: 9000 },
        MetadataRecord::RemoveTopic {
            name: "orders".into(),
        },
    ]
}

fn metadata_records(corpus: &mut Corpus) {
    const TARGET: &str = "metadata_records";
    let records = sample_records();
    let mut input = vec![metadata_mode::RECORDS];
    input.extend_from_slice(&encode_records(&records));
    corpus.put(TARGET, "records-all-kinds", &input);
    for (at, record) in records.iter().enumerate() {
        let mut input = vec![metadata_mode::RECORDS];
        input.extend_from_slice(&encode_records(std::slice::from_ref(record)));
        corpus.put(TARGET, &format!("record-{at}"), &input);
    }

    let mut snapshot = Snapshot {
        data: encode_records(&records[..6]).into(),
        ..Snapshot::default()
    };
    let metadata = snapshot.mut_metadata();
    metadata.index = 40;
    metadata.term = 3;
    let conf = ConfState {
        voters: vec![1, 2, 3],
        learners: vec![4],
        ..ConfState::default()
    };
    metadata.set_conf_state(conf);
    let mut input = vec![metadata_mode::RAFT_SNAPSHOT];
    input.extend_from_slice(&encode_raft_snapshot(&snapshot));
    corpus.put(TARGET, "raft-snapshot", &input);

    // A WAL directory written by `Wal` itself.
    let storage = MemStorage::new(1);
    let data_dir = PathBuf::from("/corpus/data");
    let files = block_on(async {
        let mut wal = Wal::new(storage.clone(), &data_dir);
        wal.open()
            .await
            .unwrap_or_else(|error| panic!("wal open: {error:?}"));
        let state = HardState {
            term: 3,
            vote: 1,
            commit: 41,
            ..HardState::default()
        };
        wal.save_hard_state(&state)
            .await
            .unwrap_or_else(|error| panic!("hard state: {error:?}"));
        wal.save_snapshot(&snapshot, &[])
            .await
            .unwrap_or_else(|error| panic!("snapshot: {error:?}"));
        let entries: Vec<Entry> = (41..44)
            .map(|index| Entry {
                index,
                term: 3,
                data: encode_records(&records[6..]).into(),
                ..Entry::default()
            })
            .collect();
        wal.append(&entries)
            .await
            .unwrap_or_else(|error| panic!("append: {error:?}"));
        wal.sync()
            .await
            .unwrap_or_else(|error| panic!("sync: {error:?}"));
        let dir = data_dir.join("meta/raft");
        let mut files = BTreeMap::new();
        for name in ["state", "snapshot", "log"] {
            if let Ok(bytes) = storage.read_small(&dir.join(name), 1 << 24).await {
                files.insert(name, bytes);
            }
        }
        files
    });
    let file = |name: &str| files.get(name).cloned().unwrap_or_default();
    // The log as written is padded to a page with zeros; the frames are
    // what matters, and the zeros end the replay as they do on disk.
    let log = file("log");
    let log = &log[..log.len().min(1024)];
    let mut input = vec![metadata_mode::WAL];
    input.extend_from_slice(&join_chunks(&[
        (wal_file::STATE, &file("state")),
        (wal_file::SNAPSHOT, &file("snapshot")),
        (wal_file::LOG, log),
    ]));
    corpus.put(TARGET, "wal", &input);
    // Payloads for the target to frame, and log CRCs it recomputes.
    const FRAME_FILES_AND_FIX_LOG: u8 = 0x30;
    let mut input = vec![metadata_mode::WAL | FRAME_FILES_AND_FIX_LOG];
    input.extend_from_slice(&join_chunks(&[
        (wal_file::STATE, checkpoint_payload(&file("state"))),
        (wal_file::SNAPSHOT, checkpoint_payload(&file("snapshot"))),
        (wal_file::LOG, log),
    ]));
    corpus.put(TARGET, "wal-payloads", &input);
}

fn coordinator_records(corpus: &mut Corpus) {
    const TARGET: &str = "coordinator_records";
    let record = |key: &Bytes, value: Option<&Bytes>| {
        let mut chunks: Vec<(u8, &[u8])> = vec![(0, key)];
        if let Some(value) = value {
            chunks.push((1, value));
        }
        join_chunks(&chunks)
    };
    let offset_key = group_records::offset_key("group", "orders", 2);
    let offset_value = group_records::encode_offset_value(&group_records::OffsetValue {
        offset: 42,
        leader_epoch: 3,
        metadata: "meta".into(),
        commit_timestamp: TIMESTAMP,
        expire_timestamp: -1,
    });
    let group_key = group_records::group_key("group");
    let group_value = group_records::encode_group_value(&GroupValue {
        protocol_type: "consumer".into(),
        generation: 5,
        protocol: Some("range".into()),
        leader: Some("member-1".into()),
        state_timestamp: TIMESTAMP,
        members: vec![MemberValue {
            member_id: "member-1".into(),
            instance_id: Some("instance".into()),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 30_000,
            session_timeout_ms: 10_000,
            subscription: Bytes::from_static(b"\x00\x01\x00\x00\x00\x01\x00\x06orders"),
            assignment: Bytes::from_static(b"\x00\x01\x00\x00\x00\x00"),
        }],
    });
    let member = MemberMetadata {
        instance_id: None,
        rack_id: Some("rack-a".into()),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        subscribed_topic_names: vec!["orders".into()],
        subscribed_topic_regex: Some("ord.*".into()),
        rebalance_timeout_ms: 30_000,
        server_assignor: Some("uniform".into()),
    };
    let assignment = consumer_records::Assignment::from([([7; 16], [0, 2].into())]);
    let consumer: Vec<(&str, Bytes, Bytes)> = vec![
        (
            "consumer-metadata",
            consumer_records::key("group", &ConsumerKey::Metadata),
            consumer_records::encode_metadata(4),
        ),
        (
            "consumer-partition-metadata",
            consumer_records::key("group", &ConsumerKey::PartitionMetadata),
            consumer_records::encode_partition_metadata(
                4,
                &[consumer_records::TopicMetadata {
                    id: [7; 16],
                    name: "orders".into(),
                    partitions: 3,
                }],
            ),
        ),
        (
            "consumer-member",
            consumer_records::key("group", &ConsumerKey::Member("m".into())),
            consumer_records::encode_member(&member),
        ),
        (
            "consumer-target-metadata",
            consumer_records::key("group", &ConsumerKey::TargetMetadata),
            consumer_records::encode_target_metadata(4),
        ),
        (
            "consumer-target-member",
            consumer_records::key("group", &ConsumerKey::TargetMember("m".into())),
            consumer_records::encode_target_member(&assignment),
        ),
        (
            "consumer-current",
            consumer_records::key("group", &ConsumerKey::CurrentAssignment("m".into())),
            consumer_records::encode_current(&CurrentAssignment {
                member_epoch: 4,
                previous_member_epoch: 3,
                assigned: assignment.clone(),
                ..CurrentAssignment::default()
            }),
        ),
    ];
    let mut put = |name: &str, mode: u8, body: Vec<u8>| {
        let mut input = vec![mode];
        input.extend_from_slice(&body);
        corpus.put(TARGET, name, &input);
    };
    let offsets = coordinator_mode::OFFSETS_RECORD;
    put("offset", offsets, record(&offset_key, Some(&offset_value)));
    put("offset-tombstone", offsets, record(&offset_key, None));
    put("group", offsets, record(&group_key, Some(&group_value)));
    for (name, key, value) in &consumer {
        put(name, offsets, record(key, Some(value)));
    }
    let txn_key = txn_records::encode_key("txn-1");
    let txn_value = txn_records::encode_value(&TxnValue {
        producer_id: 4000,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch: 2,
        timeout_ms: 60_000,
        status: TxnStatus::Ongoing,
        partitions: vec![("orders".into(), vec![0, 1])],
        last_update_ms: TIMESTAMP,
        start_ms: TIMESTAMP,
        client_transaction_version: 2,
    });
    put(
        "txn",
        coordinator_mode::TXN_RECORD,
        record(&txn_key, Some(&txn_value)),
    );

    // A coordinator partition: offsets, group metadata, a transaction's
    // state, and a commit marker, as the coordinators write them.
    let keyed = vec![
        KeyedRecord {
            key: offset_key,
            value: Some(offset_value),
        },
        KeyedRecord {
            key: group_key,
            value: Some(group_value),
        },
        KeyedRecord {
            key: txn_key,
            value: Some(txn_value),
        },
    ];
    let mut set = group_records::build_batch(&keyed, TIMESTAMP).to_vec();
    set.extend_from_slice(&build_control_batch(
        &TxnMarker {
            producer_id: 4000,
            producer_epoch: 2,
            commit: true,
            coordinator_epoch: 0,
            transaction_version: 0,
        },
        TIMESTAMP,
    ));
    put("batches", coordinator_mode::BATCHES, set);
}

fn write_bombs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    let zeros = vec![0u8; BOMB_BYTES];
    for codec in Compression::ALL {
        if codec == Compression::None {
            continue;
        }
        let mut builder = BatchBuilder::new(BOMB_BYTES + 1024, codec);
        builder.append(TIMESTAMP, None, &[&zeros]);
        let batch = builder
            .finish(ProducerIdentity::NONE)
            .unwrap_or_else(|error| panic!("bomb: {error}"));
        let mut input = vec![CLIENT_CHECKS_CRCS];
        input.extend_from_slice(&batch);
        let path = dir.join(format!("bomb-{}", codec.name()));
        std::fs::write(&path, &input).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        println!(
            "{}: {} bytes inflating to {BOMB_BYTES}",
            path.display(),
            input.len()
        );
    }
}
