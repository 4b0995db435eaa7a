//! Kafka 4.2's protocol: the API versions a Kafka 4.2.0 broker advertises,
//! against Sluice's ApiVersions answer (every difference a reviewed entry of
//! [`DIFFERENCES`]), and the semantics of the versions newer than those
//! Sluice served before: Metadata v13, DescribeGroups v6, DescribeCluster
//! v2, ListTransactions v2, ListOffsets v10 and v11, Fetch v17 and v18,
//! Produce v13, OffsetCommit and OffsetFetch v10; DescribeConfigs as Kafka
//! answers it (types, sources, synonyms, documentation) and
//! ListConfigResources. WriteTxnMarkers v2's are in `txn_v2_wire.rs`.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{
    produce_all, produce_partition_answers, raw_connect, receive_response, start_cluster_with,
    text, wait_for, Record, Stop, TestBroker, WireClient,
};
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, DescribeClusterRequest,
    DescribeClusterResponse, DescribeGroupsRequest, DescribeGroupsResponse, FetchRequest,
    FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, ListOffsetsRequest,
    ListOffsetsResponse, ListTransactionsRequest, ListTransactionsResponse, MetadataRequest,
    MetadataResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, ProduceRequest, ProduceResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};
use sluice_engine::batch::build_batch;
use uuid::Uuid;

/// An inclusive range of versions.
type Versions = (i16, i16);

/// Every API a Kafka 4.2.0 broker's client listener advertises, with the
/// range it advertises: the `validVersions` of the release's message JSON
/// files (`clients/src/main/resources/common/message/*Request.json`), less
/// a newest version marked `latestVersionUnstable` (InitProducerId v6), and
/// Produce from 0, which Kafka advertises but refuses below 3 (KAFKA-18659:
/// older librdkafka releases need 0 listed).
const KAFKA_4_2: &[(i16, &str, Versions)] = &[
    (0, "Produce", (0, 13)),
    (1, "Fetch", (4, 18)),
    (2, "ListOffsets", (1, 11)),
    (3, "Metadata", (0, 13)),
    (8, "OffsetCommit", (2, 10)),
    (9, "OffsetFetch", (1, 10)),
    (10, "FindCoordinator", (0, 6)),
    (11, "JoinGroup", (0, 9)),
    (12, "Heartbeat", (0, 4)),
    (13, "LeaveGroup", (0, 5)),
    (14, "SyncGroup", (0, 5)),
    (15, "DescribeGroups", (0, 6)),
    (16, "ListGroups", (0, 5)),
    (17, "SaslHandshake", (0, 1)),
    (18, "ApiVersions", (0, 4)),
    (19, "CreateTopics", (2, 7)),
    (20, "DeleteTopics", (1, 6)),
    (21, "DeleteRecords", (0, 2)),
    (22, "InitProducerId", (0, 5)),
    (23, "OffsetForLeaderEpoch", (2, 4)),
    (24, "AddPartitionsToTxn", (0, 5)),
    (25, "AddOffsetsToTxn", (0, 4)),
    (26, "EndTxn", (0, 5)),
    (27, "WriteTxnMarkers", (1, 2)),
    (28, "TxnOffsetCommit", (0, 5)),
    (29, "DescribeAcls", (1, 3)),
    (30, "CreateAcls", (1, 3)),
    (31, "DeleteAcls", (1, 3)),
    (32, "DescribeConfigs", (1, 4)),
    (33, "AlterConfigs", (0, 2)),
    (34, "AlterReplicaLogDirs", (1, 2)),
    (35, "DescribeLogDirs", (1, 4)),
    (36, "SaslAuthenticate", (0, 2)),
    (37, "CreatePartitions", (0, 3)),
    (38, "CreateDelegationToken", (1, 3)),
    (39, "RenewDelegationToken", (1, 2)),
    (40, "ExpireDelegationToken", (1, 2)),
    (41, "DescribeDelegationToken", (1, 3)),
    (42, "DeleteGroups", (0, 2)),
    (43, "ElectLeaders", (0, 2)),
    (44, "IncrementalAlterConfigs", (0, 1)),
    (45, "AlterPartitionReassignments", (0, 1)),
    (46, "ListPartitionReassignments", (0, 0)),
    (47, "OffsetDelete", (0, 0)),
    (48, "DescribeClientQuotas", (0, 1)),
    (49, "AlterClientQuotas", (0, 1)),
    (50, "DescribeUserScramCredentials", (0, 0)),
    (51, "AlterUserScramCredentials", (0, 0)),
    (55, "DescribeQuorum", (0, 2)),
    (57, "UpdateFeatures", (0, 2)),
    (60, "DescribeCluster", (0, 2)),
    (61, "DescribeProducers", (0, 0)),
    (64, "UnregisterBroker", (0, 0)),
    (65, "DescribeTransactions", (0, 0)),
    (66, "ListTransactions", (0, 2)),
    (68, "ConsumerGroupHeartbeat", (0, 1)),
    (69, "ConsumerGroupDescribe", (0, 1)),
    (71, "GetTelemetrySubscriptions", (0, 0)),
    (72, "PushTelemetry", (0, 0)),
    (74, "ListConfigResources", (0, 1)),
    (75, "DescribeTopicPartitions", (0, 0)),
    (76, "ShareGroupHeartbeat", (1, 1)),
    (77, "ShareGroupDescribe", (1, 1)),
    (78, "ShareFetch", (1, 2)),
    (79, "ShareAcknowledge", (1, 2)),
    (80, "AddRaftVoter", (0, 1)),
    (81, "RemoveRaftVoter", (0, 0)),
    (83, "InitializeShareGroupState", (0, 0)),
    (84, "ReadShareGroupState", (0, 0)),
    (85, "WriteShareGroupState", (0, 1)),
    (86, "DeleteShareGroupState", (0, 0)),
    (87, "ReadShareGroupStateSummary", (0, 1)),
    (88, "StreamsGroupHeartbeat", (0, 0)),
    (89, "StreamsGroupDescribe", (0, 0)),
    (90, "DescribeShareGroupOffsets", (0, 1)),
    (91, "AlterShareGroupOffsets", (0, 0)),
    (92, "DeleteShareGroupOffsets", (0, 0)),
];

