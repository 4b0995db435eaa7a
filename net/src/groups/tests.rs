//! The coordinator in-process: a one-shard broker on a temporary data
//! directory, driven with decoded requests through [`super::serve`]. These
//! check the protocol's error codes and the state machine exactly, and what
//! replay rebuilds; the real-client scenarios are in `bin/tests/groups_*`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest,
    SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::shard::mesh_plan;
use sluice_engine::{DmaStorage, Mesh};

use super::*;
use crate::broker::{ControllerRequest, NewTopic, ShardRequest, ShardResponse};
use crate::config::{BrokerConfig, GroupConfig};
use crate::constants::OFFSET_METADATA_BYTES_MAX;

const TOPIC: &str = "events";
const TOPIC_PARTITIONS: i32 = 4;
const SESSION_MS: i32 = 10_000;

fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "sluice-groups-{name}-{}-{nanos}",
        std::process::id()
    ))
}

fn test_config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        min_session_timeout_ms: 50,
        offsets_topic_partitions: 3,
        ..Default::default()
    }
}

/// Runs `body` against a one-shard broker on `dir` (created or reopened),
/// closing its logs afterwards.
fn with_broker<F, Fut>(dir: &Path, groups: GroupConfig, create_offsets_topic: bool, body: F)
where
    F: FnOnce(Rc<Broker>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let dir = dir.to_path_buf();
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
                groups,
                ..Default::default()
            };
            let broker = Broker::new(Arc::new(config), mesh).await.expect("broker");
            broker.start_controller().await.expect("controller");
            broker.wait_ready().await;
            if !broker.metadata().topics.contains_key(TOPIC) {
                let topic = NewTopic {
                    name: TOPIC.into(),
                    partitions: TOPIC_PARTITIONS,
                    replication_factor: -1,
                    assignments: Vec::new(),
                    configs: Default::default(),
                    validate_only: false,
                };
                broker
                    .controller_call(ControllerRequest::CreateTopics(vec![topic]))
                    .await
                    .expect("create");
            }
            if create_offsets_topic {
                ensure_offsets_topic(&broker).await.expect("offsets topic");
                wait_loaded(&broker).await;
            }
            body(Rc::clone(&broker)).await;
            broker.shutting_down.set(true);
            broker.close_logs().await;
        })
        .expect("executor")
        .join()
        .expect("executor ran");
}

