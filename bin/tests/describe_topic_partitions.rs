//! DescribeTopicPartitions (API key 75, KIP-966) on the wire against the
//! real broker: paging a topic of 10,000 partitions a thousand at a time,
//! resuming from a cursor across several topics, Kafka's errors for unknown
//! topics, bad cursors and out-of-range limits, and, on a three-broker
//! cluster, agreement with Metadata on leaders, epochs, replicas, ISR and
//! offline replicas (also once a broker has stopped).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{admin_options, start_cluster_with, text, wait_for, Stop, TestBroker, WireClient};
use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
use kafka_protocol::messages::describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use rdkafka::admin::{NewTopic, TopicReplication};
use uuid::Uuid;

/// The only version of the API.
const VERSION: i16 = 0;
/// Metadata v12 has topic ids and leader epochs.
const METADATA_VERSION: i16 = 12;
/// ApiVersions v3 is the first flexible one, as Kafka 4 clients send.
const API_VERSIONS_VERSION: i16 = 3;
/// The large topic. Creating it and paging through it take about 2 s in
/// a debug build on a 2-core machine, so it need not be smaller.
const BIG_TOPIC: &str = "big";
const BIG_PARTITIONS: i32 = 10_000;
/// Partitions asked for per page of the large topic.
const PAGE_PARTITIONS: i32 = 1_000;
/// Kafka's cap on a page (`max.request.partition.size.limit` default) and
/// the request's default limit.
const RESPONSE_PARTITIONS_MAX: i32 = 2_000;
/// A limit above all the partitions of the small topics.
const ROOMY_LIMIT: i32 = 100;
/// A bound on the pages of one walk, so a cursor that never advances fails
/// the test instead of looping.
const PAGES_MAX: usize = 100;
/// Kafka's error codes checked here.
const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const INVALID_REQUEST: i16 = 42;
/// Kafka without an authorizer grants every topic operation: READ (3),
/// WRITE (4), CREATE (5), DELETE (6), ALTER (7), DESCRIBE (8),
/// DESCRIBE_CONFIGS (10) and ALTER_CONFIGS (11), one bit each.
const TOPIC_AUTHORIZED_OPERATIONS: i32 = 0b1101_1111_1000;
/// What an error response leaves the field at: the schema's default.
const AUTHORIZED_OPERATIONS_UNSET: i32 = i32::MIN;

const NODES: usize = 3;
/// No automatic preferred-leader rebalance: leadership moves only when the
/// test stops a broker.
const CLUSTER_ARGS: &[&str] = &["--leader-imbalance-check-interval-ms", "0"];
const REPLICATED_TOPIC: &str = "replicated";
const REPLICATED_PARTITIONS: i32 = 6;
/// Partitions per page on the cluster: fewer than the topic has.
const CLUSTER_PAGE_PARTITIONS: i32 = 4;
const _: () = assert!(CLUSTER_PAGE_PARTITIONS < REPLICATED_PARTITIONS);
/// Bound for the cluster to place the topic, and to move a stopped
/// broker's partitions.
const METADATA_TIMEOUT: Duration = Duration::from_secs(60);
const METADATA_POLL_INTERVAL: Duration = Duration::from_millis(250);

impl WireClient {
    fn describe(
        &mut self,
        topics: &[&str],
        cursor: Option<(&str, i32)>,
        limit: i32,
    ) -> DescribeTopicPartitionsResponse {
        let mut request = DescribeTopicPartitionsRequest::default();
        request.topics = topics
            .iter()
            .map(|name| {
                let mut topic = TopicRequest::default();
                topic.name = TopicName(text(name));
                topic
            })
            .collect();
        request.response_partition_limit = limit;
        request.cursor = cursor.map(|(topic, partition)| {
            let mut cursor = Cursor::default();
            cursor.topic_name = TopicName(text(topic));
            cursor.partition_index = partition;
            cursor
        });
        self.call(ApiKey::DescribeTopicPartitions, VERSION, &request)
    }

    fn metadata(&mut self, topic: &str) -> MetadataResponse {
        let mut named = MetadataRequestTopic::default();
        named.name = Some(TopicName(text(topic)));
        let mut request = MetadataRequest::default();
        request.topics = Some(vec![named]);
        self.call(ApiKey::Metadata, METADATA_VERSION, &request)
    }
}