/// Where Sluice's ApiVersions answer differs from Kafka 4.2's, reviewed:
/// the API key, what Sluice advertises (`None`: not at all), and why.
/// The test fails on any difference not listed here, and on an entry that
/// no longer differs, so this list is always the whole, current truth.
const DIFFERENCES: &[(i16, Option<Versions>, &str)] = &[
    (
        0,
        Some((3, 13)),
        "Produce: v0-2 are refused, so not advertised (Kafka lists them only for old librdkafka)",
    ),
    (38, None, "CreateDelegationToken: no delegation tokens"),
    (39, None, "RenewDelegationToken: no delegation tokens"),
    (40, None, "ExpireDelegationToken: no delegation tokens"),
    (41, None, "DescribeDelegationToken: no delegation tokens"),
    (
        57,
        None,
        "UpdateFeatures: Sluice's feature levels are fixed (see api_versions.rs)",
    ),
    (
        64,
        None,
        "UnregisterBroker: brokers leave by being fenced; no operator removal yet",
    ),
    (
        71,
        None,
        "GetTelemetrySubscriptions: no client metrics (KIP-714); clients then send none",
    ),
    (
        72,
        None,
        "PushTelemetry: no client metrics (KIP-714); clients then send none",
    ),
    (76, None, "ShareGroupHeartbeat: no share groups (KIP-932)"),
    (77, None, "ShareGroupDescribe: no share groups (KIP-932)"),
    (78, None, "ShareFetch: no share groups (KIP-932)"),
    (79, None, "ShareAcknowledge: no share groups (KIP-932)"),
    (
        80,
        None,
        "AddRaftVoter: the voter set is static (--controller-voters)",
    ),
    (
        81,
        None,
        "RemoveRaftVoter: the voter set is static (--controller-voters)",
    ),
    (
        83,
        None,
        "InitializeShareGroupState: no share groups (KIP-932)",
    ),
    (84, None, "ReadShareGroupState: no share groups (KIP-932)"),
    (85, None, "WriteShareGroupState: no share groups (KIP-932)"),
    (86, None, "DeleteShareGroupState: no share groups (KIP-932)"),
    (
        87,
        None,
        "ReadShareGroupStateSummary: no share groups (KIP-932)",
    ),
    (
        88,
        None,
        "StreamsGroupHeartbeat: no streams groups (KIP-1071)",
    ),
    (
        89,
        None,
        "StreamsGroupDescribe: no streams groups (KIP-1071)",
    ),
    (
        90,
        None,
        "DescribeShareGroupOffsets: no share groups (KIP-932)",
    ),
    (
        91,
        None,
        "AlterShareGroupOffsets: no share groups (KIP-932)",
    ),
    (
        92,
        None,
        "DeleteShareGroupOffsets: no share groups (KIP-932)",
    ),
];

/// ApiVersions v3 is the first flexible one; v4 is the newest.
const API_VERSIONS_VERSIONS: [i16; 2] = [3, 4];
/// The versions these tests exercise.
const METADATA_VERSION: i16 = 13;
const DESCRIBE_GROUPS_VERSION: i16 = 6;
const DESCRIBE_GROUPS_OLD_VERSION: i16 = 5;
const DESCRIBE_CLUSTER_VERSION: i16 = 2;
const DESCRIBE_CLUSTER_OLD_VERSION: i16 = 1;
const LIST_TRANSACTIONS_VERSION: i16 = 2;
/// Kafka's error codes checked here.
const NONE: i16 = 0;
const GROUP_ID_NOT_FOUND: i16 = 69;
const UNSUPPORTED_VERSION: i16 = 35;
const INVALID_REGULAR_EXPRESSION: i16 = 128;
/// ListOffsets v11 has v10's bytes (it only allows timestamp -6), and the
/// kafka-protocol crate stops at v10: the test sends v10's bytes under v11.
const LIST_OFFSETS_V11: i16 = 11;
const LIST_OFFSETS_V11_BYTES_OF: i16 = 10;
/// Records in the ListOffsets topic.
const LIST_OFFSETS_RECORDS: usize = 5;
/// Fetch v18: a follower states its high watermark (KIP-1166).
const FETCH_VERSION: i16 = 18;
/// Records in the replicated topic of the Fetch test.
const REPLICATED_RECORDS: usize = 3;
/// A parked fetch's wait in the Fetch test: one answered well before it
/// was not parked; one that waits is answered no earlier than this less
/// the slack.
const FETCH_WAIT: Duration = Duration::from_millis(2_000);
const FETCH_WAIT_SLACK: Duration = Duration::from_millis(100);
const FETCH_BYTES_MAX: i32 = 1 << 20;
/// The follower the Fetch test speaks for.
const FOLLOWER: i32 = 2;
/// Produce v13 names topics by id (KIP-516).
const PRODUCE_VERSION: i16 = 13;
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
const UNKNOWN_TOPIC_ID: i16 = 100;
/// OffsetCommit and OffsetFetch v10 name topics by id; their bytes are
/// v9's with ids for names, and kafka-protocol stops at v9.
const BY_ID_VERSION: i16 = 10;
const BY_ID_BYTES_OF: i16 = 9;
/// Topic names whose compact strings are exactly an id's 16 bytes.
const ID_SIZED_TOPIC: &str = "fifteen-letters";
const ID_SIZED_NOWHERE: &str = "unknown-letters";
/// FindCoordinator v4 takes a batch of keys.
const FIND_COORDINATOR_VERSION: i16 = 4;
/// COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR.
const RETRIABLE_COORDINATOR_ERRORS: [i16; 3] = [14, 15, 16];
/// The schema's "no high watermark stated".
const HIGH_WATERMARK_UNSTATED: i64 = i64::MAX;
/// Three brokers for the fenced-broker test; the killed one is the last.
const NODES: usize = 3;
/// Session timeout of that cluster: short, so the fence comes soon.
const BROKER_SESSION_TIMEOUT_MS: &str = "1500";
const FENCE_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const PRODUCER_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn api_versions_match_kafka_4_2_but_for_the_reviewed_differences() {
    let kafka: BTreeMap<i16, (&str, (i16, i16))> = KAFKA_4_2
        .iter()
        .map(|(key, name, range)| (*key, (*name, *range)))
        .collect();
    assert_eq!(kafka.len(), KAFKA_4_2.len(), "an API listed twice");
    let differences: BTreeMap<i16, Option<(i16, i16)>> = DIFFERENCES
        .iter()
        .map(|(key, range, _)| (*key, *range))
        .collect();
    assert_eq!(
        differences.len(),
        DIFFERENCES.len(),
        "a difference listed twice"
    );

    let broker = TestBroker::start();
    let mut client = WireClient::new(&broker);
    for version in API_VERSIONS_VERSIONS {
        let answer: ApiVersionsResponse =
            client.call(ApiKey::ApiVersions, version, &ApiVersionsRequest::default());
        assert_eq!(answer.error_code, NONE, "ApiVersions v{version}");
        let sluice: BTreeMap<i16, (i16, i16)> = answer
            .api_keys
            .iter()
            .map(|api| (api.api_key, (api.min_version, api.max_version)))
            .collect();
        assert_eq!(
            sluice.len(),
            answer.api_keys.len(),
            "v{version}: an API twice"
        );
        let mut wrong = Vec::new();
        for (key, (name, kafka_range)) in &kafka {
            let expected = differences.get(key).copied().unwrap_or(Some(*kafka_range));
            let advertised = sluice.get(key).copied();
            if advertised != expected {
                wrong.push(format!(
                    "{name} ({key}): Sluice advertises {advertised:?}, the table expects \
                     {expected:?} (Kafka 4.2: {kafka_range:?})"
                ));
            }
            if differences.contains_key(key) && expected == Some(*kafka_range) {
                wrong.push(format!(
                    "{name} ({key}): listed as a difference but matches Kafka 4.2"
                ));
            }
        }
        for key in sluice.keys().filter(|key| !kafka.contains_key(key)) {
            wrong.push(format!(
                "API {key}: advertised, but Kafka 4.2 has no such API"
            ));
        }
        for key in differences.keys().filter(|key| !kafka.contains_key(key)) {
            wrong.push(format!("API {key}: a difference, but not a Kafka 4.2 API"));
        }
        assert!(
            wrong.is_empty(),
            "ApiVersions v{version}:\n{}",
            wrong.join("\n")
        );
    }
    let same = kafka.len() - differences.len();
    eprintln!(
        "{same} of Kafka 4.2's {} APIs advertised at its exact versions; {} reviewed differences",
        kafka.len(),
        differences.len()
    );
}

