//! The fault harness's consumer-group workload: members join, leave and
//! crash while they commit.
//!
//! Members are processes of their own, so that a crash is a real `kill -9`:
//! the test binary runs itself again with only [`MEMBER_TEST`], which
//! subscribes to the keyed-append topic in one classic group, reads, and
//! commits what it read synchronously now and then (and when its
//! partitions are revoked). It prints one line per operation, stamped with
//! CLOCK_MONOTONIC, which one machine shares across processes. A
//! controller thread keeps two to four members alive, now and then
//! starting one, stopping one with SIGTERM (it commits, closes and so
//! leaves the group) or killing one with SIGKILL, on a seeded schedule of
//! its own. At the end the members stop and the group's committed offsets
//! are read back.
//!
//! The history gets each member's reads (`Op::Read` as a reader of its own,
//! with an `Op::Seek` where an assignment starts, and `Op::Processed` for
//! the group) and each commit it was told succeeded (`Op::Committed`),
//! ordered by the moment each member saw it: a member takes the time of an
//! acknowledgement before it polls again, so before it can rejoin and let
//! another member take its partitions. The checker then finds commits
//! going back, records the group committed past without any member reading
//! them, and a member's offsets going back within one assignment; the
//! harness's progress check finds a group that stopped committing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sluice_perf::history::{check, Anomaly, AnomalyKind, Isolation, Op, SendId};

use super::transform::committed_offsets_lost;
use super::{
    between, cluster_config, parse_value, position_refused, AssignSpacing, History,
    ERRORS_KEPT_MAX, METADATA_POLL_INTERVAL, METADATA_REQUEST_TIMEOUT, PARTITIONS,
    PROGRESS_POLL_INTERVAL, READ_POLL_TIMEOUT, TOPIC,
};
use crate::common::{wait_for, Rng, TestBroker, CLIENT_TIMEOUT};

/// The group, as the brokers and as the history name it.
const GROUP_ID: &str = "sluice-chaos-group";
pub const GROUP: u32 = 2;
const _: () = assert!(GROUP != super::transform::TRANSFORM_GROUP);
/// Member `n` reads as reader `MEMBER_READER_BASE + n`, apart from the
/// harness's own readers.
const MEMBER_READER_BASE: u32 = 1000;

/// The test that is a member process, and the environment variables that
/// configure it: without them it refuses to run.
pub const MEMBER_TEST: &str = "chaos_group_member";
const MEMBER_ENV: &str = "SLUICE_CHAOS_MEMBER";
const MEMBER_BOOTSTRAP_ENV: &str = "SLUICE_CHAOS_MEMBER_BOOTSTRAP";
/// Starts every line a member prints for the harness (libtest prints its
/// own lines too).
const LINE_PREFIX: &str = "sluice-member";

/// Members alive at once: at least two, so that partitions move between
/// members, and few enough for a small machine.
const MEMBERS_MIN: usize = 2;
const MEMBERS_MAX: usize = 4;
const MEMBERS_AT_START: usize = 3;
const _: () = assert!(MEMBERS_MIN <= MEMBERS_AT_START && MEMBERS_AT_START <= MEMBERS_MAX);
/// Between two of the controller's joins, leaves or crashes.
const MEMBER_PAUSE_MIN: Duration = Duration::from_secs(2);
const MEMBER_PAUSE_MAX: Duration = Duration::from_secs(6);
/// How often the controller looks at its members (exited ones are
/// replaced) and at its phase.
const CONTROLLER_TICK: Duration = Duration::from_millis(100);
/// The controller's random stream, apart from the nemesis's.
const MEMBERS_SEED: u64 = 0x5EED_6E0B_0000_0003;

/// The brokers' smallest allowed session timeout: a crashed member's
/// partitions wait this long before the group moves them.
const MEMBER_SESSION_TIMEOUT: Duration = Duration::from_secs(6);
const MEMBER_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// librdkafka's `max.poll.interval.ms`, also the rebalance timeout: past
/// the longest a member blocks in a commit during a fault.
const MEMBER_POLL_INTERVAL_MAX: Duration = Duration::from_secs(60);
const _: () =
    assert!(MEMBER_HEARTBEAT_INTERVAL.as_millis() * 3 <= MEMBER_SESSION_TIMEOUT.as_millis());
