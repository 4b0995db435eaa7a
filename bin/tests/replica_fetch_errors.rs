//! The errors a partition leader gives a follower's Fetch (the replica
//! path: `replica_id` in the body below v15, in `ReplicaState` from v15),
//! on a real three-broker cluster, on the wire.
//!
//! A one-partition topic is placed on two brokers only (an explicit
//! assignment), the third, the active controller, holding no replica. Records
//! are written with acks=all, then the preferred leader is stopped with
//! SIGTERM so that leadership moves to the other replica at a higher leader
//! epoch, and it is started again to follow the new leader. Then, at Fetch
//! v12 (topic by name) and v15 (topic by id), both versions Kafka 3.x
//! followers send, the leader answers:
//!
//! - a fetch from the real follower, at offset 0, with the current epoch:
//!   NONE, with every record produced (the control: the request is
//!   well-formed), and at its log end: NONE;
//! - a fetch from the broker that holds no replica: NOT_LEADER_OR_FOLLOWER;
//! - a fetch at the epoch before the handover: FENCED_LEADER_EPOCH;
//! - a fetch one past the leader's log end: OFFSET_OUT_OF_RANGE;
//! - a fetch at an epoch after the leader's: UNKNOWN_LEADER_EPOCH (75;
//!   Sluice once answered 76, Kafka's UNSUPPORTED_COMPRESSION_TYPE, which
//!   clients take as fatal).
//!
//! Each error fetch differs from the control in one field only, so the
//! error can only come from that field.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use common::{
    admin_options, indexed_value, produce_all, quorum_leader, start_cluster_with, text, wait_for,
    Record, Stop, TestBroker, WireClient,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::records::RecordBatchDecoder;
use rdkafka::admin::{NewTopic, TopicReplication};
use uuid::Uuid;

const NODES: usize = 3;
/// No automatic preferred-leader rebalance: after the handover the leader
/// stays where the test put it, so the epoch read from Metadata is still the
/// leader's when the fetches are sent.
const CLUSTER_ARGS: &[&str] = &["--leader-imbalance-check-interval-ms", "0"];
const TOPIC: &str = "replica-fetch-errors";
const PARTITION: i32 = 0;
/// Records produced before the checks: the leader's log end.
const RECORDS: usize = 20;
const VALUE_BYTES: usize = 64;
/// The leader's log end once every record is in: offsets 0..RECORDS.
const LOG_END: i64 = RECORDS as i64;
/// How far past the log end the out-of-range fetch asks: the first offset
/// the leader does not have yet.
const PAST_LOG_END: i64 = 1;
/// Metadata v12 has topic ids and leader epochs.
const METADATA_VERSION: i16 = 12;
/// Bound for the brokers to register, the topic to be placed, leadership to
/// move on SIGTERM, and the restarted broker to catch up and rejoin the
/// ISR, each on a loaded 2-core machine.
const METADATA_TIMEOUT: Duration = Duration::from_secs(60);
const METADATA_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Fetch versions Kafka 3.x followers send: v12 names the follower in the
/// body and the topic by name; v15 (3.5+) names the follower in the
/// ReplicaState tagged field and the topic by id.
const REPLICA_ID_VERSION: i16 = 12;
const REPLICA_STATE_VERSION: i16 = 15;
const REPLICA_FETCH_VERSIONS: [i16; 2] = [REPLICA_ID_VERSION, REPLICA_STATE_VERSION];
/// Enough for every record produced, so the control reads them all.
const PARTITION_FETCH_BYTES_MAX: i32 = 1 << 20;
/// A full (sessionless) fetch, as Sluice hands out no sessions.
const SESSIONLESS_ID: i32 = 0;
const SESSIONLESS_EPOCH: i32 = -1;
/// A follower reads uncommitted data (up to the log end).
const READ_UNCOMMITTED: i8 = 0;
/// No current leader epoch: no epoch check is asked for.
const NO_EPOCH: i32 = -1;
/// No last fetched epoch: with one, Kafka would answer an offset past the
/// end of that epoch with a diverging epoch instead of OFFSET_OUT_OF_RANGE.
/// Sluice's own followers send none (net/src/broker/replication.rs).
const NO_LAST_FETCHED_EPOCH: i32 = -1;
/// The follower's broker epoch in ReplicaState: not known to the test.
const NO_REPLICA_EPOCH: i64 = -1;
/// Where the follower's own log starts.
const FOLLOWER_LOG_START: i64 = 0;
/// Kafka's error codes checked here.
const NONE: i16 = 0;
const OFFSET_OUT_OF_RANGE: i16 = 1;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const FENCED_LEADER_EPOCH: i16 = 74;
const UNKNOWN_LEADER_EPOCH: i16 = 75;