async fn wait_loaded(broker: &Broker) {
    for _ in 0..500 {
        if broker
            .groups
            .partitions
            .borrow()
            .values()
            .all(|load| *load == Load::Loaded)
            && !broker.groups.partitions.borrow().is_empty()
        {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    panic!("offsets partitions did not load");
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn join_request(
    group: &str,
    member: &str,
    instance: Option<&str>,
    protocols: &[&str],
) -> JoinGroupRequest {
    let mut request = JoinGroupRequest::default();
    request.group_id = GroupId(text(group));
    request.session_timeout_ms = SESSION_MS;
    request.rebalance_timeout_ms = 2_000;
    request.member_id = text(member);
    request.group_instance_id = instance.map(text);
    request.protocol_type = text("consumer");
    request.protocols = protocols
        .iter()
        .map(|name| {
            let mut protocol = JoinGroupRequestProtocol::default();
            protocol.name = text(name);
            protocol.metadata = Bytes::from(format!("meta-{name}-{member}"));
            protocol
        })
        .collect();
    request
}

async fn join(broker: &Rc<Broker>, request: JoinGroupRequest, version: i16) -> JoinOutcome {
    match serve(
        broker,
        GroupRequest::Join {
            request,
            version,
            client_id: "client".into(),
        },
    )
    .await
    {
        GroupResponse::Join(outcome) => outcome,
        other => panic!("unexpected {other:?}"),
    }
}

async fn sync(
    broker: &Rc<Broker>,
    group: &str,
    member: &str,
    generation: i32,
    assignments: &[(&str, &[u8])],
) -> SyncOutcome {
    let mut request = SyncGroupRequest::default();
    request.group_id = GroupId(text(group));
    request.member_id = text(member);
    request.generation_id = generation;
    request.assignments = assignments
        .iter()
        .map(|(member, bytes)| {
            let mut assignment = SyncGroupRequestAssignment::default();
            assignment.member_id = text(member);
            assignment.assignment = Bytes::copy_from_slice(bytes);
            assignment
        })
        .collect();
    match serve(
        broker,
        GroupRequest::Sync {
            request,
            version: 5,
        },
    )
    .await
    {
        GroupResponse::Sync(outcome) => outcome,
        other => panic!("unexpected {other:?}"),
    }
}

async fn heartbeat(
    broker: &Rc<Broker>,
    group: &str,
    member: &str,
    generation: i32,
    instance: Option<&str>,
) -> i16 {
    let mut request = HeartbeatRequest::default();
    request.group_id = GroupId(text(group));
    request.member_id = text(member);
    request.generation_id = generation;
    request.group_instance_id = instance.map(text);
    match serve(broker, GroupRequest::Heartbeat { request }).await {
        GroupResponse::Heartbeat(error_code) => error_code,
        other => panic!("unexpected {other:?}"),
    }
}

async fn commit(
    broker: &Rc<Broker>,
    group: &str,
    member: &str,
    generation: i32,
    entries: &[(&str, i32, i64, &str)],
) -> Vec<i16> {
    let mut request = OffsetCommitRequest::default();
    request.group_id = GroupId(text(group));
    request.member_id = text(member);
    request.generation_id_or_member_epoch = generation;
    let mut topic = OffsetCommitRequestTopic::default();
    topic.name = TopicName(text(entries.first().map_or(TOPIC, |entry| entry.0)));
    topic.partitions = entries
        .iter()
        .map(|(_, partition, offset, metadata)| {
            let mut entry = OffsetCommitRequestPartition::default();
            entry.partition_index = *partition;
            entry.committed_offset = *offset;
            entry.committed_metadata = Some(text(metadata));
            entry
        })
        .collect();
    request.topics = vec![topic];
    match serve(
        broker,
        GroupRequest::OffsetCommit {
            request,
            version: 8,
        },
    )
    .await
    {
        GroupResponse::OffsetCommit(outcome) => outcome.topics.into_iter().flatten().collect(),
        other => panic!("unexpected {other:?}"),
    }
}

fn fetch(broker: &Rc<Broker>, group: &str) -> Vec<(String, i32, i64, Option<String>)> {
    let fetched = broker.groups.fetch(
        broker,
        vec![FetchGroup {
            group_id: group.into(),
            topics: None,
            member: None,
            require_stable: false,
        }],
    );
    fetched
        .into_iter()
        .flat_map(|group| group.topics)
        .flat_map(|(topic, partitions)| {
            partitions
                .into_iter()
                .map(move |found| (topic.clone(), found.partition, found.offset, found.metadata))
        })
        .collect()
}

/// Joins a fresh dynamic member the way a v5 client does (KIP-394 round
/// trip), concurrently with whatever else is joining.
async fn join_new(broker: Rc<Broker>, group: String, protocols: Vec<&'static str>) -> JoinOutcome {
    let first = join(&broker, join_request(&group, "", None, &protocols), 5).await;
    assert_eq!(first.error_code, code::MEMBER_ID_REQUIRED);
    assert!(!first.member_id.is_empty());
    join(
        &broker,
        join_request(&group, &first.member_id, None, &protocols),
        5,
    )
    .await
}

#[test]
fn requests_before_the_offsets_topic_exists_get_not_coordinator() {
    let dir = temp_dir("not-coordinator");
    with_broker(&dir, test_config(), false, |broker| async move {
        let outcome = join(&broker, join_request("g", "", None, &["range"]), 5).await;
        assert_eq!(outcome.error_code, code::NOT_COORDINATOR);
        assert_eq!(coordinator_shard(&broker, "g"), Err(code::NOT_COORDINATOR));
        let partitions = ensure_offsets_topic(&broker).await.expect("created");
        assert_eq!(partitions, 3);
        let topic = broker
            .metadata()
            .topics
            .get(OFFSETS_TOPIC)
            .cloned()
            .expect("exists");
        assert_eq!(
            topic.configs.get("cleanup.policy").map(String::as_str),
            Some("compact")
        );
        assert_eq!(
            topic.configs.get("retention.ms").map(String::as_str),
            Some("-1")
        );
        // A second call finds it.
        assert_eq!(ensure_offsets_topic(&broker).await, Ok(3));
        // While a partition loads, its groups answer LOAD_IN_PROGRESS.
        let partition = sluice_engine::shard::coordinator_partition("g", 3);
        broker
            .groups
            .partitions
            .borrow_mut()
            .insert(partition, Load::Loading);
        assert_eq!(
            heartbeat(&broker, "g", "m", 1, None).await,
            code::COORDINATOR_LOAD_IN_PROGRESS
        );
        assert_eq!(
            commit(&broker, "g", "", -1, &[(TOPIC, 0, 5, "")]).await,
            vec![code::COORDINATOR_LOAD_IN_PROGRESS]
        );
        broker
            .groups
            .partitions
            .borrow_mut()
            .insert(partition, Load::Loaded);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn classic_protocol_errors_are_kafkas() {
    let dir = temp_dir("errors");
    with_broker(&dir, test_config(), true, |broker| async move {
        // Bad group id, session timeout out of range, no protocols.
        assert_eq!(
            join(&broker, join_request("", "", None, &["range"]), 5)
                .await
                .error_code,
            code::INVALID_GROUP_ID
        );
        let mut short = join_request("g", "", None, &["range"]);
        short.session_timeout_ms = 10;
        assert_eq!(
            join(&broker, short, 5).await.error_code,
            code::INVALID_SESSION_TIMEOUT
        );
        assert_eq!(
            join(&broker, join_request("g", "", None, &[]), 5)
                .await
                .error_code,
            code::INCONSISTENT_GROUP_PROTOCOL
        );
        // Unknown member on an unknown group.
        assert_eq!(
            join(&broker, join_request("nope", "ghost", None, &["range"]), 5)
                .await
                .error_code,
            code::UNKNOWN_MEMBER_ID
        );
        assert_eq!(
            heartbeat(&broker, "nope", "ghost", 1, None).await,
            code::UNKNOWN_MEMBER_ID
        );

        // v3 (before KIP-394) joins at once; the only member leads.
        let leader = join(
            &broker,
            join_request("g", "", None, &["range", "roundrobin"]),
            3,
        )
        .await;
        assert_eq!(leader.error_code, code::NONE);
        assert_eq!(leader.generation, 1);
        assert_eq!(leader.leader, leader.member_id);
        assert_eq!(leader.protocol_name.as_deref(), Some("range"));
        assert_eq!(leader.members.len(), 1);
        let id = leader.member_id.clone();
        // A different protocol type, or no protocol in common, is refused.
        let mut other_type = join_request("g", "", None, &["range"]);
        other_type.protocol_type = text("connect");
        assert_eq!(
            join(&broker, other_type, 5).await.error_code,
            code::INCONSISTENT_GROUP_PROTOCOL
        );
        assert_eq!(
            join(&broker, join_request("g", "", None, &["sticky"]), 5)
                .await
                .error_code,
            code::INCONSISTENT_GROUP_PROTOCOL
        );
        // Before the leader syncs, commits are refused.
        assert_eq!(
            commit(&broker, "g", &id, 1, &[(TOPIC, 0, 1, "")]).await,
            vec![code::REBALANCE_IN_PROGRESS]
        );
        let synced = sync(&broker, "g", &id, 1, &[(&id, b"all")]).await;
        assert_eq!(
            (synced.error_code, synced.assignment.as_ref()),
            (code::NONE, &b"all"[..])
        );
        assert_eq!(heartbeat(&broker, "g", &id, 1, None).await, code::NONE);
        assert_eq!(
            heartbeat(&broker, "g", &id, 7, None).await,
            code::ILLEGAL_GENERATION
        );
        assert_eq!(
            heartbeat(&broker, "g", "stranger", 1, None).await,
            code::UNKNOWN_MEMBER_ID
        );
        assert_eq!(
            sync(&broker, "g", &id, 9, &[]).await.error_code,
            code::ILLEGAL_GENERATION
        );
        // Commits: generation-checked, topics checked, metadata bounded.
        assert_eq!(
            commit(&broker, "g", &id, 0, &[(TOPIC, 0, 1, "")]).await,
            vec![code::ILLEGAL_GENERATION]
        );
        assert_eq!(
            commit(&broker, "g", "stranger", 1, &[(TOPIC, 0, 1, "")]).await,
            vec![code::UNKNOWN_MEMBER_ID]
        );
        assert_eq!(
            commit(&broker, "g", "", -1, &[(TOPIC, 0, 1, "")]).await,
            vec![code::UNKNOWN_MEMBER_ID]
        );
        assert_eq!(
            commit(&broker, "g", &id, 1, &[("missing", 0, 1, "")]).await,
            vec![code::UNKNOWN_TOPIC_OR_PARTITION]
        );
        assert_eq!(
            commit(&broker, "g", &id, 1, &[(TOPIC, TOPIC_PARTITIONS, 1, "")]).await,
            vec![code::UNKNOWN_TOPIC_OR_PARTITION]
        );
        let huge = "x".repeat(OFFSET_METADATA_BYTES_MAX + 1);
        assert_eq!(
            commit(&broker, "g", &id, 1, &[(TOPIC, 0, 1, &huge)]).await,
            vec![code::OFFSET_METADATA_TOO_LARGE]
        );
        let fine = "y".repeat(OFFSET_METADATA_BYTES_MAX);
        assert_eq!(
            commit(
                &broker,
                "g",
                &id,
                1,
                &[(TOPIC, 0, 10, &fine), (TOPIC, 1, 20, "m")]
            )
            .await,
            vec![0, 0]
        );
        assert_eq!(
            fetch(&broker, "g"),
            vec![
                (TOPIC.to_string(), 0, 10, Some(fine.clone())),
                (TOPIC.to_string(), 1, 20, Some("m".to_string()))
            ]
        );
        // A simple commit to a new group, as an assign() user does; a
        // member commit to an unknown group is refused.
        assert_eq!(
            commit(&broker, "simple", "", -1, &[(TOPIC, 2, 7, "")]).await,
            vec![code::NONE]
        );
        assert_eq!(
            commit(&broker, "unknown", "m", 3, &[(TOPIC, 2, 7, "")]).await,
            vec![code::ILLEGAL_GENERATION]
        );
        // Admin: a group with members cannot be deleted; unknown groups
        // are not found.
        let deleted = broker
            .groups
            .delete_groups(&broker, vec!["g".into(), "missing".into(), "simple".into()])
            .await;
        assert_eq!(
            deleted,
            vec![code::NON_EMPTY_GROUP, code::GROUP_ID_NOT_FOUND, code::NONE]
        );
        assert!(fetch(&broker, "simple").is_empty());
        let listed = broker.groups.list();
        assert_eq!(
            listed
                .groups
                .iter()
                .map(|group| (group.group_id.as_str(), group.state))
                .collect::<Vec<_>>(),
            vec![("g", "Stable")]
        );
        let described = broker
            .groups
            .describe(&broker, vec!["g".into(), "missing".into()]);
        assert_eq!(described[0].state, "Stable");
        assert_eq!(described[0].protocol_data, "range");
        assert_eq!(described[0].members[0].assignment.as_ref(), b"all");
        assert_eq!(described[1].state, "Dead");
        // LeaveGroup v3: one known member, one unknown.
        let mut leave = LeaveGroupRequest::default();
        leave.group_id = GroupId(text("g"));
        leave.members = [id.as_str(), "stranger"]
            .iter()
            .map(|member| {
                let mut identity = MemberIdentity::default();
                identity.member_id = text(member);
                identity
            })
            .collect();
        let left = broker.groups.leave(&broker, leave, 3).await;
        assert_eq!(
            left.members
                .iter()
                .map(|member| member.2)
                .collect::<Vec<_>>(),
            vec![code::NONE, code::UNKNOWN_MEMBER_ID]
        );
        assert_eq!(
            broker.groups.describe(&broker, vec!["g".into()])[0].state,
            "Empty"
        );
        // Now empty: simple commits work, and it can be deleted.
        assert_eq!(
            commit(&broker, "g", "", -1, &[(TOPIC, 3, 3, "")]).await,
            vec![code::NONE]
        );
        assert_eq!(
            broker.groups.delete_groups(&broker, vec!["g".into()]).await,
            vec![code::NONE]
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rebalance_with_two_members_and_static_replacement() {
    let dir = temp_dir("rebalance");
    with_broker(&dir, test_config(), true, |broker| async move {
        let group = "two".to_string();
        let first = join_new(Rc::clone(&broker), group.clone(), vec!["range"]).await;
        assert_eq!((first.error_code, first.generation), (code::NONE, 1));
        let a = first.member_id.clone();
        assert_eq!(
            sync(&broker, &group, &a, 1, &[(&a, b"a-all")])
                .await
                .error_code,
            code::NONE
        );
        // A second member starts a rebalance; the first learns by heartbeat
        // and rejoins; both get generation 2 and the leader sees both.
        let second =
            glommio::spawn_local(join_new(Rc::clone(&broker), group.clone(), vec!["range"]));
        glommio::timer::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            heartbeat(&broker, &group, &a, 1, None).await,
            code::REBALANCE_IN_PROGRESS
        );
        let rejoined = join(&broker, join_request(&group, &a, None, &["range"]), 5).await;
        let second = second.await;
        assert_eq!(
            (rejoined.error_code, rejoined.generation, second.generation),
            (code::NONE, 2, 2)
        );
        let b = second.member_id.clone();
        assert_eq!(rejoined.leader, a);
        assert_eq!(rejoined.members.len(), 2);
        assert!(second.members.is_empty());
        // The follower waits for the leader's assignment.
        let follower = {
            let broker = Rc::clone(&broker);
            let (group, b) = (group.clone(), b.clone());
            glommio::spawn_local(async move { sync(&broker, &group, &b, 2, &[]).await })
        };
        glommio::timer::sleep(Duration::from_millis(20)).await;
        let leader = sync(&broker, &group, &a, 2, &[(&a, b"p0"), (&b, b"p1")]).await;
        let follower = follower.await;
        assert_eq!(
            (leader.assignment.as_ref(), follower.assignment.as_ref()),
            (&b"p0"[..], &b"p1"[..])
        );
        assert_eq!(leader.protocol_name.as_deref(), Some("range"));

        // Static membership: a member with an instance id restarts (new
        // member id, same instance) in a Stable group: no rebalance, same
        // assignment, the old id is fenced.
        let group = "static".to_string();
        let s1 = join(
            &broker,
            join_request(&group, "", Some("instance-1"), &["range"]),
            5,
        )
        .await;
        assert_eq!((s1.error_code, s1.generation), (code::NONE, 1));
        assert!(s1.member_id.starts_with("instance-1-"));
        assert_eq!(
            sync(
                &broker,
                &group,
                &s1.member_id,
                1,
                &[(&s1.member_id, b"mine")]
            )
            .await
            .error_code,
            code::NONE
        );
        let s2 = join(
            &broker,
            join_request(&group, "", Some("instance-1"), &["range"]),
            5,
        )
        .await;
        assert_eq!(
            (s2.error_code, s2.generation),
            (code::NONE, 1),
            "no new generation"
        );
        assert_ne!(s2.member_id, s1.member_id);
        // Told the old leader id, so it does not run an assignment.
        assert_eq!(s2.leader, s1.member_id);
        let synced = sync(&broker, &group, &s2.member_id, 1, &[]).await;
        assert_eq!(synced.assignment.as_ref(), b"mine");
        assert_eq!(
            heartbeat(&broker, &group, &s1.member_id, 1, Some("instance-1")).await,
            code::FENCED_INSTANCE_ID
        );
        assert_eq!(
            heartbeat(&broker, &group, &s2.member_id, 1, Some("instance-1")).await,
            code::NONE
        );
        let stale = join(
            &broker,
            join_request(&group, &s1.member_id, Some("instance-1"), &["range"]),
            5,
        )
        .await;
        assert_eq!(stale.error_code, code::FENCED_INSTANCE_ID);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn silent_members_are_evicted_after_the_session_timeout() {
    let dir = temp_dir("session");
    with_broker(&dir, test_config(), true, |broker| async move {
        let mut request = join_request("quiet", "", None, &["range"]);
        request.session_timeout_ms = 200;
        let joined = join(&broker, request, 3).await;
        assert_eq!(joined.error_code, code::NONE);
        assert_eq!(
            sync(&broker, "quiet", &joined.member_id, 1, &[])
                .await
                .error_code,
            code::NONE
        );
        // Heartbeats keep it.
        for _ in 0..4 {
            glommio::timer::sleep(Duration::from_millis(100)).await;
            assert_eq!(
                heartbeat(&broker, "quiet", &joined.member_id, 1, None).await,
                code::NONE
            );
        }
        glommio::timer::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            heartbeat(&broker, "quiet", &joined.member_id, 1, None).await,
            code::UNKNOWN_MEMBER_ID
        );
        let described = broker.groups.describe(&broker, vec!["quiet".into()]);
        assert_eq!(
            (described[0].state, described[0].members.len()),
            ("Empty", 0)
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn members_that_do_not_rejoin_or_sync_in_time_are_removed() {
    let dir = temp_dir("timeouts");
    with_broker(&dir, test_config(), true, |broker| async move {
        let short = |member: &str| {
            let mut request = join_request("slow", member, None, &["range"]);
            request.rebalance_timeout_ms = 600;
            request
        };
        let first = join(&broker, short(""), 3).await;
        let a = first.member_id.clone();
        assert_eq!(
            sync(&broker, "slow", &a, 1, &[(&a, b"x")]).await.error_code,
            code::NONE
        );
        // B joins; A keeps heartbeating but never rejoins: at the rebalance
        // timeout A is removed and B forms generation 2 alone.
        let started = std::time::Instant::now();
        let second = {
            let broker = Rc::clone(&broker);
            glommio::spawn_local(async move { join(&broker, short(""), 3).await })
        };
        for _ in 0..3 {
            glommio::timer::sleep(Duration::from_millis(100)).await;
            assert_eq!(
                heartbeat(&broker, "slow", &a, 1, None).await,
                code::REBALANCE_IN_PROGRESS
            );
        }
        let second = second.await;
        assert!(started.elapsed() >= Duration::from_millis(600));
        assert_eq!(
            (second.error_code, second.generation, second.members.len()),
            (code::NONE, 2, 1)
        );
        assert_eq!(
            heartbeat(&broker, "slow", &a, 1, None).await,
            code::UNKNOWN_MEMBER_ID
        );
        // The leader (B) never sends its assignment: after the rebalance
        // timeout B is removed, the group empties.
        glommio::timer::sleep(Duration::from_millis(900)).await;
        let described = broker.groups.describe(&broker, vec!["slow".into()]);
        assert_eq!(
            (described[0].state, described[0].members.len()),
            ("Empty", 0)
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn offsets_of_groups_empty_past_the_retention_expire() {
    let dir = temp_dir("expiry");
    let config = GroupConfig {
        offsets_retention_ms: 200,
        ..test_config()
    };
    with_broker(&dir, config, true, |broker| async move {
        // A simple-commit group, and a group with a member.
        assert_eq!(
            commit(&broker, "simple", "", -1, &[(TOPIC, 0, 5, "")]).await,
            vec![code::NONE]
        );
        let joined = join(&broker, join_request("active", "", None, &["range"]), 3).await;
        let id = joined.member_id.clone();
        assert_eq!(
            sync(&broker, "active", &id, 1, &[]).await.error_code,
            code::NONE
        );
        assert_eq!(
            commit(&broker, "active", &id, 1, &[(TOPIC, 1, 9, "")]).await,
            vec![code::NONE]
        );
        broker.groups.expire_offsets(&broker).await;
        assert_eq!(fetch(&broker, "simple").len(), 1, "not expired yet");
        glommio::timer::sleep(Duration::from_millis(250)).await;
        assert_eq!(heartbeat(&broker, "active", &id, 1, None).await, code::NONE);
        broker.groups.expire_offsets(&broker).await;
        assert!(fetch(&broker, "simple").is_empty());
        assert!(
            broker
                .groups
                .list()
                .groups
                .iter()
                .all(|group| group.group_id != "simple"),
            "emptied group removed"
        );
        assert_eq!(
            fetch(&broker, "active").len(),
            1,
            "a group with members keeps its offsets"
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn groups_and_offsets_survive_compaction_and_a_restart() {
    let dir = temp_dir("replay");
    let config = test_config();
    let first_config = config.clone();
    let shared = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let recorded = std::sync::Arc::clone(&shared);
    with_broker(&dir, first_config, true, move |broker| async move {
        // Small segments, so that the commits below fill sealed ones the
        // cleaner may take.
        let partition = sluice_engine::shard::coordinator_partition("kept", 3);
        let log = broker.log(OFFSETS_TOPIC, partition).expect("log");
        log.set_config(sluice_engine::log::LogConfig {
            segment_bytes: sluice_engine::constants::SEGMENT_BYTES_MIN,
            ..log.config()
        });
        let joined = join(
            &broker,
            join_request("kept", "", Some("i-1"), &["range"]),
            5,
        )
        .await;
        let id = joined.member_id.clone();
        assert_eq!(
            sync(&broker, "kept", &id, 1, &[(&id, b"assigned")])
                .await
                .error_code,
            code::NONE
        );
        for offset in 0..200 {
            assert_eq!(
                commit(&broker, "kept", &id, 1, &[(TOPIC, 0, offset, "meta")]).await,
                vec![code::NONE]
            );
        }
        assert_eq!(
            commit(&broker, "gone", "", -1, &[(TOPIC, 1, 5, "")]).await,
            vec![code::NONE]
        );
        assert_eq!(
            broker
                .groups
                .delete_groups(&broker, vec!["gone".into()])
                .await,
            vec![code::NONE]
        );
        // 200 commits of one partition's offset: a pass of the cleaner
        // leaves the latest of them.
        let leo = log.offsets().leo;
        log.wait_durable(leo).await.expect("durable");
        let report = crate::broker::clean_now(&log).await;
        assert!(
            report.records_removed >= 150,
            "superseded commits removed: {report:?}"
        );
        *recorded.lock().expect("lock") = id;
    });
    let id = shared.lock().expect("lock").clone();
    with_broker(&dir, config, true, move |broker| async move {
        assert_eq!(
            fetch(&broker, "kept"),
            vec![(TOPIC.to_string(), 0, 199, Some("meta".to_string()))]
        );
        assert!(fetch(&broker, "gone").is_empty());
        let described = broker.groups.describe(&broker, vec!["kept".into()]);
        assert_eq!(described[0].state, "Stable");
        assert_eq!(described[0].members.len(), 1);
        assert_eq!(described[0].members[0].member_id, id);
        assert_eq!(described[0].members[0].instance_id.as_deref(), Some("i-1"));
        assert_eq!(described[0].members[0].assignment.as_ref(), b"assigned");
        // The member carries on where it was: same generation, same id.
        assert_eq!(
            heartbeat(&broker, "kept", &id, 1, Some("i-1")).await,
            code::NONE
        );
        let synced = sync(&broker, "kept", &id, 1, &[]).await;
        assert_eq!(synced.assignment.as_ref(), b"assigned");
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// Measurement (not run by default): how long replaying an offsets
/// partition of a million offset-commit records takes, and how fast
/// concurrent commits and rebalances go through the coordinator in-process.
/// `cargo test -p sluice-net --lib coordinator_measurements -- --ignored --nocapture`
#[test]
#[ignore = "measurement; run explicitly"]
fn coordinator_measurements() {
    use std::time::Instant;
    const RECORDS: usize = 1_000_000;
    const GROUPS: usize = 1000;
    const RECORDS_PER_BATCH: usize = 1000;
    let dir = temp_dir("measure");
    // One offsets partition, and no cleaning, so all records stay to replay.
    let config = GroupConfig {
        offsets_topic_partitions: 1,
        initial_rebalance_delay_ms: 0,
        ..test_config()
    };
    with_broker(&dir, config.clone(), true, |broker| async move {
        let started = Instant::now();
        let mut batch = Vec::with_capacity(RECORDS_PER_BATCH);
        let mut end = 0;
        for index in 0..RECORDS {
            let group = format!("group-{}", index % GROUPS);
            let value = records::OffsetValue {
                offset: index as i64,
                leader_epoch: 0,
                metadata: String::new(),
                commit_timestamp: 0,
                expire_timestamp: -1,
            };
            batch.push(KeyedRecord {
                key: records::offset_key(
                    &group,
                    TOPIC,
                    ((index / GROUPS) % TOPIC_PARTITIONS as usize) as i32,
                ),
                value: Some(records::encode_offset_value(&value)),
            });
            if batch.len() == RECORDS_PER_BATCH {
                broker
                    .wait_for_coordinator_room(OFFSETS_TOPIC, 0)
                    .await
                    .expect("write-behind room");
                end = broker
                    .groups
                    .append_now(&broker, 0, &batch)
                    .expect("append");
                batch.clear();
            }
        }
        broker
            .groups
            .wait_written(&broker, 0, end)
            .await
            .expect("durable");
        let bytes = broker
            .log(OFFSETS_TOPIC, 0)
            .map(|log| log.size_bytes())
            .unwrap_or(0);
        eprintln!(
            "wrote {RECORDS} offset records ({bytes} bytes) in {:?}",
            started.elapsed()
        );
    });
    with_broker(&dir, config, true, |broker| async move {
        // Replay again, timed alone (the load at start-up did the same).
        let started = Instant::now();
        let (groups, records, _) = broker.groups.replay(&broker, 0).await.expect("replay");
        let elapsed = started.elapsed();
        assert_eq!((groups.len(), records), (GROUPS, RECORDS as u64));
        eprintln!(
            "replayed {records} records into {} groups in {elapsed:?} ({:.0} records/s)",
            groups.len(),
            records as f64 / elapsed.as_secs_f64()
        );

        // Commits: 100 members of one group, each committing 50 times,
        // concurrently; every answer waits for its fdatasync (group commit).
        const COMMITTERS: usize = 100;
        const COMMITS_EACH: usize = 50;
        let started = Instant::now();
        let tasks: Vec<_> = (0..COMMITTERS)
            .map(|committer| {
                let broker = Rc::clone(&broker);
                glommio::spawn_local(async move {
                    let group = format!("committer-{committer}");
                    for offset in 0..COMMITS_EACH {
                        let errors =
                            commit(&broker, &group, "", -1, &[(TOPIC, 0, offset as i64, "")]).await;
                        assert_eq!(errors, vec![code::NONE]);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        let elapsed = started.elapsed();
        let total = COMMITTERS * COMMITS_EACH;
        eprintln!("{total} durable commits from {COMMITTERS} concurrent committers in {elapsed:?} ({:.0}/s)", total as f64 / elapsed.as_secs_f64());
    });
    // Rebalance: N members join at once (KIP-394 round trip) within the
    // initial rebalance delay, the leader assigns, everyone is synced.
    const INITIAL_DELAY_MS: u64 = 100;
    let config = GroupConfig {
        initial_rebalance_delay_ms: INITIAL_DELAY_MS,
        ..test_config()
    };
    with_broker(&dir, config, true, |broker| async move {
        for members in [10usize, 100] {
            let group = format!("rebalance-{members}");
            let started = Instant::now();
            let tasks: Vec<_> = (0..members)
                .map(|_| {
                    let broker = Rc::clone(&broker);
                    let group = group.clone();
                    glommio::spawn_local(async move {
                        let joined =
                            join_new(Rc::clone(&broker), group.clone(), vec!["range"]).await;
                        assert_eq!(joined.error_code, code::NONE);
                        let assignments: Vec<(String, Vec<u8>)> = joined
                            .members
                            .iter()
                            .map(|member| (member.member_id.clone(), b"a".to_vec()))
                            .collect();
                        let borrowed: Vec<(&str, &[u8])> = assignments
                            .iter()
                            .map(|(id, bytes)| (id.as_str(), bytes.as_slice()))
                            .collect();
                        let synced = sync(
                            &broker,
                            &group,
                            &joined.member_id,
                            joined.generation,
                            &borrowed,
                        )
                        .await;
                        assert_eq!(synced.error_code, code::NONE);
                    })
                })
                .collect();
            for task in tasks {
                task.await;
            }
            let elapsed = started.elapsed();
            let described = broker.groups.describe(&broker, vec![group.clone()]);
            assert_eq!(
                (described[0].state, described[0].members.len()),
                ("Stable", members)
            );
            eprintln!(
                "{members} members joined and synced in {elapsed:?} (of which the initial delay {INITIAL_DELAY_MS} ms)"
            );
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}
