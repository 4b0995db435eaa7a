//! Leader discovery hints (KIP-951) on a real three-broker cluster, on the
//! wire. A Produce v12 or a Fetch v16 sent to a broker that does not lead a
//! partition is answered NOT_LEADER_OR_FOLLOWER with the partition's
//! `CurrentLeader` (leader id and epoch as Metadata reports them) and the
//! `NodeEndpoints` of exactly the leaders it names (host, port and rack as
//! Metadata reports them); partitions it leads carry no hint. Produce v9 and
//! Fetch v15 carry neither field.
//!
//! Then the leader of one partition is killed: once the metadata moves it,
//! a broker that does not lead it names the new leader at the new epoch,
//! and the new leader itself answers a Fetch at the old epoch with
//! FENCED_LEADER_EPOCH naming itself.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::{
    admin_options, produce_all, quorum_leader, start_cluster_with, text, wait_for, Record, Stop,
    TestBroker, WireClient,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, TopicName,
};
use rdkafka::admin::{NewTopic, TopicReplication};
use sluice_engine::batch::build_batch;
use uuid::Uuid;

const NODES: usize = 3;
/// No automatic preferred-leader rebalance: leadership moves only when the
/// test kills a leader, so what Metadata said still holds when the hints
/// are asked for.
const CLUSTER_ARGS: &[&str] = &["--leader-imbalance-check-interval-ms", "0"];
const TOPIC: &str = "hinted";
/// One partition per broker: placement balances leaders, so every broker
/// leads one and is asked about the two it does not lead.
const PARTITIONS: i32 = 3;
/// Versions with the hints, and the last ones without.
const PRODUCE_HINTS_VERSION: i16 = 12;
const PRODUCE_PLAIN_VERSION: i16 = 9;
const FETCH_HINTS_VERSION: i16 = 16;
const FETCH_PLAIN_VERSION: i16 = 15;
/// Metadata v12 has topic ids, leader epochs and racks.
const METADATA_VERSION: i16 = 12;
/// Bound for the cluster to place the topic, and to move a killed
/// broker's partitions (its session timeout, then an election).
const METADATA_TIMEOUT: Duration = Duration::from_secs(60);
const METADATA_POLL_INTERVAL: Duration = Duration::from_millis(250);
const PRODUCE_TIMEOUT_MS: i32 = 10_000;
const PARTITION_FETCH_BYTES_MAX: i32 = 1 << 20;
/// A current leader epoch of -1 asks for no epoch check.
const NO_EPOCH: i32 = -1;
/// Kafka's error codes checked here.
const NONE: i16 = 0;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const FENCED_LEADER_EPOCH: i16 = 74;
/// `CurrentLeader` when there is no hint: the schema's default.
const NO_HINT: (i32, i32) = (-1, -1);

/// (node id, host, port, rack): an endpoint as Metadata or a hint gives it.
type Endpoint = (i32, String, i32, Option<String>);

/// (partition, error code, (leader id, leader epoch)): one partition's
/// answer with its `CurrentLeader`.
type Answer = (i32, i16, (i32, i32));

/// What one broker's Metadata says about the test topic.
#[derive(Debug, PartialEq, Eq)]
struct View {
    topic_id: Uuid,
    /// partition → (leader, leader epoch, ISR size).
    partitions: BTreeMap<i32, (i32, i32, usize)>,
    /// node id → endpoint, of the brokers Metadata lists.
    endpoints: BTreeMap<i32, Endpoint>,
}

impl View {
    fn leader(&self, partition: i32) -> (i32, i32) {
        let (leader, epoch, _) = self.partitions[&partition];
        (leader, epoch)
    }
}

fn view(broker: &TestBroker) -> View {
    let mut topic = MetadataRequestTopic::default();
    topic.name = Some(TopicName(text(TOPIC)));
    let mut request = MetadataRequest::default();
    request.topics = Some(vec![topic]);
    let response: MetadataResponse =
        WireClient::new(broker).call(ApiKey::Metadata, METADATA_VERSION, &request);
    let topic = &response.topics[0];
    View {
        topic_id: topic.topic_id,
        partitions: topic
            .partitions
            .iter()
            .map(|partition| {
                (
                    partition.partition_index,
                    (
                        partition.leader_id.0,
                        partition.leader_epoch,
                        partition.isr_nodes.len(),
                    ),
                )
            })
            .collect(),
        endpoints: response
            .brokers
            .iter()
            .map(|node| {
                let endpoint = (
                    node.node_id.0,
                    node.host.to_string(),
                    node.port,
                    node.rack.as_ref().map(|rack| rack.to_string()),
                );
                (node.node_id.0, endpoint)
            })
            .collect(),
    }
}