/// The test topic's one partition as one broker's Metadata shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Placed {
    topic_id: Uuid,
    leader: i32,
    epoch: i32,
    replicas: Vec<i32>,
    /// Sorted: the order of the ISR carries no meaning.
    isr: Vec<i32>,
}

fn metadata(broker: &TestBroker, topics: Option<Vec<MetadataRequestTopic>>) -> MetadataResponse {
    let mut request = MetadataRequest::default();
    request.topics = topics;
    request.allow_auto_topic_creation = false;
    WireClient::new(broker).call(ApiKey::Metadata, METADATA_VERSION, &request)
}

/// The node ids `broker` lists.
fn listed_brokers(broker: &TestBroker) -> BTreeSet<i32> {
    metadata(broker, Some(Vec::new()))
        .brokers
        .iter()
        .map(|node| node.node_id.0)
        .collect()
}

/// The partition as `broker` sees it; an error says why not (yet).
fn placed(broker: &TestBroker) -> Result<Placed, String> {
    let mut topic = MetadataRequestTopic::default();
    topic.name = Some(TopicName(text(TOPIC)));
    let response = metadata(broker, Some(vec![topic]));
    let topic = response
        .topics
        .first()
        .ok_or_else(|| "no topic in Metadata".to_string())?;
    if topic.error_code != NONE {
        return Err(format!("topic error {}", topic.error_code));
    }
    let partition = topic
        .partitions
        .iter()
        .find(|partition| partition.partition_index == PARTITION)
        .ok_or_else(|| format!("no partition {PARTITION}: {topic:?}"))?;
    let mut isr: Vec<i32> = partition.isr_nodes.iter().map(|id| id.0).collect();
    isr.sort_unstable();
    Ok(Placed {
        topic_id: topic.topic_id,
        leader: partition.leader_id.0,
        epoch: partition.leader_epoch,
        replicas: partition.replica_nodes.iter().map(|id| id.0).collect(),
        isr,
    })
}

/// Waits until every broker in `brokers` shows the same placement and it
/// satisfies `condition`; returns it.
fn agreed(brokers: &[&TestBroker], what: &str, condition: impl Fn(&Placed) -> bool) -> Placed {
    wait_for(what, METADATA_TIMEOUT, METADATA_POLL_INTERVAL, || {
        let views: Vec<Placed> = brokers
            .iter()
            .map(|broker| placed(broker))
            .collect::<Result<_, _>>()?;
        let first = &views[0];
        if views.iter().all(|view| view == first) && condition(first) {
            Ok(first.clone())
        } else {
            Err(format!("{views:?}"))
        }
    })
}

/// The broker with node id `node` (node ids are 1..=NODES, by index).
fn node(brokers: &[TestBroker], node: i32) -> &TestBroker {
    &brokers[node as usize - 1]
}

