//! The broker is killed (SIGKILL) while a group is active: after the
//! restart the group is back (Stable, its members, their assignments) and
//! so is every acknowledged commit; new consumers of the group resume at the
//! committed offsets, so with synchronous commits after processing nothing
//! is read twice across the crash.

mod common;
mod groups_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{produce_all, Record, Stop, CLIENT_TIMEOUT};
use groups_support::{group_broker, is_exact_split, member_config, wait_for, Member};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "payments";
const PARTITIONS: i32 = 6;
const MESSAGES: usize = 3000;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

fn messages(from: usize, count: usize) -> Vec<Record> {
    (from..from + count)
        .map(|index| Record {
            partition: (index % PARTITIONS as usize) as i32,
            offset: -1,
            key: None,
            value: Some(format!("payment-{index}").into_bytes()),
            headers: Vec::new(),
            timestamp: None,
        })
        .collect()
}

fn committed(broker: &common::TestBroker, group: &str) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = member_config(broker, group, &[])
        .create()
        .expect("consumer");
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
            let offset = match element.offset() {
                Offset::Offset(offset) => offset,
                _ => -1,
            };
            (element.partition(), offset)
        })
        .collect()
}

#[test]
fn groups_and_commits_survive_kill_9_and_consumers_resume() {
    let mut broker = group_broker();
    broker.create_topic(TOPIC, PARTITIONS);
    produce_all(&broker, TOPIC, &[], &messages(0, MESSAGES));
    let config = |broker: &common::TestBroker| {
        member_config(broker, "settlement", &[("session.timeout.ms", "10000")])
    };
    let first = Member::start(config(&broker), &[TOPIC]);
    let second = Member::start(config(&broker), &[TOPIC]);
    wait_for(
        "both members to split the topic and process everything",
        SETTLE_TIMEOUT,
        || {
            is_exact_split(
                &[first.state.assignment(), second.state.assignment()],
                PARTITIONS,
                Some(3),
            ) && first.state.processed_count() + second.state.processed_count() >= MESSAGES
        },
        || {
            format!(
                "{:?} {:?}",
                first.state.assignment(),
                second.state.assignment()
            )
        },
    );
    let before = committed(&broker, "settlement");
    assert!(
        before
            .values()
            .all(|offset| *offset == (MESSAGES as i64) / PARTITIONS as i64),
        "{before:?}"
    );
    let (state, protocol, members) = groups_support::describe_group(&broker, "settlement");
    assert_eq!((state.as_str(), members), ("Stable", 2));

    broker.restart(Stop::Kill);
    let restarted_at = Instant::now();
    // The group comes back as it was, and so do the commits.
    wait_for(
        "the coordinator to load",
        SETTLE_TIMEOUT,
        || {
            let consumer: BaseConsumer = broker.client_config().create().expect("consumer");
            consumer
                .fetch_group_list(Some("settlement"), Duration::from_secs(5))
                .is_ok_and(|list| {
                    list.groups()
                        .iter()
                        .any(|group| group.name() == "settlement" && group.state() == "Stable")
                })
        },
        || "group not listed".to_string(),
    );
    let loaded_after = restarted_at.elapsed();
    let (state_after, protocol_after, members_after) =
        groups_support::describe_group(&broker, "settlement");
    assert_eq!(
        (state_after.as_str(), protocol_after.as_str(), members_after),
        ("Stable", protocol.as_str(), 2)
    );
    assert_eq!(committed(&broker, "settlement"), before);
    // The old consumers point at the dead broker's port: closing them would
    // wait for it, so they are left behind (their threads end with the test
    // process).
    std::mem::forget(first);
    std::mem::forget(second);

    // More messages, and a new member: it resumes at the commits and reads
    // exactly the new messages, once. (It waits for the old members'
    // sessions to expire, as with Kafka.)
    produce_all(&broker, TOPIC, &[], &messages(MESSAGES, 600));
    let resumed = Member::start(config(&broker), &[TOPIC]);
    wait_for(
        "the new member to read the new messages",
        SETTLE_TIMEOUT,
        || resumed.state.processed_count() >= 600,
        || {
            format!(
                "{} processed, assignment {:?}",
                resumed.state.processed_count(),
                resumed.state.assignment()
            )
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let state = resumed.stop();
    let processed = state.processed.lock().expect("lock").clone();
    assert_eq!(processed.len(), 600, "read again across the crash");
    for (partition, offset, _) in &processed {
        assert!(
            *offset >= before[partition],
            "{partition}/{offset} was committed before the crash"
        );
    }
    let after = committed(&broker, "settlement");
    assert!(
        after
            .values()
            .all(|offset| *offset == (MESSAGES as i64 + 600) / PARTITIONS as i64),
        "{after:?}"
    );
    eprintln!(
        "coordinator state listed {:.2}s after the restart",
        loaded_after.as_secs_f64()
    );
}