/// Waits until every broker in `brokers` reports the same view of the
/// topic, with all partitions led and `isr` replicas in sync, and it
/// satisfies `condition`.
fn agreed_view(brokers: &[&TestBroker], isr: usize, condition: impl Fn(&View) -> bool) -> View {
    wait_for(
        "every broker to report the same placed topic",
        METADATA_TIMEOUT,
        METADATA_POLL_INTERVAL,
        || {
            let views: Vec<View> = brokers.iter().map(|broker| view(broker)).collect();
            let first = &views[0];
            let placed = first.partitions.len() == PARTITIONS as usize
                && first
                    .partitions
                    .values()
                    .all(|(leader, _, in_sync)| *leader >= 0 && *in_sync == isr);
            if placed && views.iter().all(|view| view == first) && condition(first) {
                Ok(views.into_iter().next().expect("one view per broker"))
            } else {
                Err(format!("{views:?}"))
            }
        },
    )
}

fn produce(broker: &TestBroker, version: i16, partitions: &[i32]) -> ProduceResponse {
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(text(TOPIC));
    topic.partition_data = partitions
        .iter()
        .map(|index| {
            let mut partition = PartitionProduceData::default();
            partition.index = *index;
            partition.records = Some(Bytes::from(build_batch(0, &[b"hint"])));
            partition
        })
        .collect();
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = PRODUCE_TIMEOUT_MS;
    request.topic_data = vec![topic];
    WireClient::new(broker).call(ApiKey::Produce, version, &request)
}

/// A Fetch from offset 0 of `(partition, current leader epoch)` pairs.
fn fetch(
    broker: &TestBroker,
    version: i16,
    topic_id: Uuid,
    partitions: &[(i32, i32)],
) -> FetchResponse {
    let mut topic = FetchTopic::default();
    topic.topic_id = topic_id;
    topic.partitions = partitions
        .iter()
        .map(|(index, epoch)| {
            let mut partition = FetchPartition::default();
            partition.partition = *index;
            partition.current_leader_epoch = *epoch;
            partition.partition_max_bytes = PARTITION_FETCH_BYTES_MAX;
            partition
        })
        .collect();
    let mut request = FetchRequest::default();
    request.max_wait_ms = 0;
    request.min_bytes = 0;
    request.max_bytes = PARTITION_FETCH_BYTES_MAX;
    request.topics = vec![topic];
    WireClient::new(broker).call(ApiKey::Fetch, version, &request)
}

/// The answers of a Produce response.
fn produce_answers(response: &ProduceResponse) -> Vec<Answer> {
    response.responses[0]
        .partition_responses
        .iter()
        .map(|partition| {
            let leader = &partition.current_leader;
            (
                partition.index,
                partition.error_code,
                (leader.leader_id.0, leader.leader_epoch),
            )
        })
        .collect()
}

fn fetch_answers(response: &FetchResponse) -> Vec<Answer> {
    response.responses[0]
        .partitions
        .iter()
        .map(|partition| {
            let leader = &partition.current_leader;
            (
                partition.partition_index,
                partition.error_code,
                (leader.leader_id.0, leader.leader_epoch),
            )
        })
        .collect()
}

fn endpoints(nodes: &[kafka_protocol::messages::produce_response::NodeEndpoint]) -> Vec<Endpoint> {
    nodes
        .iter()
        .map(|node| {
            (
                node.node_id.0,
                node.host.to_string(),
                node.port,
                node.rack.as_ref().map(|rack| rack.to_string()),
            )
        })
        .collect()
}

fn fetch_endpoints(
    nodes: &[kafka_protocol::messages::fetch_response::NodeEndpoint],
) -> Vec<Endpoint> {
    nodes
        .iter()
        .map(|node| {
            (
                node.node_id.0,
                node.host.to_string(),
                node.port,
                node.rack.as_ref().map(|rack| rack.to_string()),
            )
        })
        .collect()
}

/// What `asked` should answer for `partitions`: each partition it leads
/// succeeds with no hint, each other one is NOT_LEADER_OR_FOLLOWER naming
/// its leader; and the endpoints of the leaders named, by node id.
fn expected(view: &View, asked: i32, partitions: &[i32]) -> (Vec<Answer>, Vec<Endpoint>) {
    let mut named = BTreeMap::new();
    let answers = partitions
        .iter()
        .map(|partition| {
            let (leader, epoch) = view.leader(*partition);
            if leader == asked {
                (*partition, NONE, NO_HINT)
            } else {
                named.insert(leader, view.endpoints[&leader].clone());
                (*partition, NOT_LEADER_OR_FOLLOWER, (leader, epoch))
            }
        })
        .collect();
    (answers, named.into_values().collect())
}