fn name(topic: &DescribeTopicPartitionsResponseTopic) -> String {
    topic
        .name
        .as_ref()
        .map(|name| name.0.to_string())
        .unwrap_or_default()
}

/// (topic, partition indexes) per topic of a response, and its next cursor.
type Page = (Vec<(String, Vec<i32>)>, Option<(String, i32)>);

fn page(response: &DescribeTopicPartitionsResponse) -> Page {
    let topics = response
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| partition.partition_index)
                .collect();
            (name(topic), partitions)
        })
        .collect();
    let next = response
        .next_cursor
        .as_ref()
        .map(|cursor| (cursor.topic_name.0.to_string(), cursor.partition_index));
    (topics, next)
}

fn indexes(range: std::ops::Range<i32>) -> Vec<i32> {
    range.collect()
}

/// Every page of `topics` from the start, following each next cursor.
fn walk(client: &mut WireClient, topics: &[&str], limit: i32) -> Vec<Page> {
    let mut pages = Vec::new();
    let mut cursor: Option<(String, i32)> = None;
    loop {
        assert!(
            pages.len() < PAGES_MAX,
            "the cursor does not advance: {cursor:?}"
        );
        let at = cursor
            .as_ref()
            .map(|(topic, partition)| (topic.as_str(), *partition));
        let response = client.describe(topics, at, limit);
        let answered = page(&response);
        cursor = answered.1.clone();
        pages.push(answered);
        if cursor.is_none() {
            return pages;
        }
    }
}

#[test]
fn pages_through_ten_thousand_partitions_each_once_in_order() {
    let broker = TestBroker::start();
    let mut client = WireClient::new(&broker);
    let versions: ApiVersionsResponse = client.call(
        ApiKey::ApiVersions,
        API_VERSIONS_VERSION,
        &ApiVersionsRequest::default(),
    );
    let listed = versions
        .api_keys
        .iter()
        .find(|api| api.api_key == ApiKey::DescribeTopicPartitions as i16)
        .map(|api| (api.min_version, api.max_version));
    assert_eq!(listed, Some((VERSION, VERSION)), "ApiVersions lists it");

    let started = Instant::now();
    broker.create_topic(BIG_TOPIC, BIG_PARTITIONS);
    let created = started.elapsed();
    let started = Instant::now();
    let pages = walk(&mut client, &[BIG_TOPIC], PAGE_PARTITIONS);
    eprintln!(
        "created {BIG_PARTITIONS} partitions in {created:?}, paged through them in {:?}",
        started.elapsed()
    );
    assert_eq!(pages.len(), (BIG_PARTITIONS / PAGE_PARTITIONS) as usize);
    let mut seen = Vec::new();
    for (index, (topics, next)) in pages.iter().enumerate() {
        assert_eq!(topics.len(), 1, "page {index}");
        assert_eq!(topics[0].0, BIG_TOPIC, "page {index}");
        assert_eq!(topics[0].1.len(), PAGE_PARTITIONS as usize, "page {index}");
        seen.extend_from_slice(&topics[0].1);
        let expected_next = (seen.len() < BIG_PARTITIONS as usize)
            .then(|| (BIG_TOPIC.to_string(), seen.len() as i32));
        assert_eq!(*next, expected_next, "page {index}");
    }
    assert_eq!(seen, indexes(0..BIG_PARTITIONS));

    // The topic's fields, as Metadata gives them.
    let metadata = client.metadata(BIG_TOPIC);
    let response = client.describe(&[BIG_TOPIC], Some((BIG_TOPIC, 0)), PAGE_PARTITIONS);
    let topic = &response.topics[0];
    assert_eq!(topic.error_code, NONE);
    assert_eq!(topic.topic_id, metadata.topics[0].topic_id);
    assert_ne!(topic.topic_id, Uuid::nil());
    assert!(!topic.is_internal);
    assert_eq!(
        topic.topic_authorized_operations,
        TOPIC_AUTHORIZED_OPERATIONS
    );
    for partition in &topic.partitions {
        assert_eq!(partition.error_code, NONE);
        assert_eq!(partition.leader_id.0, 1);
        assert_eq!(partition.replica_nodes.len(), 1);
        assert_eq!(partition.isr_nodes.len(), 1);
        assert!(partition.offline_replicas.is_empty());
        assert_eq!(partition.eligible_leader_replicas, Some(Vec::new()));
        assert_eq!(partition.last_known_elr, Some(Vec::new()));
    }

    // Larger limits are capped, and the request's default is the cap.
    for limit in [i32::MAX, RESPONSE_PARTITIONS_MAX + 1] {
        let (topics, next) = page(&client.describe(&[BIG_TOPIC], None, limit));
        assert_eq!(
            topics[0].1,
            indexes(0..RESPONSE_PARTITIONS_MAX),
            "limit {limit}"
        );
        assert_eq!(next, Some((BIG_TOPIC.to_string(), RESPONSE_PARTITIONS_MAX)));
    }
    let defaults = DescribeTopicPartitionsRequest::default();
    assert_eq!(defaults.response_partition_limit, RESPONSE_PARTITIONS_MAX);
}