/// Metadata v13 adds a top-level error code (KIP-1102), NONE here, and is
/// otherwise v12.
#[test]
fn metadata_v13_answers_with_no_top_level_error() {
    let broker = TestBroker::start();
    broker.create_topic("orders", 3);
    let mut client = WireClient::new(&broker);
    let mut request = MetadataRequest::default();
    request.topics = None;
    let answer: MetadataResponse = client.call(ApiKey::Metadata, METADATA_VERSION, &request);
    assert_eq!(answer.error_code, NONE);
    assert_eq!(answer.brokers.len(), 1);
    let orders = answer
        .topics
        .iter()
        .find(|topic| {
            topic
                .name
                .as_ref()
                .is_some_and(|name| name.0.as_str() == "orders")
        })
        .expect("the topic listed");
    assert_eq!(orders.error_code, NONE);
    assert_eq!(orders.partitions.len(), 3);
    assert!(!orders.topic_id.is_nil(), "v10+ carries the topic id");
}

/// DescribeGroups v6 (KIP-1043): a group that does not exist gets
/// GROUP_ID_NOT_FOUND and Kafka's message; v5 still describes it as Dead
/// with no error; a group that exists is described as before.
#[test]
fn describe_groups_v6_reports_unknown_groups_as_not_found() {
    let broker = TestBroker::start();
    broker.create_topic("orders", 1);
    // A group known to its coordinator: one member, kept for the test.
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "known")
        .create()
        .expect("consumer");
    consumer.subscribe(&["orders"]).expect("subscribe");
    wait_for("the group to assign", FENCE_TIMEOUT, POLL_INTERVAL, || {
        let _ = consumer.poll(POLL_INTERVAL);
        match consumer.assignment() {
            Ok(assigned) if assigned.count() == 1 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let mut client = WireClient::new(&broker);
    let describe = |client: &mut WireClient, version: i16| -> Vec<DescribedGroup> {
        let mut request = DescribeGroupsRequest::default();
        request.groups = vec![GroupId(text("nobody")), GroupId(text("known"))];
        let answer: DescribeGroupsResponse = client.call(ApiKey::DescribeGroups, version, &request);
        answer.groups
    };
    let groups = describe(&mut client, DESCRIBE_GROUPS_VERSION);
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].group_id.0.as_str(), "nobody");
    assert_eq!(groups[0].error_code, GROUP_ID_NOT_FOUND);
    assert_eq!(
        groups[0]
            .error_message
            .as_ref()
            .map(|message| message.as_str()),
        Some("Group nobody not found.")
    );
    assert_eq!(groups[0].group_state.as_str(), "Dead");
    assert_eq!(groups[1].group_id.0.as_str(), "known");
    assert_eq!(groups[1].error_code, NONE, "{:?}", groups[1]);
    assert_eq!(groups[1].error_message, None);
    assert_eq!(groups[1].group_state.as_str(), "Stable");
    assert_eq!(groups[1].members.len(), 1);

    let old = describe(&mut client, DESCRIBE_GROUPS_OLD_VERSION);
    assert_eq!(
        old[0].error_code, NONE,
        "before v6 an unknown group is no error"
    );
    assert_eq!(old[0].group_state.as_str(), "Dead");
    assert_eq!(old[1].error_code, NONE);
}

/// DescribeCluster v2 (KIP-1073): a fenced broker is listed, marked fenced,
/// only when the request asks for fenced brokers; v1 never lists it.
#[test]
fn describe_cluster_v2_lists_fenced_brokers_when_asked() {
    let args = ["--broker-session-timeout-ms", BROKER_SESSION_TIMEOUT_MS];
    let mut brokers = start_cluster_with(NODES, &args);
    let describe = |client: &mut WireClient, version: i16, fenced: bool| {
        let mut request = DescribeClusterRequest::default();
        request.include_fenced_brokers = fenced;
        let answer: DescribeClusterResponse =
            client.call(ApiKey::DescribeCluster, version, &request);
        assert_eq!(answer.error_code, NONE);
        let mut listed: Vec<(i32, bool)> = answer
            .brokers
            .iter()
            .map(|broker| (broker.broker_id.0, broker.is_fenced))
            .collect();
        listed.sort_unstable();
        listed
    };
    let mut client = WireClient::new(&brokers[0]);
    wait_for(
        "all three brokers registered",
        FENCE_TIMEOUT,
        POLL_INTERVAL,
        || {
            let listed = describe(&mut client, DESCRIBE_CLUSTER_VERSION, true);
            if listed == [(1, false), (2, false), (3, false)] {
                Ok(())
            } else {
                Err(format!("{listed:?}"))
            }
        },
    );
    let killed = NODES as i32;
    brokers[NODES - 1].stop(Stop::Kill);
    wait_for(
        "the killed broker fenced",
        FENCE_TIMEOUT,
        POLL_INTERVAL,
        || {
            let listed = describe(&mut client, DESCRIBE_CLUSTER_VERSION, true);
            if listed == [(1, false), (2, false), (killed, true)] {
                Ok(())
            } else {
                Err(format!("{listed:?}"))
            }
        },
    );
    assert_eq!(
        describe(&mut client, DESCRIBE_CLUSTER_VERSION, false),
        [(1, false), (2, false)],
        "v2 without include_fenced_brokers"
    );
    assert_eq!(
        describe(&mut client, DESCRIBE_CLUSTER_OLD_VERSION, false),
        [(1, false), (2, false)],
        "v1"
    );
}