/// One follower fetch of the test partition: `replica` asks at
/// `current_leader_epoch` from `fetch_offset`. Returns the partition's
/// answer, after checking the response is about that partition only.
fn replica_fetch(
    leader: &TestBroker,
    version: i16,
    topic_id: Uuid,
    replica: i32,
    current_leader_epoch: i32,
    fetch_offset: i64,
) -> PartitionData {
    let mut partition = FetchPartition::default();
    partition.partition = PARTITION;
    partition.current_leader_epoch = current_leader_epoch;
    partition.fetch_offset = fetch_offset;
    partition.last_fetched_epoch = NO_LAST_FETCHED_EPOCH;
    partition.log_start_offset = FOLLOWER_LOG_START;
    partition.partition_max_bytes = PARTITION_FETCH_BYTES_MAX;
    let mut topic = FetchTopic::default();
    if version >= REPLICA_STATE_VERSION {
        topic.topic_id = topic_id;
    } else {
        topic.topic = TopicName(text(TOPIC));
    }
    topic.partitions = vec![partition];
    let mut request = FetchRequest::default();
    if version >= REPLICA_STATE_VERSION {
        let mut state = ReplicaState::default();
        state.replica_id = BrokerId(replica);
        state.replica_epoch = NO_REPLICA_EPOCH;
        request.replica_state = state;
    } else {
        request.replica_id = BrokerId(replica);
    }
    // Answered at once: every check is about what is there now.
    request.max_wait_ms = 0;
    request.min_bytes = 0;
    request.max_bytes = PARTITION_FETCH_BYTES_MAX;
    request.isolation_level = READ_UNCOMMITTED;
    request.session_id = SESSIONLESS_ID;
    request.session_epoch = SESSIONLESS_EPOCH;
    request.topics = vec![topic];
    let response: FetchResponse = WireClient::new(leader).call(ApiKey::Fetch, version, &request);
    assert_eq!(response.error_code, NONE, "v{version}: top-level error");
    assert_eq!(response.responses.len(), 1, "v{version}: {response:?}");
    let answered = &response.responses[0];
    if version >= REPLICA_STATE_VERSION {
        assert_eq!(answered.topic_id, topic_id, "v{version}: topic id");
    } else {
        assert_eq!(answered.topic.0.as_str(), TOPIC, "v{version}: topic name");
    }
    assert_eq!(answered.partitions.len(), 1, "v{version}: {answered:?}");
    let partition = answered.partitions[0].clone();
    assert_eq!(partition.partition_index, PARTITION, "v{version}");
    partition
}

/// The offsets of the records in a fetch answer, in order.
fn record_offsets(records: Option<&Bytes>) -> Vec<i64> {
    let mut bytes = records.cloned().unwrap_or_default();
    RecordBatchDecoder::decode_all(&mut bytes)
        .expect("decoding the record batches the leader sent")
        .iter()
        .flat_map(|set| set.records.iter().map(|record| record.offset))
        .collect()
}

/// The cluster once the partition has moved to its second replica and the
/// first one follows it again.
struct Settled {
    brokers: Vec<TestBroker>,
    /// The broker that holds no replica (the active controller).
    outsider: i32,
    /// The replica that leads now, and the one that follows it.
    leader: i32,
    follower: i32,
    placed: Placed,
}