#[test]
fn several_topics_resume_from_a_cursor_in_the_middle_of_the_second() {
    let broker = TestBroker::start();
    for (topic, partitions) in [("alpha", 3), ("bravo", 5), ("charlie", 2)] {
        broker.create_topic(topic, partitions);
    }
    let mut client = WireClient::new(&broker);
    let unsorted = ["charlie", "alpha", "bravo", "alpha"];

    // Sorted by name, each once, all in one page.
    let everything = vec![
        ("alpha".to_string(), indexes(0..3)),
        ("bravo".to_string(), indexes(0..5)),
        ("charlie".to_string(), indexes(0..2)),
    ];
    assert_eq!(
        page(&client.describe(&unsorted, None, RESPONSE_PARTITIONS_MAX)),
        (everything.clone(), None)
    );
    // No names: every topic.
    assert_eq!(
        page(&client.describe(&[], None, RESPONSE_PARTITIONS_MAX)),
        (everything, None)
    );

    // From bravo's partition 2, four partitions: bravo 2-4, charlie 0.
    let first = page(&client.describe(&unsorted, Some(("bravo", 2)), 4));
    assert_eq!(
        first,
        (
            vec![
                ("bravo".to_string(), indexes(2..5)),
                ("charlie".to_string(), vec![0]),
            ],
            Some(("charlie".to_string(), 1))
        )
    );
    let second = page(&client.describe(&unsorted, Some(("charlie", 1)), 4));
    assert_eq!(second, (vec![("charlie".to_string(), vec![1])], None));
    // The same from the all-topics form.
    let all_topics = page(&client.describe(&[], Some(("bravo", 2)), 4));
    assert_eq!(all_topics, first);

    // A page that fills up exactly at the end of a topic points at the
    // next topic's first partition.
    assert_eq!(
        page(&client.describe(&unsorted, None, 3)),
        (
            vec![("alpha".to_string(), indexes(0..3))],
            Some(("bravo".to_string(), 0))
        )
    );

    // Walking a page of two at a time visits every partition once.
    let pages = walk(&mut client, &unsorted, 2);
    let visited: Vec<(String, i32)> = pages
        .iter()
        .flat_map(|(topics, _)| {
            topics.iter().flat_map(|(topic, partitions)| {
                partitions
                    .iter()
                    .map(move |partition| (topic.clone(), *partition))
            })
        })
        .collect();
    let expected: Vec<(String, i32)> = [("alpha", 3), ("bravo", 5), ("charlie", 2)]
        .iter()
        .flat_map(|(topic, count)| (0..*count).map(move |partition| (topic.to_string(), partition)))
        .collect();
    assert_eq!(visited, expected);
}

