//! Shared pieces of the consumer-group scenarios (`groups_*.rs`): a broker
//! started with short group timers, consumers running `subscribe()` in
//! their own threads (or in a child process, for kill tests) that record
//! what they processed and every rebalance they saw.

// Each scenario file uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Message, TopicPartitionList};

use crate::common::{TestBroker, CLIENT_TIMEOUT};

/// Session timeout the scenarios' consumers use: short, so eviction tests
/// are quick, and long enough for a loaded 2-core machine.
pub const SESSION_TIMEOUT_MS: u64 = 3000;
/// Heartbeat interval: members learn of a rebalance within this.
pub const HEARTBEAT_INTERVAL_MS: u64 = 300;
/// librdkafka's max.poll.interval.ms, which is also the rebalance timeout.
pub const MAX_POLL_INTERVAL_MS: u64 = 20_000;
/// Most messages handled between two commits.
const BATCH_MESSAGES_MAX: usize = 500;

/// Starts a broker whose groups rebalance at once (no initial delay) and
/// accept short session timeouts.
pub fn group_broker() -> TestBroker {
    TestBroker::start_with(&[
        "--group-initial-rebalance-delay-ms",
        "0",
        "--group-min-session-timeout-ms",
        "1000",
    ])
}

/// A group consumer's config: manual offset stores and commits, earliest
/// reset, short timers.
pub fn member_config(broker: &TestBroker, group: &str, extra: &[(&str, &str)]) -> ClientConfig {
    let mut config = broker.client_config();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
        .set("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS.to_string())
        .set("max.poll.interval.ms", MAX_POLL_INTERVAL_MS.to_string());
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config
}

/// A KIP-848 group consumer's config (`group.protocol=consumer`): the same
/// manual offsets as [`member_config`], but no session timeout or
/// heartbeat interval, which librdkafka rejects in this mode (the broker's
/// `group_consumer_*` settings decide them).
pub fn consumer_protocol_config(
    broker: &TestBroker,
    group: &str,
    extra: &[(&str, &str)],
) -> ClientConfig {
    let mut config = broker.client_config();
    config
        .set("group.id", group)
        .set("group.protocol", "consumer")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("max.poll.interval.ms", MAX_POLL_INTERVAL_MS.to_string());
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config
}

/// A rebalance event as a member saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Assign(Vec<i32>),
    Revoke(Vec<i32>),
    Error(String),
}

fn partitions(list: &TopicPartitionList) -> Vec<i32> {
    let mut partitions: Vec<i32> = list
        .elements()
        .iter()
        .map(|element| element.partition())
        .collect();
    partitions.sort_unstable();
    partitions
}

/// Records rebalances; commits the consumed positions before partitions are
/// revoked, so nothing processed is handed to another member uncommitted.
#[derive(Clone, Default)]
pub struct Tracker {
    pub events: Arc<Mutex<Vec<Event>>>,
    pub commit_errors: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for Tracker {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        if std::env::var_os(CHILD_DEBUG).is_some() {
            eprintln!("rdkafka {level:?} {facility}: {message}");
        }
    }
}

impl ConsumerContext for Tracker {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let event = match rebalance {
            Rebalance::Assign(list) => Event::Assign(partitions(list)),
            Rebalance::Revoke(list) => {
                if list.count() > 0 {
                    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
                        // Nothing consumed since the last commit is fine.
                        if !error.to_string().contains("No offset stored") {
                            self.commit_errors
                                .lock()
                                .expect("lock")
                                .push(format!("on revoke: {error}"));
                        }
                    }
                }
                Event::Revoke(partitions(list))
            }
            Rebalance::Error(error) => Event::Error(error.to_string()),
        };
        self.events.lock().expect("lock").push(event);
    }
}

/// What a member did, shared with the test thread.
pub struct MemberState {
    /// (partition, offset, value) of every message processed.
    pub processed: Mutex<Vec<(i32, i64, Vec<u8>)>>,
    /// The member's assignment as of its last poll.
    pub assignment: Mutex<Vec<i32>>,
    pub tracker: Tracker,
    pub errors: Mutex<Vec<String>>,
}

impl MemberState {
    pub fn assignment(&self) -> Vec<i32> {
        self.assignment.lock().expect("lock").clone()
    }

    pub fn processed_count(&self) -> usize {
        self.processed.lock().expect("lock").len()
    }

    pub fn events(&self) -> Vec<Event> {
        self.tracker.events.lock().expect("lock").clone()
    }

    pub fn assign_count(&self) -> usize {
        self.events()
            .iter()
            .filter(|event| matches!(event, Event::Assign(_)))
            .count()
    }
}