#[test]
fn a_broker_that_does_not_lead_a_partition_names_its_leader() {
    let mut brokers = start_cluster_with(NODES, CLUSTER_ARGS);
    let admin = brokers[0].admin();
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(NODES as i32));
    let created = futures_lite::future::block_on(admin.create_topics(&[topic], &admin_options()))
        .expect("CreateTopics answered");
    assert!(created[0].is_ok(), "{created:?}");
    let all: Vec<&TestBroker> = brokers.iter().collect();
    let placed = agreed_view(&all, NODES, |_| true);
    let leaders: Vec<i32> = placed
        .partitions
        .values()
        .map(|(leader, ..)| *leader)
        .collect();
    let mut distinct = leaders.clone();
    distinct.sort();
    assert_eq!(distinct, vec![1, 2, 3], "balanced leaders: {placed:?}");
    // Every leader serves its partition before the wire checks start.
    let records: Vec<Record> = (0..PARTITIONS)
        .map(|partition| Record::with_value(partition, b"ready".to_vec()))
        .collect();
    produce_all(&brokers[0], TOPIC, &[("acks", "all")], &records);

    let every: Vec<i32> = (0..PARTITIONS).collect();
    let every_unchecked: Vec<(i32, i32)> = every.iter().map(|index| (*index, NO_EPOCH)).collect();
    for (index, broker) in brokers.iter().enumerate() {
        let asked = index as i32 + 1;
        let (answers, named) = expected(&placed, asked, &every);
        assert_eq!(named.len(), NODES - 1, "the two other leaders are named");

        let response = produce(broker, PRODUCE_HINTS_VERSION, &every);
        assert_eq!(
            produce_answers(&response),
            answers,
            "Produce v12 to {asked}"
        );
        assert_eq!(
            endpoints(&response.node_endpoints),
            named,
            "Produce v12 to {asked}"
        );

        let response = fetch(
            broker,
            FETCH_HINTS_VERSION,
            placed.topic_id,
            &every_unchecked,
        );
        assert_eq!(fetch_answers(&response), answers, "Fetch v16 to {asked}");
        assert_eq!(
            fetch_endpoints(&response.node_endpoints),
            named,
            "Fetch v16 to {asked}"
        );

        // The versions before the hints: same errors, no hint, and no
        // tagged field the decoder did not know.
        let plain: Vec<Answer> = answers
            .iter()
            .map(|(partition, error, _)| (*partition, *error, NO_HINT))
            .collect();
        let response = produce(broker, PRODUCE_PLAIN_VERSION, &every);
        assert_eq!(produce_answers(&response), plain, "Produce v9 to {asked}");
        assert!(response.node_endpoints.is_empty());
        assert!(response.unknown_tagged_fields.is_empty());
        assert!(response.responses[0]
            .partition_responses
            .iter()
            .all(|partition| partition.unknown_tagged_fields.is_empty()));
        let response = fetch(
            broker,
            FETCH_PLAIN_VERSION,
            placed.topic_id,
            &every_unchecked,
        );
        assert_eq!(fetch_answers(&response), plain, "Fetch v15 to {asked}");
        assert!(response.unknown_tagged_fields.is_empty());
        assert!(response.responses[0]
            .partitions
            .iter()
            .all(|partition| partition.unknown_tagged_fields.is_empty()));
    }

    // Kill the leader of a partition, one that is not the active controller
    // so that the metadata quorum keeps its leader and moves the partition
    // after the broker's session timeout.
    let controller = quorum_leader(&brokers[0]);
    let (&moved, &(killed, old_epoch, _)) = placed
        .partitions
        .iter()
        .find(|(_, (leader, ..))| *leader != controller)
        .expect("two of three leaders are not the controller");
    brokers[killed as usize - 1].stop(Stop::Kill);
    let survivors: Vec<&TestBroker> = brokers
        .iter()
        .enumerate()
        .filter(|(index, _)| *index as i32 + 1 != killed)
        .map(|(_, broker)| broker)
        .collect();
    let after = agreed_view(&survivors, NODES - 1, |view| {
        let (leader, epoch) = view.leader(moved);
        leader != killed && epoch > old_epoch && !view.endpoints.contains_key(&killed)
    });
    let (leader, epoch) = after.leader(moved);
    let follower = (1..=NODES as i32)
        .find(|id| *id != killed && *id != leader)
        .expect("a third broker");
    let leader_endpoint = vec![after.endpoints[&leader].clone()];

    let asked = &brokers[follower as usize - 1];
    let response = produce(asked, PRODUCE_HINTS_VERSION, &[moved]);
    assert_eq!(
        produce_answers(&response),
        vec![(moved, NOT_LEADER_OR_FOLLOWER, (leader, epoch))],
        "Produce v12 to {follower} after the move"
    );
    assert_eq!(endpoints(&response.node_endpoints), leader_endpoint);
    let response = fetch(
        asked,
        FETCH_HINTS_VERSION,
        after.topic_id,
        &[(moved, NO_EPOCH)],
    );
    assert_eq!(
        fetch_answers(&response),
        vec![(moved, NOT_LEADER_OR_FOLLOWER, (leader, epoch))],
        "Fetch v16 to {follower} after the move"
    );
    assert_eq!(fetch_endpoints(&response.node_endpoints), leader_endpoint);

    // The new leader fences a fetch at the epoch the client last knew, and
    // names itself.
    let asked = &brokers[leader as usize - 1];
    let response = fetch(
        asked,
        FETCH_HINTS_VERSION,
        after.topic_id,
        &[(moved, old_epoch)],
    );
    assert_eq!(
        fetch_answers(&response),
        vec![(moved, FENCED_LEADER_EPOCH, (leader, epoch))],
        "Fetch v16 at epoch {old_epoch} to {leader}"
    );
    assert_eq!(fetch_endpoints(&response.node_endpoints), leader_endpoint);
}