impl Settled {
    fn start() -> Settled {
        let mut brokers = start_cluster_with(NODES, CLUSTER_ARGS);
        let everyone: BTreeSet<i32> = (1..=NODES as i32).collect();
        for broker in &brokers {
            wait_for(
                "every broker to list all three",
                METADATA_TIMEOUT,
                METADATA_POLL_INTERVAL,
                || {
                    let listed = listed_brokers(broker);
                    if listed == everyone {
                        Ok(())
                    } else {
                        Err(format!("{listed:?}"))
                    }
                },
            );
        }

        // The active controller holds no replica: stopping the preferred
        // leader then moves leadership without a controller election on the
        // way.
        let outsider = wait_for(
            "an active controller",
            METADATA_TIMEOUT,
            METADATA_POLL_INTERVAL,
            || {
                let leader = quorum_leader(&brokers[0]);
                if everyone.contains(&leader) {
                    Ok(leader)
                } else {
                    Err(format!("quorum leader {leader}"))
                }
            },
        );
        let mut holders = everyone.iter().copied().filter(|id| *id != outsider);
        let (first, second) = match (holders.next(), holders.next()) {
            (Some(first), Some(second)) => (first, second),
            _ => panic!("three brokers, one controller"),
        };
        let assignment: &[&[i32]] = &[&[first, second]];
        let admin = node(&brokers, outsider).admin();
        let topic = NewTopic::new(TOPIC, 1, TopicReplication::Variable(assignment));
        let created =
            futures_lite::future::block_on(admin.create_topics(&[topic], &admin_options()))
                .expect("CreateTopics answered");
        assert!(created[0].is_ok(), "creating {TOPIC}: {created:?}");
        let all: Vec<&TestBroker> = brokers.iter().collect();
        let initial = agreed(&all, "the topic placed and fully in sync", |view| {
            view.leader == first && view.replicas == [first, second] && view.isr == [first, second]
        });
        let records: Vec<Record> = (0..RECORDS)
            .map(|index| Record::with_value(PARTITION, indexed_value(index, VALUE_BYTES)))
            .collect();
        let written = produce_all(
            node(&brokers, outsider),
            TOPIC,
            &[("acks", "all")],
            &records,
        );
        let offsets: Vec<i64> = written.iter().map(|(_, offset)| *offset).collect();
        assert_eq!(offsets, (0..LOG_END).collect::<Vec<_>>(), "acknowledged");

        // SIGTERM hands leadership to the other in-sync replica at a new
        // epoch; started again, the old leader follows it.
        assert!(
            brokers[first as usize - 1].stop(Stop::Term),
            "broker {first} did not stop cleanly on SIGTERM"
        );
        let running: Vec<&TestBroker> = brokers
            .iter()
            .enumerate()
            .filter(|(index, _)| *index as i32 + 1 != first)
            .map(|(_, broker)| broker)
            .collect();
        agreed(
            &running,
            "leadership moved off the stopped broker",
            |view| view.leader == second && view.epoch > initial.epoch,
        );
        brokers[first as usize - 1].start_again();
        let all: Vec<&TestBroker> = brokers.iter().collect();
        let placed = agreed(&all, "the restarted broker back in the ISR", |view| {
            view.leader == second && view.epoch > initial.epoch && view.isr == [first, second]
        });
        eprintln!(
            "replicas {:?}, leader {second} at epoch {} (was {first} at {}), broker {outsider} holds no replica",
            placed.replicas, placed.epoch, initial.epoch
        );
        Settled {
            brokers,
            outsider,
            leader: second,
            follower: first,
            placed,
        }
    }

    /// A follower fetch by `replica` sent to the leader.
    fn fetch(
        &self,
        version: i16,
        replica: i32,
        current_leader_epoch: i32,
        fetch_offset: i64,
    ) -> PartitionData {
        replica_fetch(
            node(&self.brokers, self.leader),
            version,
            self.placed.topic_id,
            replica,
            current_leader_epoch,
            fetch_offset,
        )
    }

    /// Checks that nothing moved while the fetches were sent: every answer
    /// was given by the leader, at the epoch and with the replicas the
    /// checks assumed. (The ISR is left out: it says nothing about them.)
    fn assert_unmoved(&self) {
        let all: Vec<&TestBroker> = self.brokers.iter().collect();
        let after = agreed(&all, "the same placement after the fetches", |_| true);
        let held = |placed: &Placed| {
            (
                placed.topic_id,
                placed.leader,
                placed.epoch,
                placed.replicas.clone(),
            )
        };
        assert_eq!(
            held(&after),
            held(&self.placed),
            "the placement changed during the checks: {after:?}"
        );
    }
}