/// A consumer polling in its own thread until stopped (then it closes,
/// leaving the group).
pub struct Member {
    pub state: Arc<MemberState>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Runs the consume–process–commit loop: each message is processed
/// (recorded) and its offset stored as it is polled; after each batch the
/// stored offsets are committed synchronously, and on a revoke they are
/// committed before the partitions go (`Tracker`). Offsets are stored by
/// hand (`enable.auto.offset.store=false`) so that what librdkafka commits
/// is exactly what was processed: messages it hands out while closing are
/// never recorded, so they must not be committed either. Returns when
/// `stop` is set.
pub fn run_member(
    consumer: &BaseConsumer<Tracker>,
    state: &MemberState,
    stop: &AtomicBool,
    mut on_assignment: impl FnMut(&[i32]),
) {
    let mut published: Option<Vec<i32>> = None;
    while !stop.load(Ordering::SeqCst) {
        let mut handled = 0;
        let mut wait = Duration::from_millis(100);
        while handled < BATCH_MESSAGES_MAX {
            match consumer.poll(wait) {
                Some(Ok(message)) => {
                    let payload = message.payload().unwrap_or_default().to_vec();
                    state.processed.lock().expect("lock").push((
                        message.partition(),
                        message.offset(),
                        payload,
                    ));
                    if let Err(error) = consumer.store_offset_from_message(&message) {
                        state
                            .errors
                            .lock()
                            .expect("lock")
                            .push(format!("storing an offset: {error}"));
                    }
                    handled += 1;
                }
                Some(Err(error)) => state.errors.lock().expect("lock").push(error.to_string()),
                None => break,
            }
            wait = Duration::ZERO;
        }
        if handled > 0 {
            // A rebalance inside the last polls may already have committed
            // (on revoke) and taken the partitions: nothing left to commit.
            if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
                if !error.to_string().contains("No offset stored") {
                    state
                        .tracker
                        .commit_errors
                        .lock()
                        .expect("lock")
                        .push(error.to_string());
                }
            }
        }
        let assignment = consumer
            .assignment()
            .map(|list| partitions(&list))
            .unwrap_or_default();
        if published.as_ref() != Some(&assignment) {
            on_assignment(&assignment);
            published = Some(assignment.clone());
        }
        *state.assignment.lock().expect("lock") = assignment;
    }
}

