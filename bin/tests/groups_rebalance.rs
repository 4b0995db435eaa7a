//! Consumer groups with librdkafka `subscribe()`: members come and go, the
//! partitions stay split exactly once, and with synchronous commits after
//! processing no message is lost or processed twice. Also: the
//! cooperative-sticky assignor rebalances incrementally, and two groups on
//! one topic each read everything.

mod common;
mod groups_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{produce_all, Record, TrackedProducer};
use groups_support::{group_broker, is_exact_split, member_config, wait_for, Event, Member};

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 12;
/// Messages produced in each phase of the scenario.
const MESSAGES_PER_PHASE: usize = 3000;
/// How long a rebalance plus catching up may take on a loaded machine.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

fn messages(phase: usize) -> Vec<Record> {
    (0..MESSAGES_PER_PHASE)
        .map(|index| Record {
            partition: -1,
            offset: -1,
            key: Some(format!("key-{}", index % 97).into_bytes()),
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
                "member {index}: assignment {:?}, processed {}, commit errors {:?}",
                member.state.assignment(),
                member.state.processed_count(),
                member.state.tracker.commit_errors.lock().expect("lock")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Waits until the members split the topic exactly (`each` partitions
/// apiece) and together have processed `total` messages.
fn settle(members: &[&Member], each: usize, total: usize) {
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
            is_exact_split(&assignments, PARTITIONS, Some(each)) && processed >= total
        },
        || describe(members),
    );
}

/// Produces numbered messages ("live-<n>") until told to stop, while the
/// group rebalances; returns how many it produced, all acknowledged.
fn produce_until(broker: &common::TestBroker, stop: &AtomicBool) -> usize {
    let mut producer = TrackedProducer::new(broker, TOPIC, &[]);
    let mut sent = 0usize;
    while !stop.load(Ordering::SeqCst) {
        for _ in 0..LIVE_BURST {
            producer.send(&Record {
                partition: -1,
                offset: -1,
                key: Some(format!("key-{}", sent % 97).into_bytes()),
                value: Some(format!("live-{sent}").into_bytes()),
                headers: Vec::new(),
                timestamp: None,
            });
            sent += 1;
        }
        std::thread::sleep(LIVE_PAUSE);
    }
    producer.flush();
    for (index, report) in producer.reports().into_iter().enumerate() {
        assert!(
            matches!(report, Some(Ok(_))),
            "live message {index}: {report:?}"
        );
    }
    sent
}

/// Messages per burst of the background producer, and the pause between
/// bursts: a steady flow while members join and leave.
const LIVE_BURST: usize = 50;
const LIVE_PAUSE: Duration = Duration::from_millis(20);

#[test]
fn one_then_four_then_two_members_process_every_message_once() {
    let broker = group_broker();
    broker.create_topic(TOPIC, PARTITIONS);
    let config = |name: &str| member_config(&broker, "billing", &[("client.id", name)]);
    let started = Instant::now();

    // One member owns all twelve partitions.
    let first = Member::start(config("m0"), &[TOPIC]);
    produce_all(&broker, TOPIC, &[], &messages(0));
    settle(&[&first], 12, MESSAGES_PER_PHASE);
    let one = started.elapsed();

    // From here on messages keep arriving while the group changes.
    let stop = AtomicBool::new(false);
    let (produced, four, two, states) = std::thread::scope(|scope| {
        let producer = scope.spawn(|| produce_until(&broker, &stop));
        // Three more join: three partitions each.
        let others: Vec<Member> = (1..4)
            .map(|index| Member::start(config(&format!("m{index}")), &[TOPIC]))
            .collect();
        let all: Vec<&Member> = std::iter::once(&first).chain(others.iter()).collect();
        wait_for(
            "four members with three partitions each",
            SETTLE_TIMEOUT,
            || {
                is_exact_split(
                    &all.iter()
                        .map(|member| member.state.assignment())
                        .collect::<Vec<_>>(),
                    PARTITIONS,
                    Some(3),
                )
            },
            || describe(&all),
        );
        let four = started.elapsed();
        let (state, protocol, members) = groups_support::describe_group(&broker, "billing");
        assert_eq!(
            (state.as_str(), members),
            ("Stable", 4),
            "protocol {protocol}"
        );

        // Two leave (LeaveGroup on close); the remaining two take six each.
        let mut others = others.into_iter();
        let second = others.next().expect("member 1");
        let mut states: Vec<_> = others.map(Member::stop).collect();
        wait_for(
            "two members with six partitions each",
            SETTLE_TIMEOUT,
            || {
                is_exact_split(
                    &[first.state.assignment(), second.state.assignment()],
                    PARTITIONS,
                    Some(6),
                )
            },
            || describe(&[&first, &second]),
        );
        let two = started.elapsed();
        stop.store(true, Ordering::SeqCst);
        let produced = MESSAGES_PER_PHASE + producer.join().expect("producer thread");
        wait_for(
            "every message to be processed",
            SETTLE_TIMEOUT,
            || {
                let gone: usize = states.iter().map(|state| state.processed_count()).sum();
                gone + first.state.processed_count() + second.state.processed_count() >= produced
            },
            || {
                let probe: rdkafka::consumer::BaseConsumer = member_config(&broker, "billing", &[])
                    .create()
                    .expect("probe");
                let mut list = rdkafka::TopicPartitionList::new();
                for partition in 0..PARTITIONS {
                    list.add_partition(TOPIC, partition);
                }
                let committed = rdkafka::consumer::Consumer::committed_offsets(
                    &probe,
                    list,
                    Duration::from_secs(10),
                );
                let marks: Vec<_> = (0..PARTITIONS)
                    .map(|partition| {
                        rdkafka::consumer::Consumer::fetch_watermarks(
                            &probe,
                            TOPIC,
                            partition,
                            Duration::from_secs(10),
                        )
                    })
                    .collect();
                let mut max_seen = BTreeMap::new();
                for state in states.iter().chain([&first.state, &second.state]) {
                    for (partition, offset, _) in state.processed.lock().expect("lock").iter() {
                        let entry = max_seen.entry(*partition).or_insert(-1);
                        *entry = (*entry).max(*offset);
                    }
                }
                format!("produced {produced}; {}; committed {committed:?}; marks {marks:?}; max seen {max_seen:?}; errors {:?} {:?}", describe(&[&first, &second]), first.state.errors.lock().expect("lock"), second.state.errors.lock().expect("lock"))
            },
        );
        states.push(second.stop());
        (produced, four, two, states)
    });
    let mut states = states;
    states.push(first.stop());

    // Every message exactly once, at a unique position.
    let mut by_value: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    let mut positions = BTreeSet::new();
    for state in &states {
        assert!(
            state.tracker.commit_errors.lock().expect("lock").is_empty(),
            "commit errors: {:?}",
            state.tracker.commit_errors
        );
        for (partition, offset, value) in state.processed.lock().expect("lock").iter() {
            *by_value.entry(value.clone()).or_default() += 1;
            assert!(
                positions.insert((*partition, *offset)),
                "{partition}/{offset} processed twice"
            );
        }
    }
    let twice: Vec<_> = by_value
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(value, _)| String::from_utf8_lossy(value))
        .collect();
    assert!(twice.is_empty(), "processed more than once: {twice:?}");
    let expected: BTreeSet<Vec<u8>> = messages(0)
        .into_iter()
        .filter_map(|record| record.value)
        .chain((0..produced - MESSAGES_PER_PHASE).map(|index| format!("live-{index}").into_bytes()))
        .collect();
    let seen: BTreeSet<Vec<u8>> = by_value.keys().cloned().collect();
    assert_eq!(
        seen.len(),
        expected.len(),
        "lost {} messages",
        expected.difference(&seen).count()
    );
    assert_eq!(seen, expected);
    let rebalances: usize = states.iter().map(|state| state.assign_count()).sum();
    eprintln!(
        "1 member settled at {:.1}s, 4 at {:.1}s, 2 at {:.1}s; {produced} messages, {rebalances} assignments seen",
        one.as_secs_f64(),
        four.as_secs_f64(),
        two.as_secs_f64(),
    );
}

#[test]
fn cooperative_sticky_moves_only_the_partitions_that_change_owner() {
    let broker = group_broker();
    broker.create_topic(TOPIC, PARTITIONS);
    let config = || {
        member_config(
            &broker,
            "sticky",
            &[("partition.assignment.strategy", "cooperative-sticky")],
        )
    };
    let first = Member::start(config(), &[TOPIC]);
    wait_for(
        "the first member to own everything",
        SETTLE_TIMEOUT,
        || first.state.assignment().len() == 12,
        || describe(&[&first]),
    );
    let second = Member::start(config(), &[TOPIC]);
    wait_for(
        "six partitions each",
        SETTLE_TIMEOUT,
        || {
            is_exact_split(
                &[first.state.assignment(), second.state.assignment()],
                PARTITIONS,
                Some(6),
            )
        },
        || describe(&[&first, &second]),
    );
    let third = Member::start(config(), &[TOPIC]);
    let all = [&first, &second, &third];
    wait_for(
        "four partitions each",
        SETTLE_TIMEOUT,
        || {
            is_exact_split(
                &all.iter()
                    .map(|member| member.state.assignment())
                    .collect::<Vec<_>>(),
                PARTITIONS,
                Some(4),
            )
        },
        || describe(&all),
    );
    // Incremental: the first member gave up exactly the partitions it lost
    // (6 to the second, 2 to the third), each once, never its whole
    // assignment; nothing it kept was ever revoked.
    let events = first.state.events();
    let revoked: Vec<i32> = events
        .iter()
        .filter_map(|event| match event {
            Event::Revoke(partitions) => Some(partitions.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let kept = first.state.assignment();
    assert_eq!(revoked.len(), 8, "events of the first member: {events:?}");
    assert!(
        revoked.iter().all(|partition| !kept.contains(partition)),
        "events: {events:?}"
    );
    let revoked_set: BTreeSet<i32> = revoked.iter().copied().collect();
    assert_eq!(
        revoked_set.len(),
        revoked.len(),
        "a partition revoked twice: {events:?}"
    );
    // The second member only ever gained partitions beyond the two it lost.
    let second_revoked: usize = second
        .state
        .events()
        .iter()
        .map(|event| match event {
            Event::Revoke(partitions) => partitions.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(
        second_revoked,
        2,
        "events of the second member: {:?}",
        second.state.events()
    );
    for member in all {
        assert!(member
            .state
            .tracker
            .commit_errors
            .lock()
            .expect("lock")
            .is_empty());
    }
}

#[test]
fn two_groups_on_one_topic_each_read_everything() {
    let broker = group_broker();
    broker.create_topic(TOPIC, 4);
    produce_all(&broker, TOPIC, &[], &messages(0));
    let a = Member::start(member_config(&broker, "audit", &[]), &[TOPIC]);
    let b1 = Member::start(member_config(&broker, "search", &[]), &[TOPIC]);
    let b2 = Member::start(member_config(&broker, "search", &[]), &[TOPIC]);
    wait_for(
        "both groups to read every message",
        SETTLE_TIMEOUT,
        || {
            a.state.processed_count() >= MESSAGES_PER_PHASE
                && b1.state.processed_count() + b2.state.processed_count() >= MESSAGES_PER_PHASE
        },
        || describe(&[&a, &b1, &b2]),
    );
    let count_values = |states: &[&Member]| -> BTreeSet<Vec<u8>> {
        states
            .iter()
            .flat_map(|member| member.state.processed.lock().expect("lock").clone())
            .map(|(_, _, value)| value)
            .collect()
    };
    assert_eq!(count_values(&[&a]).len(), MESSAGES_PER_PHASE);
    assert_eq!(count_values(&[&b1, &b2]).len(), MESSAGES_PER_PHASE);
    assert_eq!(a.state.processed_count(), MESSAGES_PER_PHASE);
    assert_eq!(
        b1.state.processed_count() + b2.state.processed_count(),
        MESSAGES_PER_PHASE
    );
}