#[test]
fn a_leader_refuses_follower_fetches_it_cannot_serve() {
    let cluster = Settled::start();
    let (follower, outsider) = (cluster.follower, cluster.outsider);
    let epoch = cluster.placed.epoch;
    // (what, version, expected code, code seen)
    let mut answers: Vec<(&str, i16, i16, i16)> = Vec::new();
    for version in REPLICA_FETCH_VERSIONS {
        // The control: the follower at offset 0 gets every record, read up
        // to the log end (not the high watermark: both are LOG_END here).
        let control = cluster.fetch(version, follower, epoch, 0);
        answers.push(("follower, offset 0", version, NONE, control.error_code));
        assert_eq!(control.error_code, NONE, "v{version}: control fetch");
        assert_eq!(control.high_watermark, LOG_END, "v{version}: control");
        assert_eq!(control.log_start_offset, 0, "v{version}: control");
        assert_eq!(
            record_offsets(control.records.as_ref()),
            (0..LOG_END).collect::<Vec<_>>(),
            "v{version}: the records of the control fetch"
        );
        // At the log end exactly: in range, nothing to send.
        let at_end = cluster.fetch(version, follower, epoch, LOG_END);
        answers.push(("follower, at the log end", version, NONE, at_end.error_code));
        assert!(
            record_offsets(at_end.records.as_ref()).is_empty(),
            "v{version}: records past the log end"
        );

        // A broker that holds no replica, with no epoch to check. Kafka
        // (Partition.followerReplicaOrThrow) answers NOT_LEADER_OR_FOLLOWER
        // when the request has no current leader epoch.
        let stranger = cluster.fetch(version, outsider, NO_EPOCH, 0);
        answers.push((
            "no replica, no epoch",
            version,
            NOT_LEADER_OR_FOLLOWER,
            stranger.error_code,
        ));
        // Not asserted: with the current epoch, Kafka answers
        // UNKNOWN_LEADER_EPOCH to a replica it does not recognise (so that a
        // replica added by a reassignment retries); Sluice refuses any
        // unknown replica with NOT_LEADER_OR_FOLLOWER
        // (net/src/broker/replication.rs, record_follower_fetch).
        let with_epoch = cluster.fetch(version, outsider, epoch, 0);
        eprintln!(
            "v{version}: no replica, current epoch {epoch}: error {} (not asserted; Kafka: {UNKNOWN_LEADER_EPOCH})",
            with_epoch.error_code
        );

        // The epoch before the handover, all else as in the control.
        let stale = cluster.fetch(version, follower, epoch - 1, 0);
        answers.push(("epoch - 1", version, FENCED_LEADER_EPOCH, stale.error_code));

        // Past the leader's log end, at the current epoch.
        let beyond = cluster.fetch(version, follower, epoch, LOG_END + PAST_LOG_END);
        answers.push((
            "offset past the log end",
            version,
            OFFSET_OUT_OF_RANGE,
            beyond.error_code,
        ));
        assert!(
            beyond.records.as_ref().is_none_or(Bytes::is_empty),
            "v{version}: records with OFFSET_OUT_OF_RANGE"
        );
    }
    for (what, version, want, seen) in &answers {
        eprintln!("v{version} {what}: expected {want}, seen {seen}");
    }
    let seen: Vec<(&str, i16, i16)> = answers
        .iter()
        .map(|(what, version, _, seen)| (*what, *version, *seen))
        .collect();
    let expected: Vec<(&str, i16, i16)> = answers
        .iter()
        .map(|(what, version, want, _)| (*what, *version, *want))
        .collect();
    assert_eq!(seen, expected, "error codes of the replica fetches");
    cluster.assert_unmoved();
}

/// A follower fetch at an epoch newer than the leader's must be answered
/// UNKNOWN_LEADER_EPOCH, Kafka's code 75 (retriable), not 76, which
/// Kafka clients read as UNSUPPORTED_COMPRESSION_TYPE, a fatal error.
#[test]
fn a_leader_does_not_know_a_newer_epoch() {
    let cluster = Settled::start();
    let epoch = cluster.placed.epoch;
    let seen: Vec<(i16, i16)> = REPLICA_FETCH_VERSIONS
        .iter()
        .map(|version| {
            let newer = cluster.fetch(*version, cluster.follower, epoch + 1, 0);
            (*version, newer.error_code)
        })
        .collect();
    eprintln!("epoch + 1: (version, code) {seen:?}");
    let expected: Vec<(i16, i16)> = REPLICA_FETCH_VERSIONS
        .iter()
        .map(|version| (*version, UNKNOWN_LEADER_EPOCH))
        .collect();
    assert_eq!(seen, expected, "a fetch at epoch {}", epoch + 1);
    cluster.assert_unmoved();
}
