//! KIP-848 consumer groups: librdkafka with `group.protocol=consumer`
//! against the real broker (members come and go, a member vanishes, the
//! broker is killed), and ConsumerGroupHeartbeat / ConsumerGroupDescribe on
//! the raw wire for the error paths and what a client cannot show.

mod common;
mod groups_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{produce_all, text, Record, Stop, TestBroker, WireClient};
use groups_support::{
    consumer_protocol_config, is_exact_split, member_config, wait_for, ChildConsumer, Member,
};
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as Owned;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use uuid::Uuid;

/// Broker-side consumer-group timers: short, so eviction is quick, and
/// long enough for a loaded 2-core machine.
const SESSION_TIMEOUT_MS: u64 = 3000;
const HEARTBEAT_INTERVAL_MS: u64 = 300;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

const NONE: i16 = 0;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const NOT_COORDINATOR: i16 = 16;
const INVALID_REQUEST: i16 = 42;
const GROUP_ID_NOT_FOUND: i16 = 69;
const MEMBER_ID_REQUIRED: i16 = 79;
const FENCED_MEMBER_EPOCH: i16 = 110;
const UNSUPPORTED_ASSIGNOR: i16 = 112;
const STALE_MEMBER_EPOCH: i16 = 113;

fn consumer_broker() -> TestBroker {
    TestBroker::start_with(&[
        "--group-initial-rebalance-delay-ms",
        "0",
        "--group-min-session-timeout-ms",
        "1000",
        "--group-consumer-session-timeout-ms",
        &SESSION_TIMEOUT_MS.to_string(),
        "--group-consumer-heartbeat-interval-ms",
        &HEARTBEAT_INTERVAL_MS.to_string(),
    ])
}

