//! Committed offsets with librdkafka: synchronous and asynchronous commits
//! with metadata, auto commit, `auto.offset.reset` earliest / latest / none,
//! simple commits from `assign()` users, and the admin APIs (ListGroups,
//! DescribeGroups, DeleteGroups).

mod common;
mod groups_support;

use std::time::{Duration, Instant};

use common::{admin_options, produce_all, Record, CLIENT_TIMEOUT};
use groups_support::{group_broker, member_config, wait_for};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

const TOPIC: &str = "ledger";
const PARTITIONS: i32 = 3;
/// Messages per partition produced up front.
const PER_PARTITION: i64 = 20;

/// The scenario consumers' config with librdkafka's default offset store:
/// these tests commit what `poll` returned.
fn consumer_config(
    broker: &common::TestBroker,
    group: &str,
    extra: &[(&str, &str)],
) -> rdkafka::ClientConfig {
    let mut config = member_config(broker, group, extra);
    if !extra
        .iter()
        .any(|(key, _)| *key == "enable.auto.offset.store")
    {
        config.set("enable.auto.offset.store", "true");
    }
    config
}

fn fill(broker: &common::TestBroker) {
    broker.create_topic(TOPIC, PARTITIONS);
    let records: Vec<Record> = (0..PARTITIONS)
        .flat_map(|partition| {
            (0..PER_PARTITION).map(move |index| Record {
                partition,
                offset: -1,
                key: None,
                value: Some(format!("{partition}-{index}").into_bytes()),
                headers: Vec::new(),
                timestamp: None,
            })
        })
        .collect();
    produce_all(broker, TOPIC, &[], &records);
}

/// Polls until `count` messages arrived (panics after the client timeout).
fn poll_messages(consumer: &BaseConsumer, count: usize) -> Vec<(i32, i64)> {
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut seen = Vec::new();
    while seen.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} messages",
            seen.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => seen.push((message.partition(), message.offset())),
            Some(Err(error)) => panic!("consumer error: {error}"),
            None => {}
        }
    }
    seen
}

/// Nothing arrives for `quiet`.
fn assert_quiet(consumer: &BaseConsumer, quiet: Duration) {
    let deadline = Instant::now() + quiet;
    while Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            panic!(
                "unexpected message at {}/{}",
                message.partition(),
                message.offset()
            );
        }
    }
}

fn committed(consumer: &BaseConsumer) -> Vec<(i32, Offset, String)> {
    let mut wanted = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        wanted.add_partition(TOPIC, partition);
    }
    let list = consumer
        .committed_offsets(wanted, CLIENT_TIMEOUT)
        .expect("OffsetFetch");
    list.elements()
        .iter()
        .map(|element| {
            (
                element.partition(),
                element.offset(),
                element.metadata().to_string(),
            )
        })
        .collect()
}

fn waits_for_assignment(consumer: &BaseConsumer) {
    wait_for(
        "an assignment",
        CLIENT_TIMEOUT,
        || {
            let _ = consumer.poll(Duration::from_millis(50));
            consumer
                .assignment()
                .map(|list| list.count() == PARTITIONS as usize)
                .unwrap_or(false)
        },
        || "no assignment".to_string(),
    );
}