/// ListTransactions v2 (KIP-1152): the pattern must match the whole
/// transactional id; a pattern that does not compile is
/// INVALID_REGULAR_EXPRESSION; none (null or empty) lists every one.
#[test]
fn list_transactions_v2_filters_by_a_whole_id_pattern() {
    let broker = TestBroker::start();
    let ids = ["orders-1", "orders-2", "billing-1"];
    let _producers: Vec<BaseProducer> = ids
        .iter()
        .map(|id| {
            let producer: BaseProducer = broker
                .client_config()
                .set("transactional.id", *id)
                .create()
                .expect("transactional producer");
            producer
                .init_transactions(PRODUCER_TIMEOUT)
                .expect("InitProducerId");
            producer
        })
        .collect();
    let mut client = WireClient::new(&broker);
    let mut list = |pattern: Option<&str>| -> (i16, Vec<String>) {
        let mut request = ListTransactionsRequest::default();
        request.transactional_id_pattern = pattern.map(text);
        let answer: ListTransactionsResponse = client.call(
            ApiKey::ListTransactions,
            LIST_TRANSACTIONS_VERSION,
            &request,
        );
        let mut listed: Vec<String> = answer
            .transaction_states
            .iter()
            .map(|state| state.transactional_id.0.to_string())
            .collect();
        listed.sort_unstable();
        (answer.error_code, listed)
    };
    let all = (
        NONE,
        vec!["billing-1".into(), "orders-1".into(), "orders-2".into()],
    );
    assert_eq!(list(None), all);
    assert_eq!(list(Some("")), all, "an empty pattern filters nothing");
    assert_eq!(
        list(Some("orders-.*")),
        (NONE, vec!["orders-1".into(), "orders-2".into()])
    );
    assert_eq!(
        list(Some("orders")),
        (NONE, vec![]),
        "the whole id must match"
    );
    assert_eq!(
        list(Some(".*-1")),
        (NONE, vec!["billing-1".into(), "orders-1".into()])
    );
    assert_eq!(list(Some("(orders")), (INVALID_REGULAR_EXPRESSION, vec![]));
}

/// ListOffsets (v11, KIP-1023's -6 included): each special timestamp from
/// the version Kafka accepts it at, UNSUPPORTED_VERSION below it (and for
/// a negative timestamp Kafka does not define), and the tiered-storage
/// ones answered as a Kafka broker without remote storage answers them.
#[test]
fn list_offsets_answers_each_special_timestamp_from_its_version() {
    let broker = TestBroker::start();
    broker.create_topic("orders", 1);
    let records: Vec<Record> = (0..LIST_OFFSETS_RECORDS)
        .map(|index| Record::with_value(0, common::indexed_value(index, 16)))
        .collect();
    produce_all(&broker, "orders", &[], &records);
    let end = LIST_OFFSETS_RECORDS as i64;
    let mut stream = raw_connect(broker.address());
    let mut correlation = 0;
    let mut list = |version: i16, timestamp: i64| -> (i16, i64, i32) {
        correlation += 1;
        let mut partition = ListOffsetsPartition::default();
        partition.partition_index = 0;
        partition.timestamp = timestamp;
        let mut topic = ListOffsetsTopic::default();
        topic.name = TopicName(text("orders"));
        topic.partitions = vec![partition];
        let mut request = ListOffsetsRequest::default();
        request.replica_id = (-1).into();
        request.topics = vec![topic];
        let wire = if version == LIST_OFFSETS_V11 {
            LIST_OFFSETS_V11_BYTES_OF
        } else {
            version
        };
        send_as(&mut stream, version, wire, correlation, &request);
        let answer: ListOffsetsResponse =
            receive_response(&mut stream, ApiKey::ListOffsets, wire, correlation);
        let partition = &answer.topics[0].partitions[0];
        (
            partition.error_code,
            partition.offset,
            partition.leader_epoch,
        )
    };
    // Latest and earliest, at the newest version.
    assert_eq!(list(LIST_OFFSETS_V11, -1).1, end);
    let earliest = list(LIST_OFFSETS_V11, -2);
    assert_eq!((earliest.0, earliest.1), (NONE, 0));
    // -6, earliest pending upload: v11 and later; nothing is tiered.
    assert_eq!(list(LIST_OFFSETS_V11, -6), (NONE, -1, -1));
    assert_eq!(list(10, -6).0, UNSUPPORTED_VERSION);
    // -5, latest tiered: v9 and later; nothing is tiered.
    assert_eq!(list(9, -5), (NONE, -1, -1));
    assert_eq!(list(10, -5), (NONE, -1, -1));
    assert_eq!(list(8, -5).0, UNSUPPORTED_VERSION);
    // -4, earliest local: v8 and later; the whole log is local.
    assert_eq!(list(8, -4), earliest);
    assert_eq!(list(LIST_OFFSETS_V11, -4), earliest);
    assert_eq!(list(7, -4).0, UNSUPPORTED_VERSION);
    // -3, max timestamp: v7 and later.
    let max = list(7, -3);
    assert_eq!(max.0, NONE);
    assert!((0..end).contains(&max.1), "{max:?}");
    assert_eq!(list(6, -3).0, UNSUPPORTED_VERSION);
    // A negative timestamp Kafka does not define.
    assert_eq!(list(LIST_OFFSETS_V11, -7).0, UNSUPPORTED_VERSION);
    // By timestamp, at the newest version.
    assert_eq!(list(LIST_OFFSETS_V11, 0).1, 0);
}

/// Sends `body` encoded at `wire` under a header that says `version`.
fn send_as<R: Encodable>(
    stream: &mut std::net::TcpStream,
    version: i16,
    wire: i16,
    correlation_id: i32,
    body: &R,
) {
    let mut bytes = bytes::BytesMut::new();
    body.encode(&mut bytes, wire).expect("encoding the body");
    send_bytes(stream, ApiKey::ListOffsets, version, correlation_id, &bytes);
}