impl WireClient {
    /// FindCoordinator (creating `__consumer_offsets`), then waits until the
    /// group's offsets partition is loaded.
    fn coordinator(&mut self, group: &str) {
        let mut request = FindCoordinatorRequest::default();
        request.key = text(group);
        let response: FindCoordinatorResponse = self.call(ApiKey::FindCoordinator, 3, &request);
        assert_eq!(response.error_code, NONE, "FindCoordinator");
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let described = self.describe(group, 0);
            if ![COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR].contains(&described.error_code) {
                return;
            }
            assert!(Instant::now() < deadline, "the coordinator never loaded");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn heartbeat(
        &mut self,
        version: i16,
        request: &ConsumerGroupHeartbeatRequest,
    ) -> ConsumerGroupHeartbeatResponse {
        self.call(ApiKey::ConsumerGroupHeartbeat, version, request)
    }

    fn describe(
        &mut self,
        group: &str,
        version: i16,
    ) -> consumer_group_describe_response::DescribedGroup {
        let mut request = ConsumerGroupDescribeRequest::default();
        request.group_ids = vec![GroupId(text(group))];
        let mut response: ConsumerGroupDescribeResponse =
            self.call(ApiKey::ConsumerGroupDescribe, version, &request);
        assert_eq!(response.groups.len(), 1);
        response.groups.remove(0)
    }
}

fn join(group: &str, member: &str, topics: &[&str]) -> ConsumerGroupHeartbeatRequest {
    let mut request = ConsumerGroupHeartbeatRequest::default();
    request.group_id = GroupId(text(group));
    request.member_id = text(member);
    request.member_epoch = 0;
    request.rebalance_timeout_ms = 10_000;
    request.subscribed_topic_names = Some(topics.iter().map(|t| TopicName(text(t))).collect());
    request.topic_partitions = Some(Vec::new());
    request
}

fn beat(
    group: &str,
    member: &str,
    epoch: i32,
    owned: Option<&BTreeMap<Uuid, BTreeSet<i32>>>,
) -> ConsumerGroupHeartbeatRequest {
    let mut request = ConsumerGroupHeartbeatRequest::default();
    request.group_id = GroupId(text(group));
    request.member_id = text(member);
    request.member_epoch = epoch;
    request.rebalance_timeout_ms = -1;
    request.topic_partitions = owned.map(|owned| {
        owned
            .iter()
            .map(|(topic, partitions)| {
                let mut entry = Owned::default();
                entry.topic_id = *topic;
                entry.partitions = partitions.iter().copied().collect();
                entry
            })
            .collect()
    });
    request
}

fn assigned(response: &ConsumerGroupHeartbeatResponse) -> Option<BTreeMap<Uuid, BTreeSet<i32>>> {
    response.assignment.as_ref().map(|assignment| {
        assignment
            .topic_partitions
            .iter()
            .map(|topic| (topic.topic_id, topic.partitions.iter().copied().collect()))
            .collect()
    })
}

fn count(assignment: &BTreeMap<Uuid, BTreeSet<i32>>) -> usize {
    assignment.values().map(BTreeSet::len).sum()
}

#[test]
fn heartbeat_and_describe_on_the_wire() {
    let broker = consumer_broker();
    broker.create_topic("wire-cg", 6);
    let group = "wire-group";
    let mut wire = WireClient::new(&broker);
    wire.coordinator(group);

    // Unknown group.
    let unknown = wire.describe("nobody-here", 1);
    assert_eq!(unknown.error_code, GROUP_ID_NOT_FOUND);

    // Joins that Kafka rejects.
    let mut bad = join(group, "", &["wire-cg"]);
    bad.subscribed_topic_names = None;
    assert_eq!(wire.heartbeat(0, &bad).error_code, INVALID_REQUEST);
    let response = wire.heartbeat(1, &join(group, "", &["wire-cg"]));
    assert_eq!(response.error_code, INVALID_REQUEST, "v1 needs a member id");
    let mut bad = join(group, "", &["wire-cg"]);
    bad.server_assignor = Some(text("sticky-ish"));
    assert_eq!(wire.heartbeat(0, &bad).error_code, UNSUPPORTED_ASSIGNOR);
    let mut bad = join(group, "", &["wire-cg"]);
    bad.rebalance_timeout_ms = -1;
    assert_eq!(wire.heartbeat(0, &bad).error_code, INVALID_REQUEST);
    // A heartbeat (not a join) to a group that does not exist.
    assert_eq!(
        wire.heartbeat(0, &beat(group, "ghost", 3, None)).error_code,
        GROUP_ID_NOT_FOUND
    );

    // The first member (v0: the broker names it) gets all six partitions.
    let first = wire.heartbeat(0, &join(group, "", &["wire-cg"]));
    assert_eq!(first.error_code, NONE, "{:?}", first.error_message);
    let first_id = first.member_id.clone().expect("a member id").to_string();
    assert!(!first_id.is_empty());
    assert_eq!(first.member_epoch, 1);
    assert_eq!(first.heartbeat_interval_ms, HEARTBEAT_INTERVAL_MS as i32);
    let first_owned = assigned(&first).expect("an assignment");
    assert_eq!(count(&first_owned), 6);

    // The second (v1: its own id) is at epoch 2 at once but gets nothing
    // the first still owns.
    let second_id = "second-member-0000000000";
    let second = wire.heartbeat(1, &join(group, second_id, &["wire-cg"]));
    assert_eq!(second.error_code, NONE, "{:?}", second.error_message);
    assert_eq!(second.member_id.as_deref(), Some(second_id));
    assert_eq!(second.member_epoch, 2);
    assert_eq!(assigned(&second).map(|owned| count(&owned)), Some(0));

    // The first is asked to give up three; it stays at epoch 1 until it
    // reports them gone.
    let revoke = wire.heartbeat(0, &beat(group, &first_id, 1, Some(&first_owned)));
    assert_eq!(revoke.error_code, NONE);
    assert_eq!(revoke.member_epoch, 1);
    let kept = assigned(&revoke).expect("the reduced assignment");
    assert_eq!(count(&kept), 3);
    let described = wire.describe(group, 1);
    assert_eq!(described.group_state.as_str(), "Reconciling");
    let still = wire.heartbeat(1, &beat(group, second_id, 2, Some(&BTreeMap::new())));
    assert_eq!(assigned(&still).map(|owned| count(&owned)), None);

    // An unknown member of an existing group.
    assert_eq!(
        wire.heartbeat(0, &beat(group, "ghost", 3, None)).error_code,
        UNKNOWN_MEMBER_ID
    );

    // A wrong epoch is fenced.
    assert_eq!(
        wire.heartbeat(0, &beat(group, &first_id, 7, None))
            .error_code,
        FENCED_MEMBER_EPOCH
    );

    let released = wire.heartbeat(0, &beat(group, &first_id, 1, Some(&kept)));
    assert_eq!(released.error_code, NONE);
    assert_eq!(released.member_epoch, 2);
    let second = wire.heartbeat(1, &beat(group, second_id, 2, Some(&BTreeMap::new())));
    let second_owned = assigned(&second).expect("the released partitions");
    assert_eq!(count(&second_owned), 3);
    for (topic, partitions) in &second_owned {
        let mine = kept.get(topic).cloned().unwrap_or_default();
        assert!(mine.is_disjoint(partitions), "a partition with two owners");
    }

    // ConsumerGroupDescribe at both versions.
    for version in 0..=1 {
        let described = wire.describe(group, version);
        assert_eq!(described.error_code, NONE);
        assert_eq!(described.group_state.as_str(), "Stable");
        assert_eq!((described.group_epoch, described.assignment_epoch), (2, 2));
        assert_eq!(described.assignor_name.as_str(), "uniform");
        assert_eq!(described.members.len(), 2);
        let mut all = BTreeSet::new();
        for member in &described.members {
            assert_eq!(member.member_epoch, 2);
            assert_eq!(member.client_id.as_str(), "sluice-raw-test");
            assert_eq!(member.subscribed_topic_names.len(), 1);
            let topic = &member.assignment.topic_partitions[0];
            assert_eq!(topic.topic_name.as_str(), "wire-cg");
            assert_eq!(topic.partitions.len(), 3);
            all.extend(topic.partitions.iter().copied());
            assert_eq!(
                member.target_assignment.topic_partitions[0]
                    .partitions
                    .len(),
                3
            );
            if version >= 1 {
                assert_eq!(member.member_type, 1);
            }
        }
        assert_eq!(all, (0..6).collect());
    }

    // Offset commits carry the member epoch.
    let commit = |wire: &mut WireClient, member: &str, epoch: i32| -> i16 {
        let mut request = OffsetCommitRequest::default();
        request.group_id = GroupId(text(group));
        request.generation_id_or_member_epoch = epoch;
        request.member_id = text(member);
        let mut topic = OffsetCommitRequestTopic::default();
        topic.name = TopicName(text("wire-cg"));
        let mut partition = OffsetCommitRequestPartition::default();
        partition.partition_index = *kept.values().next().and_then(|p| p.first()).unwrap_or(&0);
        partition.committed_offset = 5;
        topic.partitions = vec![partition];
        request.topics = vec![topic];
        let response: OffsetCommitResponse = wire.call(ApiKey::OffsetCommit, 9, &request);
        response.topics[0].partitions[0].error_code
    };
    assert_eq!(commit(&mut wire, &first_id, 1), STALE_MEMBER_EPOCH);
    assert_eq!(commit(&mut wire, "stranger", 2), UNKNOWN_MEMBER_ID);
    assert_eq!(commit(&mut wire, &first_id, 2), NONE);
    let fetch = |wire: &mut WireClient, member: Option<&str>, epoch: i32| -> OffsetFetchResponse {
        let mut request = OffsetFetchRequest::default();
        let mut wanted = offset_fetch_request::OffsetFetchRequestGroup::default();
        wanted.group_id = GroupId(text(group));
        wanted.member_id = member.map(text);
        wanted.member_epoch = epoch;
        wanted.topics = None;
        request.groups = vec![wanted];
        wire.call(ApiKey::OffsetFetch, 9, &request)
    };
    assert_eq!(
        fetch(&mut wire, Some(&first_id), 1).groups[0].error_code,
        STALE_MEMBER_EPOCH
    );
    assert_eq!(
        fetch(&mut wire, Some("stranger"), 2).groups[0].error_code,
        UNKNOWN_MEMBER_ID
    );
    let fetched = fetch(&mut wire, Some(&first_id), 2);
    assert_eq!(fetched.groups[0].error_code, NONE);
    assert_eq!(
        fetched.groups[0].topics[0].partitions[0].committed_offset,
        5
    );
    assert_eq!(
        fetch(&mut wire, None, -1).groups[0].error_code,
        NONE,
        "an admin read"
    );

    // ListGroups v5 types the group "consumer"; DescribeGroups shows it.
    let mut list = ListGroupsRequest::default();
    list.types_filter = vec![text("consumer")];
    let listed: ListGroupsResponse = wire.call(ApiKey::ListGroups, 5, &list);
    let found = listed
        .groups
        .iter()
        .find(|listed| listed.group_id.as_str() == group)
        .expect("listed as a consumer group");
    assert_eq!(found.group_type.as_str(), "consumer");
    assert_eq!(found.protocol_type.as_str(), "consumer");
    list.types_filter = vec![text("classic")];
    let listed: ListGroupsResponse = wire.call(ApiKey::ListGroups, 5, &list);
    assert!(listed
        .groups
        .iter()
        .all(|listed| listed.group_id.as_str() != group));
    let mut describe = DescribeGroupsRequest::default();
    describe.groups = vec![GroupId(text(group))];
    let described: DescribeGroupsResponse = wire.call(ApiKey::DescribeGroups, 5, &describe);
    assert_eq!(described.groups[0].protocol_type.as_str(), "consumer");
    assert_eq!(described.groups[0].members.len(), 2);

    // A non-empty group cannot be deleted; after both leave it can.
    let mut delete = DeleteGroupsRequest::default();
    delete.groups_names = vec![GroupId(text(group))];
    let deleted: DeleteGroupsResponse = wire.call(ApiKey::DeleteGroups, 2, &delete);
    assert_eq!(deleted.results[0].error_code, 68, "NON_EMPTY_GROUP");
    let left = wire.heartbeat(0, &beat(group, &first_id, -1, None));
    assert_eq!((left.error_code, left.member_epoch), (NONE, -1));
    // The survivor gets everything at the next epoch.
    let all = wire.heartbeat(1, &beat(group, second_id, 2, Some(&second_owned)));
    assert_eq!(all.member_epoch, 3);
    assert_eq!(assigned(&all).map(|owned| count(&owned)), Some(6));
    let left = wire.heartbeat(1, &beat(group, second_id, -1, None));
    assert_eq!(left.error_code, NONE);
    assert_eq!(wire.describe(group, 1).group_state.as_str(), "Empty");
    let deleted: DeleteGroupsResponse = wire.call(ApiKey::DeleteGroups, 2, &delete);
    assert_eq!(deleted.results[0].error_code, NONE);
    assert_eq!(wire.describe(group, 1).error_code, GROUP_ID_NOT_FOUND);

    // The range assignor, when members ask for it.
    let mut ranged = join("ranged", "", &["wire-cg"]);
    ranged.server_assignor = Some(text("range"));
    let response = wire.heartbeat(0, &ranged);
    assert_eq!(response.error_code, NONE);
    assert_eq!(wire.describe("ranged", 0).assignor_name.as_str(), "range");
}

#[test]
fn a_member_that_does_not_revoke_within_its_rebalance_timeout_is_removed() {
    let broker = consumer_broker();
    broker.create_topic("slow-revoke", 4);
    let group = "slow-revoke-group";
    let mut wire = WireClient::new(&broker);
    wire.coordinator(group);
    let mut slow = join(group, "", &["slow-revoke"]);
    slow.rebalance_timeout_ms = 1000;
    let first = wire.heartbeat(0, &slow);
    assert_eq!(first.error_code, NONE);
    let slow_id = first.member_id.clone().expect("member id").to_string();
    let held = assigned(&first).expect("assignment");
    assert_eq!(count(&held), 4);
    let other = wire.heartbeat(1, &join(group, "patient-member-000000", &["slow-revoke"]));
    assert_eq!(other.error_code, NONE);
    // Asked to revoke two, the slow member keeps reporting all four.
    let asked = wire.heartbeat(0, &beat(group, &slow_id, 1, Some(&held)));
    assert_eq!(count(&assigned(&asked).expect("reduced")), 2);
    let started = Instant::now();
    let mut removed = false;
    while started.elapsed() < Duration::from_millis(SESSION_TIMEOUT_MS - 500) {
        std::thread::sleep(Duration::from_millis(100));
        let response = wire.heartbeat(0, &beat(group, &slow_id, 1, Some(&held)));
        if response.error_code == UNKNOWN_MEMBER_ID {
            removed = true;
            break;
        }
        assert_eq!(response.error_code, NONE);
    }
    // Removed after its 1 s rebalance timeout, although it kept
    // heartbeating (so not by the 3 s session timeout).
    assert!(removed, "still a member after {:?}", started.elapsed());
    assert!(started.elapsed() >= Duration::from_millis(800));
    let patient = wire.heartbeat(
        1,
        &beat(group, "patient-member-000000", 2, Some(&BTreeMap::new())),
    );
    assert_eq!(patient.error_code, NONE);
    assert_eq!(assigned(&patient).map(|owned| count(&owned)), Some(4));
    assert_eq!(patient.member_epoch, 3);
}

#[test]
fn a_static_member_keeps_its_partitions_across_a_temporary_leave() {
    const UNRELEASED_INSTANCE_ID: i16 = 111;
    let broker = consumer_broker();
    broker.create_topic("static", 4);
    let group = "static-group";
    let mut wire = WireClient::new(&broker);
    wire.coordinator(group);
    let with_instance = |member: &str| {
        let mut request = join(group, member, &["static"]);
        request.instance_id = Some(text("instance-1"));
        request
    };
    let first = wire.heartbeat(1, &with_instance("incarnation-1-0000000"));
    assert_eq!(first.error_code, NONE);
    let held = assigned(&first).expect("assignment");
    assert_eq!(count(&held), 4);
    // Another member id with the same instance id while it is there.
    let clash = wire.heartbeat(1, &with_instance("incarnation-2-0000000"));
    assert_eq!(clash.error_code, UNRELEASED_INSTANCE_ID);
    // Temporary leave (epoch -2): the partitions stay reserved for it.
    let mut leave = beat(group, "incarnation-1-0000000", -2, None);
    leave.instance_id = Some(text("instance-1"));
    let left = wire.heartbeat(1, &leave);
    assert_eq!((left.error_code, left.member_epoch), (NONE, -2));
    // The next incarnation takes over its assignment, with no rebalance.
    let next = wire.heartbeat(1, &with_instance("incarnation-2-0000000"));
    assert_eq!(next.error_code, NONE, "{:?}", next.error_message);
    assert_eq!(assigned(&next), Some(held));
    assert_eq!(next.member_epoch, first.member_epoch);
    let described = wire.describe(group, 1);
    assert_eq!(described.group_epoch, 1, "no rebalance");
    assert_eq!(described.members.len(), 1);
    assert_eq!(
        described.members[0].member_id.as_str(),
        "incarnation-2-0000000"
    );
    assert_eq!(
        described.members[0].instance_id.as_deref(),
        Some("instance-1")
    );
}

#[test]
fn a_full_group_turns_new_members_away() {
    const GROUP_MAX_SIZE_REACHED: i16 = 81;
    let broker = TestBroker::start_with(&["--group-consumer-max-size", "2"]);
    broker.create_topic("full", 3);
    let group = "full-group";
    let mut wire = WireClient::new(&broker);
    wire.coordinator(group);
    for member in ["member-a-000000000000", "member-b-000000000000"] {
        let joined = wire.heartbeat(1, &join(group, member, &["full"]));
        assert_eq!(joined.error_code, NONE);
    }
    let third = wire.heartbeat(1, &join(group, "member-c-000000000000", &["full"]));
    assert_eq!(third.error_code, GROUP_MAX_SIZE_REACHED);
    // Rejoining (epoch 0) as an existing member is not a new member.
    let again = wire.heartbeat(1, &join(group, "member-a-000000000000", &["full"]));
    assert_eq!(again.error_code, NONE);
    assert_eq!(wire.describe(group, 1).members.len(), 2);
}

#[test]
fn regex_subscriptions_follow_the_topics() {
    const INVALID_REGULAR_EXPRESSION: i16 = 128;
    let broker = consumer_broker();
    broker.create_topic("reg-a", 2);
    broker.create_topic("reg-b", 2);
    broker.create_topic("other", 2);
    let group = "regex-group";
    let mut wire = WireClient::new(&broker);
    wire.coordinator(group);
    let mut bad = join(group, "regex-member-00000000", &[]);
    bad.subscribed_topic_names = None;
    bad.subscribed_topic_regex = Some(text("reg-("));
    assert_eq!(
        wire.heartbeat(1, &bad).error_code,
        INVALID_REGULAR_EXPRESSION
    );
    let mut request = join(group, "regex-member-00000000", &[]);
    request.subscribed_topic_names = None;
    request.subscribed_topic_regex = Some(text("reg-.*"));
    let joined = wire.heartbeat(1, &request);
    assert_eq!(joined.error_code, NONE, "{:?}", joined.error_message);
    let owned = assigned(&joined).expect("assignment");
    assert_eq!(count(&owned), 4, "reg-a and reg-b, not other");
    // A new matching topic joins the subscription on the next heartbeat.
    broker.create_topic("reg-c", 3);
    let next = wire.heartbeat(1, &beat(group, "regex-member-00000000", 1, Some(&owned)));
    assert_eq!(next.error_code, NONE);
    assert_eq!(next.member_epoch, 2);
    assert_eq!(assigned(&next).map(|owned| count(&owned)), Some(7));
    let described = wire.describe(group, 1);
    assert_eq!(
        described.members[0].subscribed_topic_regex.as_deref(),
        Some("reg-.*")
    );
}

fn classic_join(wire: &mut WireClient, group: &str, member: &str) -> JoinGroupResponse {
    let mut request = JoinGroupRequest::default();
    request.group_id = GroupId(text(group));
    request.session_timeout_ms = 10_000;
    request.rebalance_timeout_ms = 10_000;
    request.member_id = text(member);
    request.protocol_type = text("consumer");
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = text("range");
    protocol.metadata =
        bytes::Bytes::from_static(b"\x00\x00\x00\x00\x00\x01\x00\x04wire\xff\xff\xff\xff");
    request.protocols = vec![protocol];
    wire.call(ApiKey::JoinGroup, 5, &request)
}

#[test]
fn classic_and_consumer_protocols_do_not_mix_in_a_group() {
    let broker = consumer_broker();
    broker.create_topic("mixed", 2);
    let group = "mixed-group";
    let mut wire = WireClient::new(&broker);
    wire.coordinator(group);

    // A classic member joins.
    let required = classic_join(&mut wire, group, "");
    assert_eq!(required.error_code, MEMBER_ID_REQUIRED);
    let classic_id = required.member_id.to_string();
    let joined = classic_join(&mut wire, group, &classic_id);
    assert_eq!(joined.error_code, NONE);

    // A consumer-protocol member is turned away while it is there.
    let refused = wire.heartbeat(0, &join(group, "", &["mixed"]));
    assert_eq!(refused.error_code, INCONSISTENT_GROUP_PROTOCOL);

    // Once the classic group is empty, it converts.
    let mut leave = LeaveGroupRequest::default();
    leave.group_id = GroupId(text(group));
    let mut identity = MemberIdentity::default();
    identity.member_id = text(&classic_id);
    leave.members = vec![identity];
    let left: LeaveGroupResponse = wire.call(ApiKey::LeaveGroup, 3, &leave);
    assert_eq!(left.error_code, NONE);
    let converted = wire.heartbeat(0, &join(group, "", &["mixed"]));
    assert_eq!(converted.error_code, NONE, "{:?}", converted.error_message);
    let member = converted.member_id.clone().expect("member id").to_string();
    assert_eq!(wire.describe(group, 0).members.len(), 1);

    // Now the classic protocol is turned away, until the group is empty.
    assert_eq!(
        classic_join(&mut wire, group, "").error_code,
        INCONSISTENT_GROUP_PROTOCOL
    );
    let gone = wire.heartbeat(0, &beat(group, &member, -1, None));
    assert_eq!(gone.error_code, NONE);
    assert_eq!(
        classic_join(&mut wire, group, "").error_code,
        MEMBER_ID_REQUIRED
    );
    assert_eq!(wire.describe(group, 0).error_code, GROUP_ID_NOT_FOUND);
}

// ---- librdkafka with group.protocol=consumer --------------------------------

const TOPIC: &str = "kip848";
const PARTITIONS: i32 = 12;
const MESSAGES_PER_PHASE: usize = 1200;

fn messages(phase: usize, count: usize) -> Vec<Record> {
    (0..count)
        .map(|index| Record {
            partition: (index % PARTITIONS as usize) as i32,
            offset: -1,
            key: None,
            value: Some(format!("phase{phase}-{index}").into_bytes()),
            headers: Vec::new(),
            timestamp: None,
        })
        .collect()
}

fn describe(members: &[&Member]) -> String {
    members
        .iter()
        .enumerate()
        .map(|(index, member)| {
            format!(
                "member {index}: assignment {:?}, processed {}, commit errors {:?}, errors {:?}",
                member.state.assignment(),
                member.state.processed_count(),
                member.state.tracker.commit_errors.lock().expect("lock"),
                member.state.errors.lock().expect("lock"),
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn settle(members: &[&Member], each: usize, total: usize, gone: usize) {
    wait_for(
        "an exact split and every message processed",
        SETTLE_TIMEOUT,
        || {
            let assignments: Vec<Vec<i32>> = members
                .iter()
                .map(|member| member.state.assignment())
                .collect();
            let processed: usize = members
                .iter()
                .map(|member| member.state.processed_count())
                .sum();
            is_exact_split(&assignments, PARTITIONS, Some(each)) && gone + processed >= total
        },
        || describe(members),
    );
}

#[test]
fn one_then_four_then_two_consumers_split_and_process_every_message_once() {
    let broker = consumer_broker();
    broker.create_topic(TOPIC, PARTITIONS);
    let config =
        |name: &str| consumer_protocol_config(&broker, "kip848-billing", &[("client.id", name)]);

    let first = Member::start(config("m0"), &[TOPIC]);
    produce_all(&broker, TOPIC, &[], &messages(0, MESSAGES_PER_PHASE));
    settle(&[&first], 12, MESSAGES_PER_PHASE, 0);

    let others: Vec<Member> = (1..4)
        .map(|index| Member::start(config(&format!("m{index}")), &[TOPIC]))
        .collect();
    produce_all(&broker, TOPIC, &[], &messages(1, MESSAGES_PER_PHASE));
    let all: Vec<&Member> = std::iter::once(&first).chain(others.iter()).collect();
    settle(&all, 3, 2 * MESSAGES_PER_PHASE, 0);
    let mut wire = WireClient::new(&broker);
    let described = wire.describe("kip848-billing", 1);
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(described.members.len(), 4);

    let mut others = others.into_iter();
    let second = others.next().expect("member 1");
    let gone_states: Vec<_> = others.map(Member::stop).collect();
    let gone: usize = gone_states
        .iter()
        .map(|state| state.processed_count())
        .sum();
    produce_all(&broker, TOPIC, &[], &messages(2, MESSAGES_PER_PHASE));
    settle(&[&first, &second], 6, 3 * MESSAGES_PER_PHASE, gone);
    let described = wire.describe("kip848-billing", 1);
    assert_eq!(described.members.len(), 2);

    // Exactly once: every (partition, offset) processed by one member once.
    let survivors = [first.stop(), second.stop()];
    let mut seen: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for state in gone_states.iter().chain(survivors.iter()) {
        for (partition, offset, _) in state.processed.lock().expect("lock").iter() {
            *seen.entry((*partition, *offset)).or_default() += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "processed more than once: {twice:?}");
    assert_eq!(
        seen.len(),
        3 * MESSAGES_PER_PHASE,
        "every message processed"
    );
    let expected: BTreeSet<(i32, i64)> = (0..PARTITIONS)
        .flat_map(|partition| {
            (0..(3 * MESSAGES_PER_PHASE / PARTITIONS as usize) as i64)
                .map(move |offset| (partition, offset))
        })
        .collect();
    assert_eq!(seen.keys().copied().collect::<BTreeSet<_>>(), expected);
}

#[test]
fn child_consumer() {
    groups_support::run_child_if_asked();
}

#[test]
fn a_vanished_consumer_is_evicted_and_its_partitions_move() {
    let broker = consumer_broker();
    broker.create_topic(TOPIC, PARTITIONS);
    let group = "kip848-evict";
    let mut doomed = ChildConsumer::start_consumer_protocol(&broker, group, TOPIC);
    let survivor = ChildConsumer::start_consumer_protocol(&broker, group, TOPIC);
    wait_for(
        "two consumers with six partitions each",
        SETTLE_TIMEOUT,
        || {
            is_exact_split(
                &[doomed.assignment(), survivor.assignment()],
                PARTITIONS,
                Some(6),
            )
        },
        || format!("{:?} / {:?}", doomed.assignment(), survivor.assignment()),
    );
    // SIGKILL: no leave; the broker notices only by the silence.
    doomed.kill();
    let killed = Instant::now();
    wait_for(
        "the survivor to own every partition",
        SETTLE_TIMEOUT,
        || survivor.assignment().len() == PARTITIONS as usize,
        || format!("{:?}", survivor.assignment()),
    );
    let moved = killed.elapsed();
    assert!(
        moved >= Duration::from_millis(SESSION_TIMEOUT_MS / 2),
        "partitions moved after {moved:?}, before the session timeout"
    );
    let mut wire = WireClient::new(&broker);
    let described = wire.describe(group, 1);
    assert_eq!(described.members.len(), 1);
    let owned: usize = described.members[0]
        .assignment
        .topic_partitions
        .iter()
        .map(|topic| topic.partitions.len())
        .sum();
    assert_eq!(owned, PARTITIONS as usize);
}

fn committed(broker: &TestBroker, group: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = member_config(broker, group, &[])
        .create()
        .expect("consumer");
    let mut wanted = TopicPartitionList::new();
    for partition in 0..partitions {
        wanted.add_partition(TOPIC, partition);
    }
    let list = consumer
        .committed_offsets(wanted, Duration::from_secs(10))
        .unwrap_or_default();
    list.elements()
        .iter()
        .filter_map(|element| match element.offset() {
            Offset::Offset(offset) => Some((element.partition(), offset)),
            _ => None,
        })
        .collect()
}

#[test]
fn group_and_offsets_survive_a_broker_kill_and_consumers_resume() {
    const SMALL: i32 = 4;
    let mut broker = consumer_broker();
    broker.create_topic(TOPIC, SMALL);
    let group = "kip848-durable";
    let first_batch: Vec<Record> = (0..400)
        .map(|index| Record {
            partition: index % SMALL,
            offset: -1,
            key: None,
            value: Some(format!("before-{index}").into_bytes()),
            headers: Vec::new(),
            timestamp: None,
        })
        .collect();
    produce_all(&broker, TOPIC, &[], &first_batch);
    let mut child = ChildConsumer::start_consumer_protocol(&broker, group, TOPIC);
    let all_committed: BTreeMap<i32, i64> = (0..SMALL).map(|partition| (partition, 100)).collect();
    wait_for(
        "every message committed",
        SETTLE_TIMEOUT,
        || committed(&broker, group, SMALL) == all_committed,
        || format!("{:?}", committed(&broker, group, SMALL)),
    );
    let mut wire = WireClient::new(&broker);
    let before = wire.describe(group, 1);
    assert_eq!(before.members.len(), 1);

    // kill -9: the group (its member, epoch and assignment) and the offsets
    // come back from the log.
    broker.restart(Stop::Kill);
    child.kill();
    let mut wire = WireClient::new(&broker);
    wire.coordinator(group);
    let after = wire.describe(group, 1);
    assert_eq!(after.error_code, NONE);
    assert_eq!(after.group_epoch, before.group_epoch);
    assert_eq!(after.members.len(), 1);
    assert_eq!(after.members[0].member_id, before.members[0].member_id);
    assert_eq!(
        after.members[0].member_epoch,
        before.members[0].member_epoch
    );
    assert_eq!(
        after.members[0].assignment.topic_partitions,
        before.members[0].assignment.topic_partitions
    );
    assert_eq!(committed(&broker, group, SMALL), all_committed);

    // The restored member never comes back: it is evicted.
    wait_for(
        "the dead member's eviction",
        SETTLE_TIMEOUT,
        || wire.describe(group, 1).group_state.as_str() == "Empty",
        String::new,
    );

    // A new consumer resumes at the committed offsets: only new messages.
    let second_batch: Vec<Record> = (0..100)
        .map(|index| Record {
            partition: index % SMALL,
            offset: -1,
            key: None,
            value: Some(format!("after-{index}").into_bytes()),
            headers: Vec::new(),
            timestamp: None,
        })
        .collect();
    produce_all(&broker, TOPIC, &[], &second_batch);
    let member = Member::start(consumer_protocol_config(&broker, group, &[]), &[TOPIC]);
    wait_for(
        "the new messages",
        SETTLE_TIMEOUT,
        || member.state.processed_count() >= 100,
        || describe(&[&member]),
    );
    std::thread::sleep(Duration::from_millis(500));
    let state = member.stop();
    let processed = state.processed.lock().expect("lock");
    assert_eq!(processed.len(), 100, "nothing read twice");
    assert!(processed
        .iter()
        .all(|(_, _, value)| value.starts_with(b"after-")));
    let resumed: BTreeMap<i32, i64> = (0..SMALL).map(|partition| (partition, 125)).collect();
    assert_eq!(committed(&broker, group, SMALL), resumed);
}