impl Member {
    pub fn start(config: ClientConfig, topics: &[&str]) -> Member {
        let tracker = Tracker::default();
        let state = Arc::new(MemberState {
            processed: Mutex::new(Vec::new()),
            assignment: Mutex::new(Vec::new()),
            tracker: tracker.clone(),
            errors: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let topics: Vec<String> = topics.iter().map(|topic| topic.to_string()).collect();
        let thread = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let consumer: BaseConsumer<Tracker> = config
                    .create_with_context(tracker)
                    .expect("creating a consumer");
                let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                consumer.subscribe(&names).expect("subscribe");
                run_member(&consumer, &state, &stop, |_| {});
                // Dropping the consumer closes it: LeaveGroup.
            })
        };
        Member {
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops polling and closes the consumer (it leaves the group).
    pub fn stop(mut self) -> Arc<MemberState> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("member thread");
        }
        Arc::clone(&self.state)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes, then
/// panics with `what` and the last `describe()`.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> bool,
    describe: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; {}",
            describe()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the assignments split `0..partitions` exactly: every partition
/// owned by exactly one member, and every member owning `expected_each`
/// (when given).
pub fn is_exact_split(
    assignments: &[Vec<i32>],
    partitions: i32,
    expected_each: Option<usize>,
) -> bool {
    let mut seen = BTreeSet::new();
    for assignment in assignments {
        if expected_each.is_some_and(|count| assignment.len() != count) {
            return false;
        }
        for partition in assignment {
            if !seen.insert(*partition) {
                return false;
            }
        }
    }
    seen == (0..partitions).collect()
}

// ---- consumers in child processes ---------------------------------------

/// Environment of a child consumer (see [`run_child_if_asked`]).
pub const CHILD_BOOTSTRAP: &str = "SLUICE_GROUPS_CHILD_BOOTSTRAP";
const CHILD_GROUP: &str = "SLUICE_GROUPS_CHILD_GROUP";
const CHILD_TOPIC: &str = "SLUICE_GROUPS_CHILD_TOPIC";
const CHILD_INSTANCE: &str = "SLUICE_GROUPS_CHILD_INSTANCE";
const CHILD_SESSION_MS: &str = "SLUICE_GROUPS_CHILD_SESSION_MS";
const CHILD_DEBUG: &str = "SLUICE_GROUPS_CHILD_DEBUG";
/// "consumer" for a KIP-848 child, else classic.
const CHILD_PROTOCOL: &str = "SLUICE_GROUPS_CHILD_PROTOCOL";
/// Lines a child prints when its assignment changes.
const ASSIGNED_PREFIX: &str = "SLUICE-ASSIGNED ";

/// The body of the `child_consumer` test: a no-op in a normal test run; in
/// a child started by [`ChildConsumer::start`] it consumes until killed and
/// prints its assignment on every change.
pub fn run_child_if_asked() {
    let Ok(bootstrap) = std::env::var(CHILD_BOOTSTRAP) else {
        return;
    };
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", env(CHILD_GROUP))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("max.poll.interval.ms", MAX_POLL_INTERVAL_MS.to_string())
        .set("log_level", "3");
    if env(CHILD_PROTOCOL) == "consumer" {
        config.set("group.protocol", "consumer");
    } else {
        config
            .set("session.timeout.ms", env(CHILD_SESSION_MS))
            .set("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS.to_string());
    }
    if let Ok(contexts) = std::env::var(CHILD_DEBUG) {
        config
            .set("debug", contexts)
            .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
    }
    let instance = env(CHILD_INSTANCE);
    if !instance.is_empty() {
        config.set("group.instance.id", instance);
    }
    let tracker = Tracker::default();
    let state = MemberState {
        processed: Mutex::new(Vec::new()),
        assignment: Mutex::new(Vec::new()),
        tracker: tracker.clone(),
        errors: Mutex::new(Vec::new()),
    };
    let consumer: BaseConsumer<Tracker> =
        config.create_with_context(tracker).expect("child consumer");
    consumer.subscribe(&[&env(CHILD_TOPIC)]).expect("subscribe");
    let stop = AtomicBool::new(false);
    run_member(&consumer, &state, &stop, |assignment| {
        let list: Vec<String> = assignment.iter().map(i32::to_string).collect();
        println!("{ASSIGNED_PREFIX}{}", list.join(","));
    });
}

/// A consumer in a child process (the test binary re-run with only the
/// `child_consumer` test), so it can be killed with SIGKILL.
pub struct ChildConsumer {
    child: Option<Child>,
    assignments: mpsc::Receiver<Vec<i32>>,
    latest: Mutex<Vec<i32>>,
}

impl ChildConsumer {
    pub fn start(
        broker: &TestBroker,
        group: &str,
        topic: &str,
        instance: Option<&str>,
        session_ms: u64,
    ) -> ChildConsumer {
        ChildConsumer::spawn(broker, group, topic, instance, session_ms, "classic")
    }

    /// A child with `group.protocol=consumer` (KIP-848).
    pub fn start_consumer_protocol(broker: &TestBroker, group: &str, topic: &str) -> ChildConsumer {
        ChildConsumer::spawn(broker, group, topic, None, 0, "consumer")
    }

    fn spawn(
        broker: &TestBroker,
        group: &str,
        topic: &str,
        instance: Option<&str>,
        session_ms: u64,
        protocol: &str,
    ) -> ChildConsumer {
        let exe = std::env::current_exe().expect("test binary path");
        let mut child = Command::new(exe)
            .args([
                "--exact",
                "child_consumer",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_BOOTSTRAP, broker.bootstrap())
            .env(CHILD_GROUP, group)
            .env(CHILD_TOPIC, topic)
            .env(CHILD_INSTANCE, instance.unwrap_or(""))
            .env(CHILD_SESSION_MS, session_ms.to_string())
            .env(CHILD_PROTOCOL, protocol)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // SLUICE_GROUPS_CHILD_DEBUG=cgrp (a librdkafka debug context)
            // shows the child's side of the protocol.
            .stderr(if std::env::var_os(CHILD_DEBUG).is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("starting the child consumer");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, assignments) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os(CHILD_DEBUG).is_some() {
                    eprintln!("child stdout: {line}");
                }
                // The test harness prints "test child_consumer ... " without
                // a newline first, so the marker may be mid-line.
                if let Some(list) = line
                    .find(ASSIGNED_PREFIX)
                    .map(|at| &line[at + ASSIGNED_PREFIX.len()..])
                {
                    let parsed = list
                        .split(',')
                        .filter(|part| !part.is_empty())
                        .filter_map(|part| part.parse().ok())
                        .collect();
                    if sender.send(parsed).is_err() {
                        break;
                    }
                }
            }
        });
        ChildConsumer {
            child: Some(child),
            assignments,
            latest: Mutex::new(Vec::new()),
        }
    }

    /// Takes every assignment change reported so far; returns the latest.
    pub fn assignment(&self) -> Vec<i32> {
        let mut latest = self.latest.lock().expect("lock");
        while let Ok(assignment) = self.assignments.try_recv() {
            *latest = assignment;
        }
        latest.clone()
    }

    /// SIGKILL: the consumer vanishes without leaving the group.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildConsumer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Queries the group through librdkafka's ListGroups + DescribeGroups.
pub fn describe_group(broker: &TestBroker, group: &str) -> (String, String, usize) {
    let consumer: BaseConsumer = broker.client_config().create().expect("admin consumer");
    let list = consumer
        .fetch_group_list(Some(group), CLIENT_TIMEOUT)
        .expect("fetch_group_list");
    let info = list
        .groups()
        .iter()
        .find(|info| info.name() == group)
        .expect("the group is listed");
    (
        info.state().to_string(),
        info.protocol().to_string(),
        info.members().len(),
    )
}