#[test]
fn sync_and_async_commits_with_metadata_are_where_the_next_member_starts() {
    let broker = group_broker();
    fill(&broker);
    let consumer: BaseConsumer = consumer_config(&broker, "resume", &[])
        .create()
        .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    poll_messages(&consumer, 30);
    // Explicit positions: partition 0 synchronously with metadata, 1
    // asynchronously, 2 from the consumer's own position.
    let mut sync_list = TopicPartitionList::new();
    sync_list
        .add_partition_offset(TOPIC, 0, Offset::Offset(5))
        .expect("add");
    sync_list
        .find_partition(TOPIC, 0)
        .expect("partition 0")
        .set_metadata("checkpoint-a");
    consumer
        .commit(&sync_list, CommitMode::Sync)
        .expect("sync commit");
    let mut async_list = TopicPartitionList::new();
    async_list
        .add_partition_offset(TOPIC, 1, Offset::Offset(7))
        .expect("add");
    consumer
        .commit(&async_list, CommitMode::Async)
        .expect("async commit queued");
    let mut own = TopicPartitionList::new();
    own.add_partition_offset(TOPIC, 2, Offset::Offset(11))
        .expect("add");
    consumer
        .commit(&own, CommitMode::Sync)
        .expect("sync commit");
    wait_for(
        "the async commit to be visible",
        CLIENT_TIMEOUT,
        || {
            let _ = consumer.poll(Duration::from_millis(20));
            committed(&consumer)
                .iter()
                .any(|(partition, offset, _)| *partition == 1 && *offset == Offset::Offset(7))
        },
        || format!("{:?}", committed(&consumer)),
    );
    assert_eq!(
        committed(&consumer),
        vec![
            (0, Offset::Offset(5), "checkpoint-a".to_string()),
            (1, Offset::Offset(7), String::new()),
            (2, Offset::Offset(11), String::new()),
        ]
    );
    drop(consumer);
    // The next member of the group starts exactly there.
    let next: BaseConsumer = consumer_config(&broker, "resume", &[])
        .create()
        .expect("consumer");
    next.subscribe(&[TOPIC]).expect("subscribe");
    let seen = poll_messages(&next, (3 * PER_PARTITION - 5 - 7 - 11) as usize);
    for partition in 0..PARTITIONS {
        let first = seen
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|(_, offset)| *offset)
            .min();
        assert_eq!(
            first,
            Some([5, 7, 11][partition as usize]),
            "partition {partition}"
        );
    }
    assert_quiet(&next, Duration::from_millis(500));
}

#[test]
fn auto_commit_stores_positions_for_the_next_member() {
    let broker = group_broker();
    fill(&broker);
    let consumer: BaseConsumer = consumer_config(
        &broker,
        "auto",
        &[
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", "100"),
        ],
    )
    .create()
    .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    poll_messages(&consumer, (3 * PER_PARTITION) as usize);
    wait_for(
        "auto commit of every position",
        CLIENT_TIMEOUT,
        || {
            let _ = consumer.poll(Duration::from_millis(50));
            committed(&consumer)
                .iter()
                .all(|(_, offset, _)| *offset == Offset::Offset(PER_PARTITION))
        },
        || format!("{:?}", committed(&consumer)),
    );
    drop(consumer);
    let next: BaseConsumer = consumer_config(&broker, "auto", &[])
        .create()
        .expect("consumer");
    next.subscribe(&[TOPIC]).expect("subscribe");
    waits_for_assignment(&next);
    assert_quiet(&next, Duration::from_millis(500));
}

#[test]
fn auto_offset_reset_earliest_latest_and_none() {
    let broker = group_broker();
    fill(&broker);
    // earliest: a new group reads from the log start.
    let earliest: BaseConsumer = consumer_config(&broker, "reset-earliest", &[])
        .create()
        .expect("consumer");
    earliest.subscribe(&[TOPIC]).expect("subscribe");
    let seen = poll_messages(&earliest, (3 * PER_PARTITION) as usize);
    assert_eq!(
        seen.iter().filter(|(_, offset)| *offset == 0).count(),
        PARTITIONS as usize
    );

    // latest: only what is produced after the assignment.
    let latest: BaseConsumer =
        consumer_config(&broker, "reset-latest", &[("auto.offset.reset", "latest")])
            .create()
            .expect("consumer");
    latest.subscribe(&[TOPIC]).expect("subscribe");
    waits_for_assignment(&latest);
    // The position is resolved on the first fetch; give it a moment.
    assert_quiet(&latest, Duration::from_millis(1000));
    let fresh: Vec<Record> = (0..PARTITIONS)
        .map(|partition| Record {
            partition,
            offset: -1,
            key: None,
            value: Some(b"fresh".to_vec()),
            headers: Vec::new(),
            timestamp: None,
        })
        .collect();
    produce_all(&broker, TOPIC, &[], &fresh);
    let seen = poll_messages(&latest, PARTITIONS as usize);
    assert!(
        seen.iter().all(|(_, offset)| *offset == PER_PARTITION),
        "{seen:?}"
    );

    // none: no committed offset is an error for the application.
    let none: BaseConsumer =
        consumer_config(&broker, "reset-none", &[("auto.offset.reset", "error")])
            .create()
            .expect("consumer");
    none.subscribe(&[TOPIC]).expect("subscribe");
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "no auto.offset.reset error");
        match none.poll(Duration::from_millis(100)) {
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => break,
            Some(Err(other)) => panic!("unexpected error {other:?}"),
            Some(Ok(message)) => panic!(
                "read {}/{} without a committed offset",
                message.partition(),
                message.offset()
            ),
            None => {}
        }
    }
}