const _: () = assert!(MEMBER_SESSION_TIMEOUT.as_millis() < MEMBER_POLL_INTERVAL_MAX.as_millis());
/// Between a member's commits.
const COMMIT_INTERVAL: Duration = Duration::from_millis(300);
/// For a member told to leave to commit, close and exit; then it is killed.
const MEMBER_LEAVE_TIMEOUT: Duration = Duration::from_secs(30);
/// After the producers stopped, for the group to commit every acknowledged
/// record: a group that does not is stuck with data available.
const GROUP_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

// ---- the member process ---------------------------------------------------------

/// Set by SIGTERM: the member commits, closes its consumer and exits.
static LEAVING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_signal: libc::c_int) {
    LEAVING.store(true, Ordering::Relaxed);
}

/// Nanoseconds of CLOCK_MONOTONIC: one clock for every process on the
/// machine, so members' lines can be ordered against each other.
fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    assert_eq!(result, 0, "CLOCK_MONOTONIC is always there on Linux");
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// One line for the harness. A closed pipe (the harness gone) is ignored:
/// the member is about to be killed then.
fn say(what: std::fmt::Arguments<'_>) {
    let _ = writeln!(
        std::io::stdout().lock(),
        "{LINE_PREFIX} {} {what}",
        monotonic_ns()
    );
}

/// What a member holds: its assignment, where it has read up to, and what
/// it committed last.
#[derive(Default)]
struct MemberState {
    assigned: BTreeSet<i32>,
    /// Assigned partitions not read from since the assignment: the first
    /// read of each is where the member was made to start.
    fresh: BTreeSet<i32>,
    /// The offset after the last record read, by assigned partition.
    positions: BTreeMap<i32, i64>,
    committed: BTreeMap<i32, i64>,
}

/// The member's consumer context: it commits before its partitions are
/// revoked, and forgets them, so that it never commits for a partition
/// another member may own by then.
struct MemberContext {
    state: Arc<Mutex<MemberState>>,
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            commit_positions(consumer, &self.state);
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.assigned.clear();
            state.fresh.clear();
            state.positions.clear();
            state.committed.clear();
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.assigned = partitions
                .elements()
                .iter()
                .filter(|element| element.topic() == TOPIC)
                .map(|element| element.partition())
                .collect();
            state.fresh = state.assigned.clone();
            say(format_args!("assigned {:?}", state.assigned));
        }
    }
}

/// Commits the positions read since the last commit, synchronously, and
/// says so once the group coordinator acknowledged them: the time is taken
/// before the member polls again.
fn commit_positions(consumer: &BaseConsumer<MemberContext>, state: &Mutex<MemberState>) {
    let positions = {
        let state = state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.positions == state.committed {
            return;
        }
        state.positions.clone()
    };
    let mut offsets = TopicPartitionList::new();
    for (partition, offset) in &positions {
        if let Err(error) = offsets.add_partition_offset(TOPIC, *partition, Offset::Offset(*offset))
        {
            say(format_args!("error adding {partition}: {error}"));
            return;
        }
    }
    // A commit with any partition refused fails as a whole (librdkafka
    // returns the partition's error): only a full success is recorded.
    match consumer.commit(&offsets, CommitMode::Sync) {
        Ok(()) => {
            let list: Vec<String> = positions
                .iter()
                .map(|(partition, offset)| format!("{partition}={offset}"))
                .collect();
            say(format_args!("committed {}", list.join(",")));
            state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .committed = positions;
        }
        Err(error) => say(format_args!("commit-failed {error}")),
    }
}

/// Records a read: where an assignment started, then the record.
fn read_one(state: &Mutex<MemberState>, message: &impl Message) {
    let (partition, offset) = (message.partition(), message.offset());
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    if state.fresh.remove(&partition) {
        say(format_args!("from {partition} {offset}"));
    }
    match message.payload().and_then(parse_value) {
        Some(send) => say(format_args!(
            "read {partition} {offset} {} {}",
            send.producer, send.sequence
        )),
        None => say(format_args!(
            "foreign {partition} {offset} {:?}",
            message.payload().map(String::from_utf8_lossy)
        )),
    }
    if state.assigned.contains(&partition) {
        state.positions.insert(partition, offset + 1);
    }
}

/// Assigns the member's partitions again, so that librdkafka fetches their
/// committed offsets again: each starts over from there, recorded as a
/// seek before its next read.
fn assign_again(consumer: &BaseConsumer<MemberContext>, state: &Mutex<MemberState>) {
    let assignment = match consumer.assignment() {
        Ok(assignment) => assignment,
        Err(error) => return say(format_args!("error reading the assignment: {error}")),
    };
    {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        state.fresh = state.assigned.clone();
    }
    if let Err(error) = consumer.assign(&assignment) {
        say(format_args!("error assigning again: {error}"));
    }
}