#[test]
fn unknown_topics_bad_cursors_and_odd_limits_are_answered_as_kafka_does() {
    let broker = TestBroker::start();
    broker.create_topic("known", 3);
    let mut client = WireClient::new(&broker);

    // An unknown topic: its error, no id, no partitions; the known one is
    // answered as usual. An illegal name is INVALID_TOPIC_EXCEPTION.
    let response = client.describe(&["missing", "known", "bad/name"], None, ROOMY_LIMIT);
    let answers: Vec<(String, i16, Uuid, usize)> = response
        .topics
        .iter()
        .map(|topic| {
            (
                name(topic),
                topic.error_code,
                topic.topic_id,
                topic.partitions.len(),
            )
        })
        .collect();
    let known_id = client.metadata("known").topics[0].topic_id;
    assert_eq!(
        answers,
        vec![
            (
                "bad/name".to_string(),
                INVALID_TOPIC_EXCEPTION,
                Uuid::nil(),
                0
            ),
            ("known".to_string(), NONE, known_id, 3),
            (
                "missing".to_string(),
                UNKNOWN_TOPIC_OR_PARTITION,
                Uuid::nil(),
                0
            ),
        ]
    );
    assert!(response.next_cursor.is_none());
    // With every topic asked for, a missing one cannot appear.
    let (topics, _) = page(&client.describe(&[], None, ROOMY_LIMIT));
    assert_eq!(topics, vec![("known".to_string(), indexes(0..3))]);

    // A cursor naming a topic the request does not: INVALID_REQUEST for
    // every named topic, in the request's order, and nothing else.
    let refused = |response: &DescribeTopicPartitionsResponse| -> Vec<(String, i16, usize, i32)> {
        assert!(response.next_cursor.is_none());
        response
            .topics
            .iter()
            .map(|topic| {
                (
                    name(topic),
                    topic.error_code,
                    topic.partitions.len(),
                    topic.topic_authorized_operations,
                )
            })
            .collect()
    };
    let expected = vec![
        (
            "missing".to_string(),
            INVALID_REQUEST,
            0,
            AUTHORIZED_OPERATIONS_UNSET,
        ),
        (
            "known".to_string(),
            INVALID_REQUEST,
            0,
            AUTHORIZED_OPERATIONS_UNSET,
        ),
    ];
    let response = client.describe(&["missing", "known"], Some(("other", 0)), ROOMY_LIMIT);
    assert_eq!(refused(&response), expected);
    // So does a negative cursor partition; with no topics named there is
    // no topic to carry the error.
    let response = client.describe(&["missing", "known"], Some(("known", -1)), ROOMY_LIMIT);
    assert_eq!(refused(&response), expected);
    let response = client.describe(&[], Some(("known", -1)), ROOMY_LIMIT);
    assert_eq!(refused(&response), Vec::new());

    // A limit of zero or below is raised to one partition.
    for limit in [0, -1, i32::MIN] {
        assert_eq!(
            page(&client.describe(&["known"], None, limit)),
            (
                vec![("known".to_string(), vec![0])],
                Some(("known".to_string(), 1))
            ),
            "limit {limit}"
        );
    }
    // A cursor past the last partition: the topic, without partitions.
    assert_eq!(
        page(&client.describe(&["known"], Some(("known", 7)), ROOMY_LIMIT)),
        (vec![("known".to_string(), Vec::new())], None)
    );
}

/// One partition as both APIs describe it: leader, leader epoch, replicas,
/// ISR, offline replicas.
type PartitionView = (i32, i32, Vec<i32>, Vec<i32>, Vec<i32>);

/// (topic id, partition → view) of one topic.
type TopicView = (Uuid, BTreeMap<i32, PartitionView>);

fn ids(nodes: &[kafka_protocol::messages::BrokerId]) -> Vec<i32> {
    nodes.iter().map(|node| node.0).collect()
}

/// A partition of either response as a [`PartitionView`]: Metadata's and
/// DescribeTopicPartitions' partitions are two types with these fields.
macro_rules! partition_view {
    ($partition:expr) => {
        (
            $partition.leader_id.0,
            $partition.leader_epoch,
            ids(&$partition.replica_nodes),
            ids(&$partition.isr_nodes),
            ids(&$partition.offline_replicas),
        )
    };
}

fn metadata_view(client: &mut WireClient) -> TopicView {
    let response = client.metadata(REPLICATED_TOPIC);
    let topic = &response.topics[0];
    let partitions = topic
        .partitions
        .iter()
        .map(|partition| (partition.partition_index, partition_view!(partition)))
        .collect();
    (topic.topic_id, partitions)
}