/// Sends one request: a header that says `key` and `version`, then `body`.
fn send_bytes(
    stream: &mut std::net::TcpStream,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &[u8],
) {
    use std::io::Write;
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(text("sluice-kafka-4-2-test"));
    let mut frame = bytes::BytesMut::new();
    header
        .encode(&mut frame, key.request_header_version(version))
        .expect("encoding the header");
    frame.extend_from_slice(body);
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&frame);
    stream.write_all(&out).expect("sending the request");
}

/// Fetch v18 (KIP-1166): a follower whose high watermark is behind the
/// leader's gets its answer at once instead of a parked fetch, so the
/// high watermark reaches it without waiting out `max_wait_ms`; a follower
/// that is not behind, or a consumer (for which the field means nothing),
/// is parked as before. v17 (KIP-853's directory id) is read and changes
/// nothing.
#[test]
fn fetch_v18_answers_a_follower_behind_on_the_high_watermark_at_once() {
    let args = ["--broker-session-timeout-ms", BROKER_SESSION_TIMEOUT_MS];
    let brokers = start_cluster_with(NODES, &args);
    let leader = &brokers[0];
    let replicas: [i32; 3] = [1, 2, 3];
    let assignment: [&[i32]; 1] = [&replicas];
    let topic = rdkafka::admin::NewTopic::new(
        "replicated",
        1,
        rdkafka::admin::TopicReplication::Variable(&assignment),
    );
    let created = futures_lite::future::block_on(
        leader
            .admin()
            .create_topics(&[topic], &common::admin_options()),
    )
    .expect("CreateTopics answered");
    assert!(created[0].is_ok(), "{created:?}");
    let records: Vec<Record> = (0..REPLICATED_RECORDS)
        .map(|index| Record::with_value(0, common::indexed_value(index, 16)))
        .collect();
    produce_all(leader, "replicated", &[("acks", "all")], &records);
    let end = REPLICATED_RECORDS as i64;
    let mut client = WireClient::new(leader);
    let topic_id = topic_id_of(&mut client, "replicated");
    let mut fetch = |replica: i32, held_high_watermark: i64, version: i16| {
        let mut partition = FetchPartition::default();
        partition.partition = 0;
        partition.current_leader_epoch = -1;
        partition.fetch_offset = end;
        partition.last_fetched_epoch = -1;
        partition.partition_max_bytes = FETCH_BYTES_MAX;
        partition.high_watermark = held_high_watermark;
        let mut topic = FetchTopic::default();
        topic.topic_id = topic_id;
        topic.partitions = vec![partition];
        let mut request = FetchRequest::default();
        let mut state = ReplicaState::default();
        state.replica_id = BrokerId(replica);
        state.replica_epoch = -1;
        request.replica_state = state;
        request.max_wait_ms = FETCH_WAIT.as_millis() as i32;
        request.min_bytes = 1;
        request.max_bytes = FETCH_BYTES_MAX;
        request.session_epoch = -1;
        request.topics = vec![topic];
        let started = Instant::now();
        let answer: FetchResponse = client.call(ApiKey::Fetch, version, &request);
        let partition = &answer.responses[0].partitions[0];
        (
            partition.error_code,
            partition.high_watermark,
            started.elapsed(),
        )
    };
    // The leader's high watermark covers every acks=all record.
    let (error, high_watermark, _) = fetch(-1, HIGH_WATERMARK_UNSTATED, FETCH_VERSION);
    assert_eq!((error, high_watermark), (NONE, end));

    let (error, high_watermark, took) = fetch(FOLLOWER, 1, FETCH_VERSION);
    assert_eq!((error, high_watermark), (NONE, end));
    assert!(
        took < FETCH_WAIT / 2,
        "a follower behind on the high watermark waited {took:?}"
    );
    for (replica, held, version, who) in [
        (FOLLOWER, end, FETCH_VERSION, "a follower not behind"),
        (
            FOLLOWER,
            HIGH_WATERMARK_UNSTATED,
            FETCH_VERSION,
            "a follower that says nothing",
        ),
        (FOLLOWER, 1, 17, "a follower at v17 (no such field)"),
        (-1, 1, FETCH_VERSION, "a consumer"),
    ] {
        let (error, high_watermark, took) = fetch(replica, held, version);
        assert_eq!((error, high_watermark), (NONE, end), "{who}");
        assert!(
            took >= FETCH_WAIT - FETCH_WAIT_SLACK,
            "{who} answered after {took:?}"
        );
    }
}