/// The body of [`MEMBER_TEST`]: one member, until SIGTERM (or a position
/// the brokers refuse, after which a new member takes over).
pub fn member_main() {
    let setting = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{MEMBER_TEST} is a group member process that the chaos harness starts with \
                 its configuration in {MEMBER_ENV} and {MEMBER_BOOTSTRAP_ENV}; {name} is not set"
            )
        })
    };
    let member = setting(MEMBER_ENV);
    let bootstrap = setting(MEMBER_BOOTSTRAP_ENV);
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGTERM,
            on_sigterm as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    let state = Arc::new(Mutex::new(MemberState::default()));
    let consumer: BaseConsumer<MemberContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("client.id", format!("sluice-chaos-member-{member}"))
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "30000")
        .set("topic.metadata.refresh.interval.ms", "5000")
        .set("group.id", GROUP_ID)
        // Eager: every partition is revoked before any is assigned again.
        .set("partition.assignment.strategy", "range")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        // The harness committed every partition before the first member:
        // a position is only refused when the brokers lost track of it,
        // which a silent reset would hide.
        .set("auto.offset.reset", "error")
        .set("isolation.level", "read_uncommitted")
        .set(
            "session.timeout.ms",
            MEMBER_SESSION_TIMEOUT.as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            MEMBER_HEARTBEAT_INTERVAL.as_millis().to_string(),
        )
        .set(
            "max.poll.interval.ms",
            MEMBER_POLL_INTERVAL_MAX.as_millis().to_string(),
        )
        .create_with_context(MemberContext {
            state: Arc::clone(&state),
        })
        .expect("creating a group member");
    consumer.subscribe(&[TOPIC]).expect("subscribing");
    let mut next_commit = Instant::now() + COMMIT_INTERVAL;
    let mut again = AssignSpacing::default();
    while !LEAVING.load(Ordering::Relaxed) {
        match consumer.poll(READ_POLL_TIMEOUT) {
            None => {}
            Some(Ok(message)) => read_one(&state, &message),
            Some(Err(error)) if position_refused(&error) => {
                say(format_args!("refused {error}"));
                break;
            }
            Some(Err(error)) => {
                say(format_args!("error {error}"));
                again.want(committed_offsets_lost(&error));
            }
        }
        if again.due() {
            assign_again(&consumer, &state);
        }
        if Instant::now() >= next_commit {
            commit_positions(&consumer, &state);
            next_commit = Instant::now() + COMMIT_INTERVAL;
        }
    }
    commit_positions(&consumer, &state);
    // Closing revokes the partitions (committing again if anything was
    // read since) and leaves the group.
    drop(consumer);
    say(format_args!("left"));
}

// ---- what members say -----------------------------------------------------------

/// One line of a member, parsed.
#[derive(Debug, PartialEq, Eq)]
enum Said {
    /// The member read its first record of an assignment here.
    From {
        partition: i32,
        offset: i64,
    },
    Read {
        partition: i32,
        offset: i64,
        send: SendId,
    },
    /// A value no producer of the test sent.
    Foreign(String),
    Committed(Vec<(i32, i64)>),
    CommitFailed(String),
    Refused(String),
    Error(String),
    Assigned,
    Left,
}

/// A member's line: `None` for a line not meant for the harness.
fn parse_line(line: &str) -> Option<Result<(u64, Said), String>> {
    let rest = line.strip_prefix(LINE_PREFIX)?.strip_prefix(' ')?;
    Some(parse_said(rest).ok_or_else(|| line.to_string()))
}