/// The topic through DescribeTopicPartitions, in pages of
/// [`CLUSTER_PAGE_PARTITIONS`], so that a cursor is followed too.
fn described_view(client: &mut WireClient) -> TopicView {
    let mut topic_id = None;
    let mut partitions = BTreeMap::new();
    let mut cursor = None;
    for _ in 0..PAGES_MAX {
        let response = client.describe(&[REPLICATED_TOPIC], cursor, CLUSTER_PAGE_PARTITIONS);
        let topic = &response.topics[0];
        assert_eq!(topic.error_code, NONE);
        assert!(!topic.is_internal);
        assert_eq!(
            *topic_id.get_or_insert(topic.topic_id),
            topic.topic_id,
            "one topic id on every page"
        );
        for partition in &topic.partitions {
            let view = partition_view!(partition);
            assert!(
                partitions.insert(partition.partition_index, view).is_none(),
                "partition {} twice",
                partition.partition_index
            );
        }
        match &response.next_cursor {
            Some(next) => cursor = Some((REPLICATED_TOPIC, next.partition_index)),
            None => return (topic_id.unwrap_or_default(), partitions),
        }
    }
    panic!("the cursor does not advance");
}

/// Waits until `broker`'s two answers agree (its metadata may move between
/// the calls) and satisfy `condition`; returns the agreed view.
fn agreeing_view(broker: &TestBroker, condition: impl Fn(&TopicView) -> bool) -> TopicView {
    wait_for(
        "DescribeTopicPartitions and Metadata to agree",
        METADATA_TIMEOUT,
        METADATA_POLL_INTERVAL,
        || {
            let mut client = WireClient::new(broker);
            let before = metadata_view(&mut client);
            let described = described_view(&mut client);
            let after = metadata_view(&mut client);
            if before == after && described == after && condition(&after) {
                Ok(after)
            } else {
                Err(format!(
                    "Metadata {before:?}, then {after:?}; DescribeTopicPartitions {described:?}"
                ))
            }
        },
    )
}

#[test]
fn agrees_with_metadata_on_a_three_broker_cluster() {
    let mut brokers = start_cluster_with(NODES, CLUSTER_ARGS);
    let admin = brokers[0].admin();
    let topic = NewTopic::new(
        REPLICATED_TOPIC,
        REPLICATED_PARTITIONS,
        TopicReplication::Fixed(NODES as i32),
    );
    let created = futures_lite::future::block_on(admin.create_topics(&[topic], &admin_options()))
        .expect("CreateTopics answered");
    assert!(created[0].is_ok(), "{created:?}");
    drop(admin);

    let placed = |view: &TopicView| {
        view.1.len() == REPLICATED_PARTITIONS as usize
            && view.1.values().all(|(leader, _, replicas, isr, offline)| {
                replicas.contains(leader)
                    && replicas.len() == NODES
                    && isr.len() == NODES
                    && offline.is_empty()
            })
    };
    let views: Vec<TopicView> = brokers
        .iter()
        .map(|broker| agreeing_view(broker, placed))
        .collect();
    assert_ne!(views[0].0, Uuid::nil());
    let leaders: std::collections::BTreeSet<i32> =
        views[0].1.values().map(|(leader, ..)| *leader).collect();
    assert_eq!(
        leaders.len(),
        NODES,
        "leaders spread over the brokers: {views:?}"
    );

    // Broker 3 stops: its partitions get new leaders at new epochs, and it
    // is an offline replica in both answers of the other two.
    let stopped = NODES as i32;
    assert!(
        brokers[NODES - 1].stop(Stop::Term),
        "broker {stopped} stops cleanly"
    );
    let moved = |view: &TopicView| {
        view.1.values().all(|(leader, _, _, _, offline)| {
            *leader != stopped && *leader >= 0 && offline == &[stopped]
        })
    };
    for broker in &brokers[..NODES - 1] {
        let view = agreeing_view(broker, moved);
        for (partition, (leader, epoch, ..)) in &views[0].1 {
            let (new_leader, new_epoch, ..) = &view.1[partition];
            if *leader == stopped {
                assert!(new_epoch > epoch, "partition {partition}: {view:?}");
            } else {
                assert_eq!(new_leader, leader, "partition {partition}: {view:?}");
            }
        }
    }
}