/// Produce v13 (KIP-516): topics named by id, answered by id; the records
/// land in the topic the id names and read back through a consumer; an id
/// no topic has is UNKNOWN_TOPIC_ID for each of its partitions, next to a
/// known one that is written.
#[test]
fn produce_v13_writes_to_topics_named_by_id() {
    let broker = TestBroker::start();
    broker.create_topic("orders", 2);
    let mut client = WireClient::new(&broker);
    let orders = topic_id_of(&mut client, "orders");
    let nowhere = Uuid::from_u128(0x5eed);
    assert_ne!(orders, nowhere);
    let topic = |id: Uuid, partitions: &[(i32, &[&[u8]])]| {
        let mut topic = TopicProduceData::default();
        topic.topic_id = id;
        topic.partition_data = partitions
            .iter()
            .map(|(index, values)| {
                let mut data = PartitionProduceData::default();
                data.index = *index;
                data.records = Some(bytes::Bytes::from(build_batch(0, values)));
                data
            })
            .collect();
        topic
    };
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = PRODUCE_TIMEOUT_MS;
    request.topic_data = vec![
        topic(orders, &[(0, &[b"zero-a", b"zero-b"]), (1, &[b"one-a"])]),
        topic(nowhere, &[(0, &[b"lost"])]),
    ];
    let answer: ProduceResponse = client.call(ApiKey::Produce, PRODUCE_VERSION, &request);
    // Per topic: its id, and each partition's index, error and base offset.
    type Answered = (Uuid, Vec<(i32, i16, i64)>);
    let answered: Vec<Answered> = answer
        .responses
        .iter()
        .map(|topic| (topic.topic_id, produce_partition_answers(topic)))
        .collect();
    assert_eq!(
        answered,
        vec![
            (orders, vec![(0, NONE, 0), (1, NONE, 0)]),
            (nowhere, vec![(0, UNKNOWN_TOPIC_ID, -1)]),
        ]
    );
    // A second request appends after the first.
    request.topic_data = vec![topic(orders, &[(0, &[b"zero-c"])])];
    let answer: ProduceResponse = client.call(ApiKey::Produce, PRODUCE_VERSION, &request);
    let partition = &answer.responses[0].partition_responses[0];
    assert_eq!((partition.error_code, partition.base_offset), (NONE, 2));

    let read = common::read_all(&broker, "orders", 2);
    let values = |partition: i32| -> Vec<Vec<u8>> {
        read.get(&partition)
            .map(|records| {
                records
                    .iter()
                    .map(|record| record.value.clone().unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        values(0),
        [b"zero-a".to_vec(), b"zero-b".to_vec(), b"zero-c".to_vec()]
    );
    assert_eq!(values(1), [b"one-a".to_vec()]);
}

/// OffsetCommit and OffsetFetch v10 (KIP-848): topics named by id. A commit
/// by id lands under the topic's name (OffsetFetch v9 reads it), a fetch by
/// id and an all-topics fetch answer with the id, and an id no topic has is
/// UNKNOWN_TOPIC_ID for each of its partitions. The kafka-protocol crate
/// stops at v9, and v10's bytes are v9's with ids for names: the requests
/// are v9's encoding with 15-byte names (16 bytes as compact strings)
/// swapped for ids, the answers read back as v9 after the reverse swap.
#[test]
fn offset_commit_and_fetch_v10_name_topics_by_id() {
    let broker = TestBroker::start();
    broker.create_topic(ID_SIZED_TOPIC, 2);
    let mut client = WireClient::new(&broker);
    let topic_id = topic_id_of(&mut client, ID_SIZED_TOPIC);
    let nowhere = Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0001);
    let swaps = [(ID_SIZED_TOPIC, topic_id), (ID_SIZED_NOWHERE, nowhere)];
    let mut stream = raw_connect(broker.address());

    // Commit by id: partition 0 at 42, partition 1 at 7; and the unknown id.
    let commit_topic = |name: &str, partitions: &[(i32, i64)]| {
        let mut topic = OffsetCommitRequestTopic::default();
        topic.name = TopicName(text(name));
        topic.partitions = partitions
            .iter()
            .map(|(index, offset)| {
                let mut partition = OffsetCommitRequestPartition::default();
                partition.partition_index = *index;
                partition.committed_offset = *offset;
                partition
            })
            .collect();
        topic
    };
    let mut commit = OffsetCommitRequest::default();
    commit.group_id = GroupId(text("by-id"));
    commit.generation_id_or_member_epoch = -1;
    commit.topics = vec![
        commit_topic(ID_SIZED_TOPIC, &[(0, 42), (1, 7)]),
        commit_topic(ID_SIZED_NOWHERE, &[(0, 1)]),
    ];
    // A client finds the group's coordinator first, which creates
    // `__consumer_offsets`; the coordinator answers NOT_COORDINATOR or
    // COORDINATOR_LOAD_IN_PROGRESS until its partition is led and loaded,
    // and a client retries.
    let mut find = FindCoordinatorRequest::default();
    find.coordinator_keys = vec![text("by-id")];
    let _: FindCoordinatorResponse =
        client.call(ApiKey::FindCoordinator, FIND_COORDINATOR_VERSION, &find);
    let committed = wait_for(
        "the group's coordinator to take commits",
        FENCE_TIMEOUT,
        POLL_INTERVAL,
        || {
            let answer: OffsetCommitResponse = call_by_id(
                &mut stream,
                ApiKey::OffsetCommit,
                BY_ID_VERSION,
                &commit,
                &swaps,
            );
            let committed: Vec<(String, Vec<(i32, i16)>)> = answer
                .topics
                .iter()
                .map(|topic| {
                    let partitions = topic
                        .partitions
                        .iter()
                        .map(|partition| (partition.partition_index, partition.error_code))
                        .collect();
                    (topic.name.0.to_string(), partitions)
                })
                .collect();
            let retriable = committed[0]
                .1
                .iter()
                .any(|(_, error)| RETRIABLE_COORDINATOR_ERRORS.contains(error));
            if retriable {
                Err(format!("{committed:?}"))
            } else {
                Ok(committed)
            }
        },
    );
    assert_eq!(
        committed,
        vec![
            (ID_SIZED_TOPIC.to_string(), vec![(0, NONE), (1, NONE)]),
            (ID_SIZED_NOWHERE.to_string(), vec![(0, UNKNOWN_TOPIC_ID)]),
        ]
    );

    // Fetch by id (the topic and the unknown id) and every topic.
    let fetch_topic = |name: &str, partitions: &[i32]| {
        let mut topic = OffsetFetchRequestTopics::default();
        topic.name = TopicName(text(name));
        topic.partition_indexes = partitions.to_vec();
        topic
    };
    let mut named = OffsetFetchRequestGroup::default();
    named.group_id = GroupId(text("by-id"));
    named.topics = Some(vec![
        fetch_topic(ID_SIZED_TOPIC, &[0, 1]),
        fetch_topic(ID_SIZED_NOWHERE, &[3]),
    ]);
    let mut every = OffsetFetchRequestGroup::default();
    every.group_id = GroupId(text("by-id"));
    every.topics = None;
    let mut fetch = OffsetFetchRequest::default();
    fetch.groups = vec![named, every];
    let answer: OffsetFetchResponse = call_by_id(
        &mut stream,
        ApiKey::OffsetFetch,
        BY_ID_VERSION,
        &fetch,
        &swaps,
    );
    // Per group, per topic: its name, and each partition's index,
    // committed offset and error code.
    type Fetched = Vec<(String, Vec<(i32, i64, i16)>)>;
    let fetched: Vec<Fetched> = answer
        .groups
        .iter()
        .map(|group| {
            assert_eq!(group.error_code, NONE);
            group
                .topics
                .iter()
                .map(|topic| {
                    let partitions = topic
                        .partitions
                        .iter()
                        .map(|partition| {
                            (
                                partition.partition_index,
                                partition.committed_offset,
                                partition.error_code,
                            )
                        })
                        .collect();
                    (topic.name.0.to_string(), partitions)
                })
                .collect()
        })
        .collect();
    let the_topic = (
        ID_SIZED_TOPIC.to_string(),
        vec![(0, 42, NONE), (1, 7, NONE)],
    );
    assert_eq!(
        fetched,
        vec![
            vec![
                the_topic.clone(),
                (
                    ID_SIZED_NOWHERE.to_string(),
                    vec![(3, -1, UNKNOWN_TOPIC_ID)]
                ),
            ],
            vec![the_topic],
        ]
    );

    // The commit by id is the topic's, by name too.
    let mut by_name = OffsetFetchRequestGroup::default();
    by_name.group_id = GroupId(text("by-id"));
    by_name.topics = Some(vec![fetch_topic(ID_SIZED_TOPIC, &[0, 1])]);
    let mut fetch = OffsetFetchRequest::default();
    fetch.groups = vec![by_name];
    let answer: OffsetFetchResponse = client.call(ApiKey::OffsetFetch, 9, &fetch);
    let offsets: Vec<i64> = answer.groups[0].topics[0]
        .partitions
        .iter()
        .map(|partition| partition.committed_offset)
        .collect();
    assert_eq!(offsets, [42, 7]);
}

/// The id the broker's Metadata gives `name`.
fn topic_id_of(client: &mut WireClient, name: &str) -> Uuid {
    let mut request = MetadataRequest::default();
    request.topics = None;
    let metadata: MetadataResponse = client.call(ApiKey::Metadata, METADATA_VERSION, &request);
    metadata
        .topics
        .iter()
        .find(|topic| {
            topic
                .name
                .as_ref()
                .is_some_and(|listed| listed.0.as_str() == name)
        })
        .map(|topic| topic.topic_id)
        .expect("the topic listed")
}

/// Sends `request` at `version` (v10) as its v9 encoding with each name of
/// `swaps` (compact strings of 16 bytes) replaced by its id, and reads the
/// answer back as v9 after swapping the ids for the names again.
fn call_by_id<Req: Encodable, Resp: Decodable>(
    stream: &mut std::net::TcpStream,
    key: ApiKey,
    version: i16,
    request: &Req,
    swaps: &[(&str, Uuid)],
) -> Resp {
    let compact_name = |name: &str| {
        let mut bytes = vec![name.len() as u8 + 1];
        bytes.extend_from_slice(name.as_bytes());
        assert_eq!(bytes.len(), 16, "{name}: not the size of an id");
        bytes
    };
    let swap = |bytes: &mut Vec<u8>, from: &[u8], to: &[u8]| {
        let at = bytes
            .windows(from.len())
            .position(|window| window == from)
            .expect("the bytes to swap are there");
        bytes[at..at + from.len()].copy_from_slice(to);
    };
    let mut body = bytes::BytesMut::new();
    request
        .encode(&mut body, BY_ID_BYTES_OF)
        .expect("encoding the body");
    let mut body = body.to_vec();
    for (name, id) in swaps {
        if body
            .windows(16)
            .any(|window| window == compact_name(name).as_slice())
        {
            swap(&mut body, &compact_name(name), id.as_bytes());
        }
    }
    send_bytes(stream, key, version, 1, &body);
    let frame = common::read_response(stream).expect("reading the response");
    let mut frame = frame;
    for (name, id) in swaps {
        while frame.windows(16).any(|window| window == id.as_bytes()) {
            swap(&mut frame, id.as_bytes(), &compact_name(name));
        }
    }
    let mut frame = bytes::Bytes::from(frame);
    kafka_protocol::messages::ResponseHeader::decode(
        &mut frame,
        key.response_header_version(BY_ID_BYTES_OF),
    )
    .expect("decoding the response header");
    let response = Resp::decode(&mut frame, BY_ID_BYTES_OF).expect("decoding the response");
    assert!(frame.is_empty(), "trailing bytes");
    response
}

/// Kafka's ConfigSource and ConfigType values the configs test expects.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;
const INVALID_REQUEST: i16 = 42;
/// DescribeConfigs: v3 adds types and documentation.
const DESCRIBE_CONFIGS_VERSION: i16 = 4;
const DESCRIBE_CONFIGS_UNTYPED_VERSION: i16 = 2;
/// The operator's retention for the configs test, and Kafka's default.
const OPERATOR_RETENTION_MS: &str = "3600000";
const DEFAULT_RETENTION_MS: &str = "604800000";
/// Broker configs a Kafka admin expects to find described (issue list).
const EXPECTED_BROKER_CONFIGS: &[&str] = &[
    "advertised.listeners",
    "listeners",
    "log.dirs",
    "num.partitions",
    "default.replication.factor",
    "min.insync.replicas",
    "log.retention.ms",
    "log.retention.bytes",
    "log.retention.check.interval.ms",
    "log.segment.bytes",
    "group.initial.rebalance.delay.ms",
    "group.consumer.session.timeout.ms",
    "transaction.max.timeout.ms",
    "transaction.state.log.replication.factor",
];

/// One described config, as the test compares it: value, source, read
/// only, type, whether documented, and its synonyms (name, value, source).
type Described = (
    Option<String>,
    i8,
    bool,
    i8,
    bool,
    Vec<(String, Option<String>, i8)>,
);

fn describe_configs(
    client: &mut WireClient,
    version: i16,
    resource_type: i8,
    name: &str,
) -> (i16, BTreeMap<String, Described>) {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
    let mut resource = DescribeConfigsResource::default();
    resource.resource_type = resource_type;
    resource.resource_name = text(name);
    resource.configuration_keys = None;
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![resource];
    request.include_synonyms = true;
    request.include_documentation = version >= 3;
    let response: DescribeConfigsResponse = client.call(ApiKey::DescribeConfigs, version, &request);
    let result = &response.results[0];
    let configs = result
        .configs
        .iter()
        .map(|config| {
            let synonyms = config
                .synonyms
                .iter()
                .map(|synonym| {
                    (
                        synonym.name.to_string(),
                        synonym.value.as_ref().map(ToString::to_string),
                        synonym.source,
                    )
                })
                .collect();
            (
                config.name.to_string(),
                (
                    config.value.as_ref().map(ToString::to_string),
                    config.config_source,
                    config.read_only,
                    config.config_type,
                    config
                        .documentation
                        .as_ref()
                        .is_some_and(|doc| !doc.is_empty()),
                    synonyms,
                ),
            )
        })
        .collect();
    (result.error_code, configs)
}

/// DescribeConfigs as Kafka answers it: a broker's settings with their
/// sources (STATIC_BROKER_CONFIG for what the operator set, DEFAULT_CONFIG
/// otherwise), synonyms (the operator's value, then the default), types
/// and documentation from v3, read only (static here); a topic's configs
/// with their own value first and the broker setting they fall back to as
/// synonyms; librdkafka sees the same sources. Altering a broker config is
/// refused naming it; ListConfigResources lists topics and brokers.
#[test]
fn describe_configs_answers_types_sources_and_synonyms_as_kafka() {
    let broker = TestBroker::start_with(&["--retention-ms", OPERATOR_RETENTION_MS]);
    broker.create_topic("described", 1);
    let mut client = WireClient::new(&broker);

    let (error, configs) = describe_configs(&mut client, DESCRIBE_CONFIGS_VERSION, 4, "1");
    assert_eq!(error, NONE);
    for name in EXPECTED_BROKER_CONFIGS {
        assert!(configs.contains_key(*name), "broker config {name} missing");
    }
    let retention = |value: &str, source: i8| {
        (
            "log.retention.ms".to_string(),
            Some(value.to_string()),
            source,
        )
    };
    assert_eq!(
        configs["log.retention.ms"],
        (
            Some(OPERATOR_RETENTION_MS.to_string()),
            SOURCE_STATIC_BROKER,
            true,
            TYPE_LONG,
            true,
            vec![
                retention(OPERATOR_RETENTION_MS, SOURCE_STATIC_BROKER),
                retention(DEFAULT_RETENTION_MS, SOURCE_DEFAULT),
            ],
        )
    );
    let segment = &configs["log.segment.bytes"];
    assert_eq!((segment.1, segment.3), (SOURCE_DEFAULT, TYPE_INT));
    assert_eq!(segment.5.len(), 1, "{segment:?}");
    assert_eq!(configs["group.consumer.assignors"].3, TYPE_LIST);
    assert_eq!(
        configs["advertised.listeners"].0,
        Some(format!("PLAINTEXT://{}", broker.address()))
    );
    // Every config of every broker is documented and typed at v3+.
    for (name, described) in &configs {
        assert!(described.4 && described.3 != 0, "{name}: {described:?}");
    }
    // Before v3 there are no types (the field is not on the wire).
    let (_, untyped) = describe_configs(&mut client, DESCRIBE_CONFIGS_UNTYPED_VERSION, 4, "1");
    assert_eq!(untyped["log.retention.ms"].3, 0);
    // Another broker's id is not this broker's to describe.
    let (error, _) = describe_configs(&mut client, DESCRIBE_CONFIGS_VERSION, 4, "7");
    assert_eq!(error, INVALID_REQUEST);

    // A topic: its own value first, then the broker setting it falls back to.
    let admin = broker.admin();
    let mut change =
        rdkafka::admin::AlterConfig::new(rdkafka::admin::ResourceSpecifier::Topic("described"));
    change = change.set("retention.ms", "120000");
    let altered =
        futures_lite::future::block_on(admin.alter_configs([&change], &common::admin_options()))
            .expect("AlterConfigs");
    assert_eq!(altered.len(), 1);
    let (error, topic) = describe_configs(&mut client, DESCRIBE_CONFIGS_VERSION, 2, "described");
    assert_eq!(error, NONE);
    assert_eq!(
        topic["retention.ms"],
        (
            Some("120000".to_string()),
            SOURCE_TOPIC,
            false,
            TYPE_LONG,
            true,
            vec![
                (
                    "retention.ms".to_string(),
                    Some("120000".to_string()),
                    SOURCE_TOPIC
                ),
                retention(OPERATOR_RETENTION_MS, SOURCE_STATIC_BROKER),
                retention(DEFAULT_RETENTION_MS, SOURCE_DEFAULT),
            ],
        )
    );
    let segment_ms = &topic["segment.ms"];
    assert_eq!(segment_ms.1, SOURCE_DEFAULT);
    assert_eq!(segment_ms.5[0].0, "log.roll.ms");

    // librdkafka reads the same sources.
    let described = futures_lite::future::block_on(admin.describe_configs(
        [&rdkafka::admin::ResourceSpecifier::Broker(1)],
        &common::admin_options(),
    ))
    .expect("DescribeConfigs");
    let resource = described[0].as_ref().expect("the broker described");
    let entry = resource.get("log.retention.ms").expect("log.retention.ms");
    assert_eq!(entry.value.as_deref(), Some(OPERATOR_RETENTION_MS));
    assert_eq!(entry.source, rdkafka::admin::ConfigSource::StaticBroker);
    assert!(entry.is_read_only && !entry.is_default && !entry.is_sensitive);
    let entry = resource
        .get("log.segment.bytes")
        .expect("log.segment.bytes");
    assert_eq!(entry.source, rdkafka::admin::ConfigSource::Default);

    // Altering a broker config: refused, naming the config.
    {
        use kafka_protocol::messages::incremental_alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        use kafka_protocol::messages::{
            IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
        };
        let mut config = AlterableConfig::default();
        config.name = text("log.retention.ms");
        config.value = Some(text("1000"));
        let mut resource = AlterConfigsResource::default();
        resource.resource_type = 4;
        resource.resource_name = text("1");
        resource.configs = vec![config];
        let mut request = IncrementalAlterConfigsRequest::default();
        request.resources = vec![resource];
        let response: IncrementalAlterConfigsResponse =
            client.call(ApiKey::IncrementalAlterConfigs, 1, &request);
        let answer = &response.responses[0];
        assert_eq!(answer.error_code, INVALID_REQUEST);
        let message = answer.error_message.as_ref().map(ToString::to_string);
        assert!(
            message
                .as_deref()
                .is_some_and(|message| message.contains("log.retention.ms")
                    && message.contains("retention_ms")),
            "{message:?}"
        );
    }

    // ListConfigResources: every type by default, one type, an unknown one.
    {
        use kafka_protocol::messages::{ListConfigResourcesRequest, ListConfigResourcesResponse};
        let mut list = |version: i16, types: &[i8]| {
            let mut request = ListConfigResourcesRequest::default();
            request.resource_types = types.to_vec();
            let response: ListConfigResourcesResponse =
                client.call(ApiKey::ListConfigResources, version, &request);
            let mut listed: Vec<(String, i8)> = response
                .config_resources
                .iter()
                .map(|resource| (resource.resource_name.to_string(), resource.resource_type))
                .collect();
            listed.sort();
            (response.error_code, listed)
        };
        let topic = ("described".to_string(), 2);
        let this_broker = ("1".to_string(), 4);
        assert_eq!(
            list(1, &[]),
            (NONE, vec![this_broker.clone(), topic.clone()])
        );
        assert_eq!(list(1, &[2]), (NONE, vec![topic]));
        assert_eq!(list(1, &[4, 16]), (NONE, vec![this_broker]));
        assert_eq!(list(1, &[99]), (UNSUPPORTED_VERSION, vec![]));
        // v0: client-metrics resources, of which there are none.
        assert_eq!(list(0, &[]), (NONE, vec![]));
    }
}