fn parse_said(rest: &str) -> Option<(u64, Said)> {
    let (at, rest) = rest.split_once(' ')?;
    let at = at.parse().ok()?;
    let (what, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let mut words = rest.split(' ');
    let mut number = || words.next()?.parse::<i64>().ok();
    let said = match what {
        "from" => Said::From {
            partition: i32::try_from(number()?).ok()?,
            offset: number()?,
        },
        "read" => Said::Read {
            partition: i32::try_from(number()?).ok()?,
            offset: number()?,
            send: SendId {
                producer: u32::try_from(number()?).ok()?,
                sequence: u64::try_from(number()?).ok()?,
            },
        },
        "foreign" => Said::Foreign(rest.to_string()),
        "committed" => Said::Committed(
            rest.split(',')
                .map(|pair| {
                    let (partition, offset) = pair.split_once('=')?;
                    Some((partition.parse().ok()?, offset.parse().ok()?))
                })
                .collect::<Option<Vec<_>>>()?,
        ),
        "commit-failed" => Said::CommitFailed(rest.to_string()),
        "refused" => Said::Refused(rest.to_string()),
        "error" => Said::Error(rest.to_string()),
        "assigned" => Said::Assigned,
        "left" => Said::Left,
        _ => return None,
    };
    Some((at, said))
}

/// The operations a member's line records.
fn ops_of(member: u32, said: &Said) -> Vec<Op> {
    let reader = MEMBER_READER_BASE + member;
    match said {
        Said::From { partition, offset } => vec![Op::Seek {
            reader,
            partition: *partition,
            offset: *offset,
        }],
        Said::Read {
            partition,
            offset,
            send,
        } => vec![
            Op::Read {
                reader,
                isolation: Isolation::ReadUncommitted,
                partition: *partition,
                offset: *offset,
                send: *send,
            },
            Op::Processed {
                group: GROUP,
                partition: *partition,
                offset: *offset,
                output: None,
            },
        ],
        Said::Committed(offsets) => offsets
            .iter()
            .map(|(partition, offset)| Op::Committed {
                group: GROUP,
                partition: *partition,
                offset: *offset,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Operations stamped with a CLOCK_MONOTONIC time, in the order each
/// process recorded them, into one history: by time, a process's own
/// operations keeping their order (its times never go back).
fn merged(mut timed: Vec<(u64, Op)>) -> Vec<Op> {
    timed.sort_by_key(|(at, _)| *at);
    timed.into_iter().map(|(_, op)| op).collect()
}

// ---- the harness's side -----------------------------------------------------------

/// What the members did, as they said it.
#[derive(Debug, Default)]
pub struct GroupCounts {
    pub started: u64,
    /// Stopped with SIGTERM and gone by themselves.
    pub left: u64,
    /// Killed with SIGKILL on purpose.
    pub killed: u64,
    /// Exited on their own: a refused position.
    pub refused: u64,
    pub reads: u64,
    pub commits: u64,
    pub commit_failures: u64,
    pub errors: u64,
    /// The first few errors and commit failures, for the report.
    pub kept_errors: Vec<String>,
    /// Members that failed (exited with an error, or had to be killed
    /// after SIGTERM), and lines that could not be read: each a harness
    /// or client problem to look at, never a pass.
    pub failures: Vec<String>,
}

impl GroupCounts {
    fn keep_error(&mut self, error: String) {
        self.errors += 1;
        if self.kept_errors.len() < ERRORS_KEPT_MAX {
            self.kept_errors.push(error);
        }
    }

    /// Member errors are no anomaly, but worth seeing.
    pub fn report_errors(&self) {
        if !self.kept_errors.is_empty() {
            eprintln!(
                "chaos: {} group member errors, e.g.:\n  {}",
                self.errors,
                self.kept_errors.join("\n  ")
            );
        }
    }
}

/// What the controller should do with its members.
const CHURN: u8 = 0;
/// Keep the members alive (exited ones replaced), no more joins, leaves
/// or crashes: the group catches up.
const HOLD: u8 = 1;
/// Stop every member with SIGTERM, then end.
const FINISH: u8 = 2;
/// Kill every member and end (the test failed).
const ABANDON: u8 = 3;

/// What the controller and the members' line readers share.
struct Shared {
    /// The brokers as they listen now, for members started later.
    bootstrap: Mutex<String>,
    phase: AtomicU8,
    /// Every operation the members recorded, with its time.
    ops: Mutex<Vec<(u64, Op)>>,
    /// The highest acknowledged commit per partition, for the progress
    /// checks.
    committed: Mutex<Vec<i64>>,
    /// When the controller was started, and whether the group has
    /// committed past offset 0 in every partition since: how long a new
    /// group takes to get going is a cost of every run.
    started: Instant,
    under_way: AtomicBool,
    counts: Mutex<GroupCounts>,
    /// The threads reading the members' lines, until their processes end.
    line_readers: Mutex<Vec<thread::JoinHandle<()>>>,
}

impl Shared {
    fn counts(&self) -> std::sync::MutexGuard<'_, GroupCounts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A member process, killed when dropped.
struct Member {
    number: u32,
    child: Child,
}

impl Drop for Member {
    fn drop(&mut self) {
        // Sends SIGKILL only if the process has not been reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The group workload: the member controller on a thread of its own.
pub struct Groups {
    shared: Arc<Shared>,
    controller: Option<thread::JoinHandle<()>>,
    /// A client config for the harness's own group requests (bootstrapped
    /// from `Shared::bootstrap` when used).
    config: ClientConfig,
}

impl Groups {
    /// Commits offset 0 of every partition for the group (so that members
    /// start there), then starts the controller and its first members.
    pub fn start(brokers: &[TestBroker], seed: u64) -> Groups {
        let config = cluster_config(brokers);
        let consumer: BaseConsumer = group_client(&config);
        let mut offsets = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            offsets
                .add_partition_offset(TOPIC, partition, Offset::Offset(0))
                .expect("adding a partition");
        }
        wait_for(
            "the group's first commit",
            CLIENT_TIMEOUT,
            METADATA_POLL_INTERVAL,
            || {
                consumer
                    .commit(&offsets, CommitMode::Sync)
                    .map_err(|error| error.to_string())
            },
        );
        let at = monotonic_ns();
        let first: Vec<(u64, Op)> = (0..PARTITIONS)
            .map(|partition| {
                (
                    at,
                    Op::Committed {
                        group: GROUP,
                        partition,
                        offset: 0,
                    },
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            bootstrap: Mutex::new(super::cluster_bootstrap(brokers)),
            phase: AtomicU8::new(CHURN),
            ops: Mutex::new(first),
            committed: Mutex::new(vec![0; PARTITIONS as usize]),
            started: Instant::now(),
            under_way: AtomicBool::new(false),
            counts: Mutex::default(),
            line_readers: Mutex::default(),
        });
        // The controller starts every member: a member dies with the
        // thread that started it (PR_SET_PDEATHSIG), so one thread owns
        // them all until the end.
        let controller = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || control(&shared, seed))
        };
        Groups {
            shared,
            controller: Some(controller),
            config,
        }
    }

    /// Follows the brokers to where they listen now (a restarted broker
    /// listens on a new port).
    pub fn follow(&self, brokers: &[TestBroker]) {
        let bootstrap = super::cluster_bootstrap(brokers);
        *self
            .shared
            .bootstrap
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = bootstrap;
    }

    /// The highest acknowledged commit of every partition so far.
    pub fn committed(&self) -> Vec<i64> {
        self.shared
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until the group has committed every acknowledged record of
    /// the keyed append, stops the members, reads the group's committed
    /// offsets, and appends what the members recorded, then those
    /// offsets, to the history.
    pub fn finish(&mut self, history: &History) -> GroupCounts {
        let mut acknowledged_ends = vec![0; PARTITIONS as usize];
        for op in history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            if let Op::Acked {
                partition, offset, ..
            } = op
            {
                if let Some(end) = usize::try_from(*partition)
                    .ok()
                    .and_then(|partition| acknowledged_ends.get_mut(partition))
                {
                    *end = (*end).max(offset + 1);
                }
            }
        }
        self.shared.phase.store(HOLD, Ordering::Relaxed);
        let began = Instant::now();
        wait_for(
            "the group to commit every acknowledged record (a group stuck with data available)",
            GROUP_CATCH_UP_TIMEOUT,
            PROGRESS_POLL_INTERVAL,
            || {
                let committed = self.committed();
                if committed
                    .iter()
                    .zip(&acknowledged_ends)
                    .all(|(c, end)| c >= end)
                {
                    Ok(())
                } else {
                    Err(format!(
                        "committed {committed:?}, acknowledged ends {acknowledged_ends:?}"
                    ))
                }
            },
        );
        let caught_up = began.elapsed();
        self.shared.phase.store(FINISH, Ordering::Relaxed);
        if let Some(controller) = self.controller.take() {
            assert!(controller.join().is_ok(), "the member controller panicked");
        }
        eprintln!(
            "chaos: the group had committed every acknowledged record {} ms after the \
             producers' flush; its members were gone {} ms later",
            caught_up.as_millis(),
            (began.elapsed() - caught_up).as_millis()
        );
        let line_readers = std::mem::take(
            &mut *self
                .shared
                .line_readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for line_reader in line_readers {
            assert!(
                line_reader.join().is_ok(),
                "a member's line reader panicked"
            );
        }
        let final_offsets = self.final_offsets();
        let timed = std::mem::take(
            &mut *self
                .shared
                .ops
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let mut history = history.lock().unwrap_or_else(PoisonError::into_inner);
        history.extend(merged(timed));
        history.extend(final_offsets);
        let counts = std::mem::take(&mut *self.shared.counts());
        assert!(
            counts.failures.is_empty(),
            "group members failed:\n  {}",
            counts.failures.join("\n  ")
        );
        counts
    }

    /// The group's committed offsets once no member is left, as
    /// `Op::Committed`.
    fn final_offsets(&self) -> Vec<Op> {
        let mut config = self.config.clone();
        config.set(
            "bootstrap.servers",
            self.shared
                .bootstrap
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_str(),
        );
        let consumer: BaseConsumer = group_client(&config);
        let mut partitions = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            partitions.add_partition(TOPIC, partition);
        }
        let committed = wait_for(
            "the group's committed offsets",
            CLIENT_TIMEOUT,
            METADATA_POLL_INTERVAL,
            || {
                consumer
                    .committed_offsets(partitions.clone(), METADATA_REQUEST_TIMEOUT)
                    .map_err(|error| error.to_string())
            },
        );
        (0..PARTITIONS)
            .map(|partition| {
                let offset = committed
                    .find_partition(TOPIC, partition)
                    .map(|element| element.offset());
                match offset {
                    Some(Offset::Offset(offset)) => Op::Committed {
                        group: GROUP,
                        partition,
                        offset,
                    },
                    other => panic!(
                        "the group has no committed offset for {TOPIC}-{partition} ({other:?}), \
                         though 0 was committed before the first member started"
                    ),
                }
            })
            .collect()
    }
}

impl Drop for Groups {
    fn drop(&mut self) {
        // Kills every member (the controller owns them) and waits for
        // that: no member outlives the test.
        self.shared.phase.store(ABANDON, Ordering::Relaxed);
        if let Some(controller) = self.controller.take() {
            let _ = controller.join();
        }
    }
}

/// A client of the group that never joins it: commits and reads offsets
/// as the group's admin would.
fn group_client(config: &ClientConfig) -> BaseConsumer {
    config
        .clone()
        .set("group.id", GROUP_ID)
        .set("enable.auto.commit", "false")
        .create()
        .expect("creating a client of the group")
}

/// What the controller does next.
#[derive(Clone, Copy)]
enum Change {
    Join,
    Leave,
    Crash,
}

/// The member controller: starts the first members, then now and then
/// one joins, leaves or crashes, keeping between `MEMBERS_MIN` and
/// `MEMBERS_MAX` alive, until told to finish.
fn control(shared: &Arc<Shared>, seed: u64) {
    let mut rng = Rng::new(seed ^ MEMBERS_SEED);
    let mut next_number = 1..;
    let mut members: Vec<Member> = next_number
        .by_ref()
        .take(MEMBERS_AT_START)
        .map(|number| start_member(shared, number))
        .collect();
    let mut next_change = Instant::now() + between(&mut rng, MEMBER_PAUSE_MIN, MEMBER_PAUSE_MAX);
    loop {
        match shared.phase.load(Ordering::Relaxed) {
            ABANDON => return,
            FINISH => return leave(shared, members),
            _ => {}
        }
        forget_exited(shared, &mut members, |counts| counts.refused += 1);
        while members.len() < MEMBERS_MIN {
            let number = next_number.next().expect("member numbers do not run out");
            members.push(start_member(shared, number));
        }
        if shared.phase.load(Ordering::Relaxed) == CHURN && Instant::now() >= next_change {
            let change = match rng.below(3) {
                0 => Change::Join,
                1 => Change::Leave,
                _ => Change::Crash,
            };
            let change = match change {
                Change::Leave | Change::Crash if members.len() <= MEMBERS_MIN => Change::Join,
                Change::Join if members.len() >= MEMBERS_MAX => Change::Leave,
                change => change,
            };
            match change {
                Change::Join => {
                    let number = next_number.next().expect("member numbers do not run out");
                    members.push(start_member(shared, number));
                }
                Change::Leave => {
                    let member = members.remove(rng.below(members.len() as u64) as usize);
                    leave(shared, vec![member]);
                }
                Change::Crash => {
                    // Dropping a member kills it with SIGKILL.
                    drop(members.remove(rng.below(members.len() as u64) as usize));
                    shared.counts().killed += 1;
                }
            }
            next_change = Instant::now() + between(&mut rng, MEMBER_PAUSE_MIN, MEMBER_PAUSE_MAX);
        }
        thread::sleep(CONTROLLER_TICK);
    }
}

/// Counts and forgets the members that have exited: a clean exit with
/// `clean` (a member that left when told to, or that stopped by itself on
/// a refused position), any other as a failure.
fn forget_exited(shared: &Shared, members: &mut Vec<Member>, clean: fn(&mut GroupCounts)) {
    members.retain_mut(|member| {
        let failure = match member.child.try_wait() {
            Ok(None) => return true,
            Ok(Some(status)) if status.success() => {
                clean(&mut shared.counts());
                return false;
            }
            Ok(Some(status)) => format!("member {} exited: {status}", member.number),
            Err(error) => format!("member {}: waiting: {error}", member.number),
        };
        shared.counts().failures.push(failure);
        false
    });
}

/// SIGTERM to each member, then a wait for them to leave the group and
/// exit; one that does not in time is killed (when dropped) and counted
/// as failed.
fn leave(shared: &Shared, mut members: Vec<Member>) {
    for member in &members {
        // SAFETY: signalling our own child, which has not been reaped yet
        // (so the pid cannot have been reused).
        unsafe {
            libc::kill(member.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + MEMBER_LEAVE_TIMEOUT;
    while !members.is_empty()
        && Instant::now() < deadline
        && shared.phase.load(Ordering::Relaxed) != ABANDON
    {
        forget_exited(shared, &mut members, |counts| counts.left += 1);
        thread::sleep(CONTROLLER_TICK);
    }
    if shared.phase.load(Ordering::Relaxed) != ABANDON {
        for member in &members {
            shared.counts().failures.push(format!(
                "member {} did not leave within {MEMBER_LEAVE_TIMEOUT:?} of SIGTERM",
                member.number
            ));
        }
    }
}

/// Starts member `number` (this test binary running only [`MEMBER_TEST`])
/// and a thread that records its lines.
fn start_member(shared: &Arc<Shared>, number: u32) -> Member {
    let bootstrap = shared
        .bootstrap
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let executable = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new(executable);
    command
        .args([MEMBER_TEST, "--exact", "--include-ignored", "--nocapture"])
        .env(MEMBER_ENV, number.to_string())
        .env(MEMBER_BOOTSTRAP_ENV, bootstrap)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // If the controller thread ends without stopping it (the test process
    // killed), the kernel kills the member.
    // SAFETY: prctl is an async-signal-safe system call touching no parent
    // state.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = command.spawn().expect("starting a group member");
    let stdout = child.stdout.take().expect("stdout is piped");
    let line_reader = {
        let shared = Arc::clone(shared);
        thread::spawn(move || record_lines(&shared, number, stdout))
    };
    shared
        .line_readers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(line_reader);
    shared.counts().started += 1;
    Member { number, child }
}

/// Records a member's lines until its process ends.
fn record_lines(shared: &Shared, member: u32, stdout: std::process::ChildStdout) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let (at, said) = match parse_line(&line) {
            None => continue,
            Some(Ok(parsed)) => parsed,
            Some(Err(line)) => {
                shared
                    .counts()
                    .failures
                    .push(format!("member {member}: unreadable line: {line}"));
                continue;
            }
        };
        match &said {
            Said::Read { .. } => shared.counts().reads += 1,
            Said::Committed(offsets) => {
                shared.counts().commits += 1;
                let mut committed = shared
                    .committed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                for (partition, offset) in offsets {
                    if let Some(highest) = usize::try_from(*partition)
                        .ok()
                        .and_then(|partition| committed.get_mut(partition))
                    {
                        *highest = (*highest).max(*offset);
                    }
                }
                if committed.iter().all(|offset| *offset > 0)
                    && !shared.under_way.swap(true, Ordering::Relaxed)
                {
                    eprintln!(
                        "chaos: the group committed in every partition {} ms after its first \
                         members were started",
                        shared.started.elapsed().as_millis()
                    );
                }
            }
            Said::Foreign(value) => shared.counts().failures.push(format!(
                "member {member} read a value no producer of this test sent: {value}"
            )),
            Said::CommitFailed(error) => {
                let mut counts = shared.counts();
                counts.commit_failures += 1;
                counts.keep_error(format!("member {member}: commit failed: {error}"));
            }
            Said::Refused(error) => shared
                .counts()
                .keep_error(format!("member {member}: position refused: {error}")),
            Said::Error(error) => shared
                .counts()
                .keep_error(format!("member {member}: {error}")),
            Said::From { .. } | Said::Assigned | Said::Left => {}
        }
        let ops = ops_of(member, &said);
        if !ops.is_empty() {
            let mut timed = shared.ops.lock().unwrap_or_else(PoisonError::into_inner);
            timed.extend(ops.into_iter().map(|op| (at, op)));
        }
    }
}

// ---- planted anomalies ------------------------------------------------------------

/// The group's part of a clean recorded history is judged as the checker
/// should: a commit planted below the group's last one is caught going
/// backwards, and a record below it taken out of every member's reads is
/// caught as skipped.
pub fn plant_anomalies(history: &[Op]) {
    let (last_commit_at, partition, committed) = history
        .iter()
        .enumerate()
        .rev()
        .find_map(|(at, op)| match op {
            Op::Committed {
                group: GROUP,
                partition,
                offset,
            } if *offset > 0 => Some((at, *partition, *offset)),
            _ => None,
        })
        .expect("the group committed past a record");
    let mut broken = history.to_vec();
    broken.insert(
        last_commit_at + 1,
        Op::Committed {
            group: GROUP,
            partition,
            offset: committed - 1,
        },
    );
    assert_eq!(
        check(&broken),
        vec![Anomaly {
            kind: AnomalyKind::CommitBackwards,
            ops: vec![last_commit_at, last_commit_at + 1],
        }],
        "a commit of {partition}/{} planted after the group's last, {committed}",
        committed - 1
    );

    // Every member's processing of the last record below the commit gone,
    // as if the group had committed past it unread.
    let skipped = committed - 1;
    let broken: Vec<Op> = history
        .iter()
        .filter(|op| {
            !matches!(op, Op::Processed { group: GROUP, partition: p, offset: o, .. }
                if (*p, *o) == (partition, skipped))
        })
        .cloned()
        .collect();
    let commit_at = broken
        .iter()
        .rposition(
            |op| matches!(op, Op::Committed { group: GROUP, partition: p, .. } if *p == partition),
        )
        .expect("the group's last commit is kept");
    let done_at = broken
        .iter()
        .rposition(|op| {
            matches!(
                op,
                Op::FinalReadDone {
                    isolation: Isolation::ReadUncommitted,
                    ..
                }
            )
        })
        .expect("the history ends with a final read");
    assert_eq!(
        check(&broken),
        vec![Anomaly {
            kind: AnomalyKind::Skipped,
            ops: vec![commit_at, done_at],
        }],
        "{partition}/{skipped} taken out of the group's reads"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_line_parses_into_operations() {
        let line = format!("{LINE_PREFIX} 17 read 3 41 2 99");
        let (at, said) = parse_line(&line).expect("a member line").expect("readable");
        assert_eq!(at, 17);
        let send = SendId {
            producer: 2,
            sequence: 99,
        };
        assert_eq!(
            said,
            Said::Read {
                partition: 3,
                offset: 41,
                send
            }
        );
        assert_eq!(ops_of(5, &said).len(), 2);
        let line = format!("{LINE_PREFIX} 18 committed 0=4,3=42");
        let (_, said) = parse_line(&line).expect("a member line").expect("readable");
        assert_eq!(said, Said::Committed(vec![(0, 4), (3, 42)]));
        assert!(parse_line("test chaos_group_member ... ok").is_none());
        assert!(parse_line(&format!("{LINE_PREFIX} 19 committed 0=x")).is_some_and(|r| r.is_err()));
    }

    /// Two members' commits of one partition, each with the time its
    /// member saw the acknowledgement, in the order their lines arrived.
    fn commits(first: (u64, i64), second: (u64, i64)) -> Vec<(u64, Op)> {
        [first, second]
            .into_iter()
            .map(|(at, offset)| {
                (
                    at,
                    Op::Committed {
                        group: GROUP,
                        partition: 0,
                        offset,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn commits_of_several_members_are_ordered_by_their_time() {
        // Member 2's commit of 20 arrived first, but member 1 saw its 10
        // acknowledged earlier: in time order the offsets go forward.
        assert_eq!(check(&merged(commits((200, 20), (100, 10)))), Vec::new());
        // Acknowledged 10 after 20 is a commit going back, whichever line
        // arrived first.
        let found: Vec<AnomalyKind> = check(&merged(commits((100, 20), (200, 10))))
            .into_iter()
            .map(|anomaly| anomaly.kind)
            .collect();
        assert_eq!(found, vec![AnomalyKind::CommitBackwards]);
    }
}