#[test]
fn assign_users_commit_to_a_group_without_members_and_admin_apis_see_it() {
    let broker = group_broker();
    fill(&broker);
    // assign() with a group id: commits are "simple" (generation -1).
    let consumer: BaseConsumer = consumer_config(&broker, "manual", &[])
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(TOPIC, partition, Offset::Beginning)
            .expect("add");
    }
    consumer.assign(&assignment).expect("assign");
    poll_messages(&consumer, (3 * PER_PARTITION) as usize);
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("simple commit");
    assert!(committed(&consumer)
        .iter()
        .all(|(_, offset, _)| *offset == Offset::Offset(PER_PARTITION)));

    // A subscribed group alongside, for the admin views.
    let member: BaseConsumer = consumer_config(&broker, "subscribed", &[])
        .create()
        .expect("consumer");
    member.subscribe(&[TOPIC]).expect("subscribe");
    waits_for_assignment(&member);

    let groups = consumer
        .fetch_group_list(None, CLIENT_TIMEOUT)
        .expect("ListGroups + DescribeGroups");
    let find = |name: &str| {
        groups
            .groups()
            .iter()
            .find(|group| group.name() == name)
            .map(|group| {
                (
                    group.state().to_string(),
                    group.protocol_type().to_string(),
                    group.protocol().to_string(),
                    group.members().len(),
                )
            })
    };
    assert_eq!(
        find("manual"),
        Some(("Empty".into(), String::new(), String::new(), 0))
    );
    let subscribed = find("subscribed").expect("listed");
    assert_eq!(
        (subscribed.0.as_str(), subscribed.1.as_str(), subscribed.3),
        ("Stable", "consumer", 1)
    );
    assert!(
        ["range", "roundrobin"].contains(&subscribed.2.as_str()),
        "protocol {}",
        subscribed.2
    );
    let described = groups
        .groups()
        .iter()
        .find(|group| group.name() == "subscribed")
        .expect("listed");
    let member_info = &described.members()[0];
    assert!(
        member_info
            .assignment()
            .is_some_and(|bytes| !bytes.is_empty()),
        "the leader's assignment is described"
    );

    // DeleteGroups: the group with a member cannot go, the empty one can,
    // an unknown one is not found.
    let admin = broker.admin();
    let results = futures_lite::future::block_on(
        admin.delete_groups(&["manual", "subscribed", "never"], &admin_options()),
    )
    .expect("DeleteGroups");
    let codes: Vec<_> = results
        .iter()
        .map(|result| match result {
            Ok(_) => None,
            Err((_, code)) => Some(*code),
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            None,
            Some(RDKafkaErrorCode::NonEmptyGroup),
            Some(RDKafkaErrorCode::GroupIdNotFound)
        ]
    );
    assert!(
        committed(&consumer)
            .iter()
            .all(|(_, offset, _)| *offset == Offset::Invalid),
        "offsets deleted with the group"
    );
}
