//! The fault harness: real librdkafka clients record a history
//! of what they did and saw on a three-node cluster while a seeded nemesis
//! injects faults, and the history checker (`sluice_perf::history`) judges
//! it.
//!
//! The workload is a keyed append: idempotent acks=all producers send values
//! that name their send (`p<producer>-s<sequence>`), each acknowledgement
//! recorded as `Op::Acked`; a reader tails every partition with `assign`
//! (read_uncommitted), now and then rewinding one partition so that it
//! reads offsets again across failovers; at the end a fresh reader reads
//! every partition from its start to its high watermark. Alongside, a
//! transformer turns the topic into an output topic in transactions
//! (consume-transform-produce, `chaos_parts/transform.rs`), read by a
//! read_committed reader and, at the end, read both ways. Members of a
//! consumer group, each a process of its own, join, leave and crash while
//! they read the topic and commit (`chaos_parts/groups.rs`). The nemesis kills
//! (kill -9), freezes (SIGSTOP past the session timeout), stops (SIGTERM)
//! or, where network namespaces can be made, cuts off from the other
//! brokers (past the session timeout) one random broker at a time and waits
//! for the cluster to be whole again before the next fault.
//!
//! `SLUICE_CHAOS_SEED` fixes the schedule (faults, victims, pauses);
//! `SLUICE_CHAOS_SECS` how long faults are injected, and
//! `SLUICE_CHAOS_FAULTS` how many at least (the faults go on past the
//! time until there were that many). The interleaving of
//! clients and brokers is not reproducible, only the schedule is.
//! `SLUICE_TEST_KEEP=1` keeps the brokers' directories and logs.

mod common;
#[path = "chaos_parts/disks.rs"]
mod disks;
#[path = "chaos_parts/groups.rs"]
mod groups;
#[path = "chaos_parts/transform.rs"]
mod transform;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use common::disk::Freeze;
use common::netns::TestNetwork;
use common::{
    admin_options, cluster_bootstrap, start_cluster_on, try_wait_for, wait_for, Frozen, Host, Rng,
    Stop, TestBroker, CLIENT_TIMEOUT,
};
use disks::{Disks, Slowed};
use groups::{GroupCounts, Groups};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sluice_perf::history::{check, Anomaly, AnomalyKind, Isolation, Op, SendId};
use transform::{Transform, TransformCounts, OUTPUT_PARTITION_BASE, OUTPUT_TOPIC};

const NODES: usize = 3;
const TOPIC: &str = "chaos";
const PARTITIONS: i32 = 6;
const REPLICATION_FACTOR: i32 = NODES as i32;
/// Two of three: writes go on with one broker down, and no write is
/// acknowledged that only one broker holds.
const MIN_INSYNC_REPLICAS: i32 = 2;
const _: () = assert!(MIN_INSYNC_REPLICAS < REPLICATION_FACTOR);

/// Short, so that a dead or frozen broker loses its partitions within the
/// test's time; long enough that a loaded 2-core machine does not fence a
/// healthy broker (as in replication.rs).
const BROKER_SESSION_TIMEOUT: Duration = Duration::from_millis(1500);

/// The schedule when `SLUICE_CHAOS_SEED` is unset.
const SEED_DEFAULT: u64 = 16;
/// Seconds of faults when `SLUICE_CHAOS_SECS` is unset: short enough for CI.
const CHAOS_SECS_DEFAULT: u64 = 75;
/// How fast faults come, and how long each lasts.
struct Pace {
    /// Between the cluster being whole again and the next fault.
    pause: (Duration, Duration),
    /// How long a killed broker stays down before it is restarted.
    killed_max: Duration,
    /// How long a frozen broker stays frozen: always well past the session
    /// timeout, so that it has been fenced and its partitions have moved.
    frozen: (Duration, Duration),
    /// How long a broker stays cut off: past the session timeout, so that
    /// the others fence it and its leader lease has lapsed.
    partitioned: (Duration, Duration),
    /// How long a broker's data disk stays full, or slowed to a trickle
    /// (or frozen: the same spans as slowed).
    disk_full: (Duration, Duration),
    disk_slow: (Duration, Duration),
}

/// The tests CI runs: faults that last, with time to settle between them.
const PACE_SETTLED: Pace = Pace {
    pause: (Duration::from_millis(500), Duration::from_secs(4)),
    killed_max: Duration::from_secs(3),
    frozen: (Duration::from_secs(4), Duration::from_secs(8)),
    partitioned: (Duration::from_secs(4), Duration::from_secs(8)),
    disk_full: (Duration::from_secs(4), Duration::from_secs(8)),
    disk_slow: (Duration::from_secs(4), Duration::from_secs(8)),
};
/// The long schedule: each fault as short as still does its harm (a
/// frozen or cut-off broker is fenced all the same), the next one right
/// after the cluster is whole, so that an hour holds as many faults as it
/// can.
const PACE_BRISK: Pace = Pace {
    pause: (Duration::from_millis(200), Duration::from_secs(1)),
    killed_max: Duration::from_secs(2),
    frozen: (Duration::from_millis(3200), Duration::from_secs(5)),
    partitioned: (Duration::from_millis(3200), Duration::from_secs(5)),
    disk_full: (Duration::from_secs(2), Duration::from_secs(4)),
    disk_slow: (Duration::from_secs(2), Duration::from_secs(4)),
};
const _: () = assert!(PACE_SETTLED.fenced_every_time() && PACE_BRISK.fenced_every_time());

impl Pace {
    /// A frozen or cut-off broker stays so for more than twice the session
    /// timeout: fenced, with its partitions moved, every time.
    const fn fenced_every_time(&self) -> bool {
        let fenced = 2 * BROKER_SESSION_TIMEOUT.as_millis();
        self.frozen.0.as_millis() > fenced
            && self.frozen.0.as_millis() < self.frozen.1.as_millis()
            && self.partitioned.0.as_millis() > fenced
            && self.partitioned.0.as_millis() < self.partitioned.1.as_millis()
    }
}

/// From a fault's end to every partition fully in sync again, as every
/// broker tells it: a restarted broker first catches up on what it missed.
const IN_SYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// For every producer to have new acknowledgements, and the group new
/// commits.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);
/// For the transformer to commit a new transaction, counted from the same
/// start. Longer, because of the client: librdkafka up to at least 2.12
/// (its issue 5511) keeps `send_offsets_to_transaction` waiting on a group
/// coordinator it cached after that broker left the Metadata answers (as a
/// fenced broker does, here and in Apache Kafka), until some other
/// connection changes state. The long run of seed 67 saw that call take
/// 38.3 s; a diagnostic run (seed 68) showed the brokers answering its
/// FindCoordinator in 0.6 ms and its TxnOffsetCommit in 3.4 ms once the
/// client asked. Past the transaction timeout, so that a transaction the
/// client left hanging has been aborted by the coordinator and the
/// transformer fenced and restarted by then: a broker that never lets it
/// commit again still fails the run.
const TRANSFORM_PROGRESS_TIMEOUT: Duration = Duration::from_secs(90);
const _: () = assert!(
    TRANSFORM_PROGRESS_TIMEOUT.as_secs() > transform::TRANSACTION_TIMEOUT.as_secs()
        && TRANSFORM_PROGRESS_TIMEOUT.as_secs() > PROGRESS_TIMEOUT.as_secs()
);
const PROGRESS_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// One Metadata or ListOffsets request.
const METADATA_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Between two metadata checks: each starts a client, and the brokers share
/// the machine's two cores with the test.
const METADATA_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Fewest faults and acknowledged sends of a chaos run: fewer means the run
/// tested nothing, whatever the checker says.
const FAULTS_MIN: usize = 3;
const ACKNOWLEDGED_MIN: u64 = 5_000;
/// At least this many acknowledgements per one without an offset (an
/// implicit acknowledgement of librdkafka's, see `run_chaos`).
const ACKNOWLEDGED_PER_OFFSETLESS_MIN: u64 = 10_000;

/// Idempotent producers, each sending one value per tick: 600 sends/s in
/// all, which three debug brokers on two cores keep up with.
const PRODUCERS: u32 = 3;
const SEND_INTERVAL: Duration = Duration::from_millis(5);
/// Keys per producer, spread over the partitions by the partitioner.
const KEYS_PER_PRODUCER: u64 = 64;
/// librdkafka's `message.timeout.ms`: long enough that a send is retried
/// across every failover rather than failed.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// librdkafka's `request.timeout.ms`: bounds how long a request left with a
/// frozen leader holds up its partition.
const PRODUCE_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// For every delivery report once the producers stop sending.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(90);
const _: () = assert!(FLUSH_TIMEOUT.as_millis() > DELIVERY_TIMEOUT.as_millis());
/// Digits of the sequence in a value.
const SEQUENCE_DIGITS: usize = 12;

/// The reader that tails the partitions all along, and the one that reads
/// everything at the end.
const LIVE_READER: u32 = 1;
const FINAL_READER: u32 = 2;
/// The final read_committed reader of the transformer's output (the live
/// one is `transform::LIVE_COMMITTED_READER`).
const FINAL_COMMITTED_READER: u32 = 4;
/// Between two rewinds of the live reader.
const REWIND_INTERVAL_MIN: Duration = Duration::from_millis(500);
const REWIND_INTERVAL_MAX: Duration = Duration::from_secs(4);
/// How far back a rewind goes, at most.
const REWIND_RECORDS_MAX: u64 = 2_000;
/// Mixed into the seed for the live reader's rewinds.
const LIVE_READER_SEED: u64 = 0x5EED_0F2E_AD00_0001;
const READ_POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// From the producers' flush to the high watermarks covering every
/// acknowledged send.
const HIGH_WATERMARK_TIMEOUT: Duration = Duration::from_secs(30);
/// For the final reader to read anything: a reader that reads nothing for
/// this long is stuck. A long schedule leaves millions of records, which a
/// debug-built reader takes minutes to read, so the whole read gets
/// [`FINAL_READ_TIMEOUT`].
const FINAL_READ_STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// For the final reader to reach every high watermark.
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Records read between two looks at the consumer's positions (each look
/// walks every assigned partition in librdkafka).
const FINAL_READ_POSITION_CHECK_READS: u64 = 10_000;
/// Client errors kept for the report, per client.
const ERRORS_KEPT_MAX: usize = 5;
/// Anomalies printed in full when the check fails.
const ANOMALIES_SHOWN_MAX: usize = 20;

/// How long the clean run of the second test produces.
const SHORT_RUN: Duration = Duration::from_secs(4);
const SHORT_RUN_ACKNOWLEDGED_MIN: u64 = 200;

/// The chaos tests run one at a time: each runs three brokers and a dozen
/// clients, which two at once would starve on a small machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
/// The same across test processes (another build's chaos test, a soak
/// script's): an exclusive `flock` on this file in the temporary directory.
const ONE_AT_A_TIME_LOCK_FILE: &str = "sluice-chaos.lock";

/// Held while a chaos test runs: the in-process lock, then the file lock,
/// which the kernel releases when the file is closed, even by a killed
/// test.
struct Alone {
    _file: Option<std::fs::File>,
    _guard: std::sync::MutexGuard<'static, ()>,
}

fn alone() -> Alone {
    use std::os::fd::AsRawFd;
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let path = std::env::temp_dir().join(ONE_AT_A_TIME_LOCK_FILE);
    // Without the file (a read-only temporary directory) the tests of
    // this process still run one at a time.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .ok()
        .filter(|file| {
            // SAFETY: flock on a descriptor this function owns; it blocks
            // until no other process holds the lock.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) == 0 }
        });
    Alone {
        _file: file,
        _guard: guard,
    }
}

/// What a chaos run drives and injects.
#[derive(Clone, Copy)]
struct Shape {
    /// The transactional consume-transform-produce workload alongside the
    /// keyed append.
    transform: bool,
    /// Network partitions among the faults (where namespaces can be made).
    partitions: bool,
    /// Consumer group members joining, leaving and crashing while they
    /// commit.
    groups: bool,
    pace: &'static Pace,
}

/// The keyed append under every fault, network partitions included.
#[test]
fn faults_leave_no_anomaly_in_the_history() {
    run_chaos(Shape {
        transform: false,
        partitions: true,
        groups: true,
        pace: &PACE_SETTLED,
    });
}

/// Consume-transform-produce in transactions, with the keyed append as its
/// input, under every fault. The transformer's producer closes idle
/// connections after a few seconds to get around a librdkafka defect
/// (its issue 5511; see `transform::PRODUCER_IDLE_CLOSE`) that otherwise
/// stalls it for ten minutes after its group coordinator is fenced.
/// `SLUICE_CHAOS_TXN_DEBUG=1` logs the producer's transaction protocol.
#[test]
fn transactions_survive_faults() {
    run_chaos(Shape {
        transform: true,
        partitions: true,
        groups: false,
        pace: &PACE_SETTLED,
    });
}

/// Faults one at a time, each followed by a wait for a whole cluster, with
/// the clients recording all along; then the final read and the check.
fn run_chaos(shape: Shape) {
    let _alone = alone();
    let seed = env_number("SLUICE_CHAOS_SEED", SEED_DEFAULT);
    let chaos_secs = env_number("SLUICE_CHAOS_SECS", CHAOS_SECS_DEFAULT);
    eprintln!(
        "chaos: seed {seed}, {chaos_secs} s of faults (SLUICE_CHAOS_SEED, SLUICE_CHAOS_SECS)"
    );
    let started = Instant::now();
    // Brokers in network namespaces when they can be made (root), so that
    // the nemesis can cut one off from the others; on loopback otherwise,
    // without that fault.
    let network = if shape.partitions {
        TestNetwork::or_skip(NODES, "chaos: network partitions")
    } else {
        None
    };
    let hosts: Vec<Host> = (0..NODES)
        .map(|index| match &network {
            Some(network) => network.host(index),
            None => Host::loopback(),
        })
        .collect();
    // Declared before the brokers: unmounted after they have stopped.
    let disks: Option<Disks>;
    let mut brokers = start_chaos_cluster(&hosts);
    // Where namespaces can be made the harness is root, and can also give
    // each broker a small disk of its own to fill or slow down.
    disks = network
        .is_some()
        .then(|| Disks::move_brokers_onto(&mut brokers, Duration::from_secs(chaos_secs)));
    let mut workload = Workload::start(&brokers, seed, shape.transform, shape.groups);
    // A workload that stops making progress ends the faults, like a fatal
    // error; the final read and the check still run, so that a stall is
    // never reported without what the history shows.
    let mut stalled = workload
        .wait_for_progress(&brokers, "before the first fault")
        .err();
    let mut fatal_after = None;
    let mut kinds = vec![Fault::Kill, Fault::Freeze, Fault::Terminate];
    if network.is_some() {
        kinds.push(Fault::Partition);
    }
    if disks.as_ref().is_some_and(|disks| disks.len() == NODES) {
        kinds.extend([Fault::DiskFull, Fault::DiskSlow, Fault::DiskFrozen]);
    }
    let mut rng = Rng::new(seed);
    let mut faults = Faults::default();
    let faults_until = Instant::now() + Duration::from_secs(chaos_secs);
    let faults_wanted = env_number("SLUICE_CHAOS_FAULTS", 0);
    while stalled.is_none()
        && (Instant::now() < faults_until || (faults.total() as u64) < faults_wanted)
    {
        thread::sleep(between(&mut rng, shape.pace.pause.0, shape.pace.pause.1));
        let fault = kinds[rng.below(kinds.len() as u64) as usize];
        let victim = rng.below(NODES as u64) as usize;
        let began = Instant::now();
        let done = inject(
            &mut brokers,
            network.as_ref(),
            (victim, fault),
            shape.pace,
            &mut rng,
        );
        let why = format!("after {done}");
        wait_in_sync(&brokers, &why);
        stalled = workload.wait_for_progress(&brokers, &why).err();
        faults.count(fault);
        if stalled.is_some() {
            break;
        }
        if !workload.fatal_errors().is_empty() {
            fatal_after = Some(why);
            break;
        }
        eprintln!(
            "chaos: {:.1} s: {done}; whole again {} ms after the fault began",
            started.elapsed().as_secs_f64(),
            began.elapsed().as_millis()
        );
    }
    let finished = workload.finish();
    wait_in_sync(&brokers, "after the producers flushed");
    let final_read = read_everything(&brokers, &workload.history);
    let history = workload.take_history();
    let anomalies = check(&history);
    eprintln!(
        "chaos: seed {seed}, {} faults (kill9 {}, stop {}, term {}, cut {}, \
         disk full {}, disk slow {}, disk frozen {}), {} acknowledged ({} sent, {} failed), {} reads (live {}, final {}; {} rewinds, {} resets), \
         transformer: {} records in {} committed, {} aborted, {} unknown transactions, \
         {} outputs read committed (live {}, final {}), group: {} members started ({} left, \
         {} killed, {} refused), {} reads, {} commits ({} failed), anomalies: {}, {:.0} s",
        faults.total(),
        faults.killed,
        faults.frozen,
        faults.terminated,
        faults.partitioned,
        faults.filled,
        faults.slowed,
        faults.disk_frozen,
        thousands(finished.acknowledged),
        thousands(finished.sent),
        thousands(finished.failed),
        thousands(finished.reader.reads + final_read.reads),
        thousands(finished.reader.reads),
        thousands(final_read.reads),
        finished.reader.rewinds,
        finished.reader.resets,
        thousands(finished.transform.processed),
        thousands(finished.transform.committed),
        thousands(finished.transform.aborted),
        finished.transform.unknown,
        thousands(finished.output_reads + final_read.committed_reads),
        thousands(finished.output_reads),
        thousands(final_read.committed_reads),
        finished.groups.started,
        finished.groups.left,
        finished.groups.killed,
        finished.groups.refused,
        thousands(finished.groups.reads),
        thousands(finished.groups.commits),
        finished.groups.commit_failures,
        anomalies.len(),
        started.elapsed().as_secs_f64()
    );
    finished.report_errors();
    let fatal = workload.fatal_errors();
    assert!(
        fatal.is_empty(),
        "seed {seed}: producers hit fatal errors ({}; brokers at {}), with {} anomalies in the \
         history:\n{}\n{}",
        fatal_after.as_deref().unwrap_or("before the first fault"),
        cluster_bootstrap(&brokers),
        anomalies.len(),
        fatal.join("\n"),
        describe(&history, &anomalies)
    );
    assert!(
        anomalies.is_empty(),
        "seed {seed}: {} anomalies in a history of {} operations:\n{}",
        anomalies.len(),
        history.len(),
        describe(&history, &anomalies)
    );
    if let Some(stall) = stalled {
        panic!("seed {seed}: a workload stopped making progress (the history above has no anomaly): {stall}");
    }
    assert!(
        faults.total() >= FAULTS_MIN,
        "only {} faults were injected in {chaos_secs} s; the run proves little",
        faults.total()
    );
    assert!(
        finished.acknowledged >= ACKNOWLEDGED_MIN,
        "only {} sends were acknowledged; the run proves little",
        finished.acknowledged
    );
    // librdkafka acknowledges without an offset the messages of a request
    // that failed once a later batch of the same producer succeeds
    // ("implicitly acked by subsequent batch success": sequences are in
    // order, so they are stored). The checker still checks them for loss
    // (by send), not for their place; more than a trace of them would leave
    // the order checks with little to check.
    assert!(
        finished.acknowledged_without_offset * ACKNOWLEDGED_PER_OFFSETLESS_MIN
            <= finished.acknowledged,
        "{} of {} acknowledgements came without an offset: too many to check their order",
        finished.acknowledged_without_offset,
        finished.acknowledged
    );
}

/// The harness records histories in the form the checker needs: a short
/// run without faults gives a clean history, and the same history with a
/// write taken away, or with a record stored twice, is caught.
#[test]
fn the_checker_catches_a_broken_recorded_history() {
    let _alone = alone();
    let hosts: Vec<Host> = (0..NODES).map(|_| Host::loopback()).collect();
    let brokers = start_chaos_cluster(&hosts);
    let mut workload = Workload::start(&brokers, SEED_DEFAULT, true, true);
    if let Err(stall) = workload.wait_for_progress(&brokers, "at the start") {
        panic!("without faults: {stall}");
    }
    thread::sleep(SHORT_RUN);
    assert_eq!(
        workload.fatal_errors(),
        Vec::<String>::new(),
        "without faults"
    );
    let finished = workload.finish();
    let final_read = read_everything(&brokers, &workload.history);
    let history = workload.take_history();
    assert!(
        finished.acknowledged >= SHORT_RUN_ACKNOWLEDGED_MIN,
        "only {} sends were acknowledged",
        finished.acknowledged
    );
    let anomalies = check(&history);
    assert!(
        anomalies.is_empty(),
        "a run without faults:\n{}",
        describe(&history, &anomalies)
    );

    // A lost write: the last acknowledged send missing from the final
    // read, as if it was gone after the live reader had seen it (cut off
    // with a log's tail).
    let lost = history
        .iter()
        .rev()
        .find_map(|op| match op {
            Op::Acked { send, .. } => Some(*send),
            _ => None,
        })
        .expect("a send was acknowledged");
    let broken: Vec<Op> = history
        .iter()
        .filter(|op| !matches!(op, Op::Read { reader: FINAL_READER, send, .. } if *send == lost))
        .cloned()
        .collect();
    let dropped_final_read = history
        .iter()
        .any(|op| matches!(op, Op::Read { reader: FINAL_READER, send, .. } if *send == lost));
    assert!(dropped_final_read, "the final reader read {lost:?}");
    let acked_at = broken
        .iter()
        .position(|op| matches!(op, Op::Acked { send, .. } if *send == lost))
        .expect("the acknowledgement is kept");
    assert_eq!(
        check(&broken),
        vec![Anomaly {
            kind: AnomalyKind::LostWrite,
            ops: vec![acked_at, final_read_done_at(&broken)],
        }],
        "{lost:?} taken out of the history"
    );

    // A duplicate: the final reader reads one of its records again at the
    // end of the partition, as if a retried send had been appended twice.
    let (partition, offset, send) = history
        .iter()
        .find_map(|op| match op {
            Op::Read {
                reader: FINAL_READER,
                partition,
                offset,
                send,
                ..
            } => Some((*partition, *offset, *send)),
            _ => None,
        })
        .expect("the final reader read something");
    let end = final_read.high_watermarks[&partition];
    let mut broken = history.clone();
    let done_at = final_read_done_at(&broken);
    broken.insert(
        done_at,
        Op::Read {
            reader: FINAL_READER,
            isolation: Isolation::ReadUncommitted,
            partition,
            offset: end,
            send,
        },
    );
    let first_read_at = broken
        .iter()
        .position(|op| {
            matches!(op, Op::Read { partition: p, offset: o, send: s, .. }
                if (*p, *o, *s) == (partition, offset, send))
        })
        .expect("the original read is kept");
    assert_eq!(
        check(&broken),
        vec![Anomaly {
            kind: AnomalyKind::Duplicate,
            ops: vec![first_read_at, done_at],
        }],
        "{send:?} stored again at {partition}/{end}"
    );
    groups::plant_anomalies(&history);
    eprintln!(
        "chaos: a clean history of {} operations ({} acknowledged, {} group members started, \
         {} group commits); a lost write, a duplicate, a group commit going back and a record \
         the group skipped planted in it were found",
        thousands(history.len() as u64),
        thousands(finished.acknowledged),
        finished.groups.started,
        thousands(finished.groups.commits)
    );
}

/// Every workload at once (keyed append, consumer group, consume-transform-
/// produce) under every fault, at the brisk pace: the long schedule, run
/// by hand as `SLUICE_CHAOS_SECS=3600 SLUICE_CHAOS_FAULTS=1000 cargo test
/// -p sluice --test chaos -- --ignored --exact every_workload_under_faults`
/// (see the README).
#[test]
#[ignore = "the long schedule; run by hand with SLUICE_CHAOS_SECS"]
fn every_workload_under_faults() {
    run_chaos(Shape {
        transform: true,
        partitions: true,
        groups: true,
        pace: &PACE_BRISK,
    });
}

/// A member of the group workload (`chaos_parts/groups.rs`): the harness
/// runs this test binary again with only this test, so that a member is a
/// process of its own, which a crash can kill.
#[test]
#[ignore = "a group member process of the chaos harness; the harness starts it"]
fn chaos_group_member() {
    groups::member_main();
}

// ---- the cluster --------------------------------------------------------------

/// Three voters, all registered, the topic created and fully in sync.
fn start_chaos_cluster(hosts: &[Host]) -> Vec<TestBroker> {
    let session_timeout = BROKER_SESSION_TIMEOUT.as_millis().to_string();
    let mut brokers = start_cluster_on(
        hosts,
        &["--broker-session-timeout-ms", session_timeout.as_str()],
    );
    // A broker that restarts comes back on its port, as a deployed one
    // does: on a new one, librdkafka's transactional producer kept calling
    // a coordinator's old port for 30 s and more (it maps a coordinator's
    // node id to the address its metadata holds), and the transformer
    // stalled.
    for broker in &mut brokers {
        broker.keep_port();
    }
    // The topic's replicas are placed on registered brokers only.
    wait_for(
        "every broker to list all of them",
        IN_SYNC_TIMEOUT,
        METADATA_POLL_INTERVAL,
        || {
            for (index, broker) in brokers.iter().enumerate() {
                let listed = broker
                    .consumer(&[])
                    .fetch_metadata(None, METADATA_REQUEST_TIMEOUT)
                    .map_err(|error| format!("broker {}: Metadata: {error}", index + 1))?
                    .brokers()
                    .len();
                if listed != NODES {
                    return Err(format!("broker {} lists {listed} brokers", index + 1));
                }
            }
            Ok(())
        },
    );
    let min_insync_replicas = MIN_INSYNC_REPLICAS.to_string();
    let topics: Vec<NewTopic> = [TOPIC, OUTPUT_TOPIC]
        .into_iter()
        .map(|name| {
            NewTopic::new(
                name,
                PARTITIONS,
                TopicReplication::Fixed(REPLICATION_FACTOR),
            )
            .set("min.insync.replicas", &min_insync_replicas)
        })
        .collect();
    let admin = brokers[0].admin();
    let results = futures_lite::future::block_on(admin.create_topics(&topics, &admin_options()))
        .expect("CreateTopics answered");
    for result in results {
        if let Err((topic, code)) = result {
            panic!("creating topic {topic}: {code:?}");
        }
    }
    wait_in_sync(&brokers, "after the topic was created");
    brokers
}

/// A client config bootstrapped from every broker as it listens now. A
/// restarted broker listens on a new port; the clients learn it from the
/// Metadata the others answer.
fn cluster_config(brokers: &[TestBroker]) -> ClientConfig {
    let mut config = brokers
        .first()
        .expect("a cluster has a broker")
        .client_config();
    config.set("bootstrap.servers", cluster_bootstrap(brokers));
    config
}

/// Waits until every broker lists all of them and shows every partition
/// with a leader and all its replicas in sync, and all brokers name the
/// same leaders (a thawed or restarted broker has learned who leads now).
fn wait_in_sync(brokers: &[TestBroker], why: &str) {
    wait_for(
        &format!("every partition fully in sync, as every broker sees it ({why})"),
        IN_SYNC_TIMEOUT,
        METADATA_POLL_INTERVAL,
        || {
            let mut agreed: Option<Vec<i32>> = None;
            for (index, broker) in brokers.iter().enumerate() {
                let node = index + 1;
                let leaders =
                    in_sync_leaders(broker).map_err(|error| format!("broker {node}: {error}"))?;
                match &agreed {
                    Some(agreed) if *agreed != leaders => {
                        return Err(format!(
                            "broker 1 names leaders {agreed:?}, broker {node} {leaders:?}"
                        ))
                    }
                    Some(_) => {}
                    None => agreed = Some(leaders),
                }
            }
            Ok(())
        },
    );
}

/// The leader of every partition as `broker` tells a new client, if it
/// lists every broker and every partition is fully in sync.
fn in_sync_leaders(broker: &TestBroker) -> Result<Vec<i32>, String> {
    // A new client each time: its first Metadata request goes to its one
    // bootstrap broker, so the answer is that broker's view.
    let metadata = broker
        .consumer(&[])
        .fetch_metadata(Some(TOPIC), METADATA_REQUEST_TIMEOUT)
        .map_err(|error| format!("Metadata: {error}"))?;
    if metadata.brokers().len() != NODES {
        return Err(format!("{} brokers listed", metadata.brokers().len()));
    }
    let topic = metadata
        .topics()
        .iter()
        .find(|topic| topic.name() == TOPIC)
        .ok_or_else(|| format!("no topic {TOPIC}"))?;
    if let Some(error) = topic.error() {
        return Err(format!("topic error {error:?}"));
    }
    let mut leaders = vec![-1; PARTITIONS as usize];
    for partition in topic.partitions() {
        let mut replicas = partition.replicas().to_vec();
        replicas.sort_unstable();
        let mut isr = partition.isr().to_vec();
        isr.sort_unstable();
        let in_sync = partition.leader() >= 0
            && replicas.len() == REPLICATION_FACTOR as usize
            && isr == replicas;
        let slot = usize::try_from(partition.id())
            .ok()
            .and_then(|id| leaders.get_mut(id));
        match slot {
            Some(slot) if in_sync => *slot = partition.leader(),
            _ => {
                return Err(format!(
                    "partition {}: leader {}, replicas {replicas:?}, isr {isr:?}",
                    partition.id(),
                    partition.leader()
                ))
            }
        }
    }
    match leaders.iter().position(|leader| *leader < 0) {
        Some(missing) => Err(format!("partition {missing} not listed")),
        None => Ok(leaders),
    }
}

// ---- the nemesis --------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// kill -9, then a restart after a short random delay.
    Kill,
    /// SIGSTOP past the session timeout, then SIGCONT.
    Freeze,
    /// SIGTERM (a controlled shutdown), then a restart.
    Terminate,
    /// Cut off from the other brokers (every packet between them dropped,
    /// the clients still reaching it) past the session timeout, then the
    /// network healed.
    Partition,
    /// Its data disk full to the last byte (writes fail with ENOSPC), then
    /// the space freed.
    DiskFull,
    /// Its data disk throttled to a few dozen I/Os a second, then not.
    DiskSlow,
    /// Its data disk's file system frozen (`FIFREEZE`: every write, file
    /// creation and rename waits), then thawed: a volume that stalls.
    DiskFrozen,
}

#[derive(Debug, Default)]
struct Faults {
    killed: usize,
    frozen: usize,
    terminated: usize,
    partitioned: usize,
    filled: usize,
    slowed: usize,
    disk_frozen: usize,
}

impl Faults {
    fn count(&mut self, fault: Fault) {
        match fault {
            Fault::Kill => self.killed += 1,
            Fault::Freeze => self.frozen += 1,
            Fault::Terminate => self.terminated += 1,
            Fault::Partition => self.partitioned += 1,
            Fault::DiskFull => self.filled += 1,
            Fault::DiskSlow => self.slowed += 1,
            Fault::DiskFrozen => self.disk_frozen += 1,
        }
    }

    fn total(&self) -> usize {
        self.killed
            + self.frozen
            + self.terminated
            + self.partitioned
            + self.filled
            + self.slowed
            + self.disk_frozen
    }
}

/// Injects `fault` into the broker at `victim` and ends it (the broker
/// restarted or thawed); says what it did.
fn inject(
    brokers: &mut [TestBroker],
    network: Option<&TestNetwork>,
    (victim, fault): (usize, Fault),
    pace: &Pace,
    rng: &mut Rng,
) -> String {
    let node = victim + 1;
    let broker = &mut brokers[victim];
    match fault {
        Fault::Kill => {
            let down = between(rng, Duration::ZERO, pace.killed_max);
            broker.stop(Stop::Kill);
            thread::sleep(down);
            broker.start_again();
            format!(
                "kill -9 of broker {node}, restarted {} ms later",
                down.as_millis()
            )
        }
        Fault::Freeze => {
            let frozen_for = between(rng, pace.frozen.0, pace.frozen.1);
            // Thawed when dropped, also when the test fails while it is
            // frozen: a stopped process would not act on the SIGTERM the
            // harness stops it with.
            let frozen = Frozen::freeze(broker);
            thread::sleep(frozen_for);
            frozen.thaw();
            format!("SIGSTOP of broker {node} for {} ms", frozen_for.as_millis())
        }
        Fault::Terminate => {
            broker.restart(Stop::Term);
            format!("SIGTERM restart of broker {node}")
        }
        Fault::Partition => {
            let network = network.expect("partitions are drawn only with a network");
            let cut_for = between(rng, pace.partitioned.0, pace.partitioned.1);
            let others: Vec<usize> = (0..NODES).filter(|index| *index != victim).collect();
            for other in &others {
                network.cut(victim, *other);
            }
            thread::sleep(cut_for);
            for other in &others {
                network.heal(victim, *other);
            }
            format!(
                "broker {node} cut off from the others for {} ms",
                cut_for.as_millis()
            )
        }
        Fault::DiskFull => {
            let full_for = between(rng, pace.disk_full.0, pace.disk_full.1);
            disks::fill_for(broker, full_for);
            format!("disk of broker {node} full for {} ms", full_for.as_millis())
        }
        Fault::DiskSlow => {
            let slow_for = between(rng, pace.disk_slow.0, pace.disk_slow.1);
            let slowed = Slowed::slow(broker);
            thread::sleep(slow_for);
            drop(slowed);
            format!(
                "disk of broker {node} slowed for {} ms",
                slow_for.as_millis()
            )
        }
        Fault::DiskFrozen => {
            let frozen_for = between(rng, pace.disk_slow.0, pace.disk_slow.1);
            // Thawed when dropped, also when the test fails meanwhile.
            let frozen = Freeze::new(&broker.data_dir());
            thread::sleep(frozen_for);
            drop(frozen);
            format!(
                "disk of broker {node} frozen for {} ms",
                frozen_for.as_millis()
            )
        }
    }
}

/// A duration in `[min, max)` drawn from `rng`.
fn between(rng: &mut Rng, min: Duration, max: Duration) -> Duration {
    let span = max.saturating_sub(min).as_millis().max(1) as u64;
    min + Duration::from_millis(rng.below(span))
}

// ---- the workload --------------------------------------------------------------

/// Every operation the clients observed, in the order they observed them.
type History = Arc<Mutex<Vec<Op>>>;

/// Appends to the history. Called from librdkafka's callbacks, where a
/// panic would abort the test process: a poisoned lock (another thread
/// panicked) is used as it is.
fn record(history: &Mutex<Vec<Op>>, op: Op) {
    history
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(op);
}

/// The value of a send: it names the send, so a reader knows what it read.
fn value_of(send: SendId) -> String {
    format!("p{}-s{:0SEQUENCE_DIGITS$}", send.producer, send.sequence)
}

/// The send a [`value_of`] names.
fn parse_value(value: &[u8]) -> Option<SendId> {
    let text = std::str::from_utf8(value).ok()?;
    let (producer, sequence) = text.strip_prefix('p')?.split_once("-s")?;
    Some(SendId {
        producer: producer.parse().ok()?,
        sequence: sequence.parse().ok()?,
    })
}

/// What one producer's delivery reports said.
#[derive(Default)]
struct DeliveryCounts {
    sent: AtomicU64,
    acknowledged: AtomicU64,
    failed: AtomicU64,
    acknowledged_without_offset: AtomicU64,
    /// The first few failures, for the report.
    errors: Mutex<Vec<String>>,
}

/// A producer's context: each delivery report becomes an `Op::Acked` (a
/// failed delivery is recorded as not acknowledged: it may or may not have
/// been stored, and the checker allows either).
struct Recorder {
    producer: u32,
    history: History,
    counts: Arc<DeliveryCounts>,
}

/// Set to librdkafka debug contexts (e.g. `msg,eos,protocol`), the
/// keyed-append producers log those debug lines, to line up with the
/// brokers' logs when a producer fails.
const PRODUCER_DEBUG: &str = "SLUICE_CHAOS_PRODUCER_DEBUG";

impl ClientContext for Recorder {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        let client = format!("producer {}", self.producer);
        log_client_line(&client, PRODUCER_DEBUG, level, facility, message);
    }
}

/// Prints a librdkafka log line of `client`: warnings and worse always,
/// everything else (its debug lines) only when the variable `debug` is
/// set, to line up with the brokers' logs.
fn log_client_line(
    client: &str,
    debug: &str,
    level: rdkafka::config::RDKafkaLogLevel,
    facility: &str,
    message: &str,
) {
    use rdkafka::config::RDKafkaLogLevel::{Alert, Critical, Emerg, Error, Warning};
    let serious = matches!(level, Emerg | Alert | Critical | Error | Warning);
    if serious || std::env::var_os(debug).is_some() {
        eprintln!("chaos: {client}: {level:?} {facility}: {message}");
    }
}

impl ProducerContext for Recorder {
    /// The send's sequence.
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, sequence: Box<u64>) {
        let send = SendId {
            producer: self.producer,
            sequence: *sequence,
        };
        match result {
            Ok(message) => {
                if message.offset() < 0 {
                    self.counts
                        .acknowledged_without_offset
                        .fetch_add(1, Ordering::Relaxed);
                }
                record(
                    &self.history,
                    Op::Acked {
                        send,
                        partition: message.partition(),
                        offset: message.offset(),
                        txn: None,
                    },
                );
                self.counts.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                let mut errors = self
                    .counts
                    .errors
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if errors.len() < ERRORS_KEPT_MAX {
                    errors.push(format!("{send:?}: {error}"));
                }
            }
        }
    }
}

type RecordingProducer = ThreadedProducer<Recorder>;

/// What the live reader did.
#[derive(Debug, Default)]
struct ReaderCounts {
    reads: u64,
    rewinds: u64,
    /// Positions the broker refused (out of range, truncated), after which
    /// the reader started again from the beginning.
    resets: u64,
    errors: u64,
    /// The first few errors, for the report.
    kept_errors: Vec<String>,
}

/// The producers and the live reader, each on threads of its own, until
/// finished, or dropped (when a test fails).
struct Workload {
    history: History,
    stop: Arc<AtomicBool>,
    producers: Vec<Arc<RecordingProducer>>,
    counts: Vec<Arc<DeliveryCounts>>,
    senders: Vec<thread::JoinHandle<()>>,
    reader: Option<thread::JoinHandle<ReaderCounts>>,
    /// The transactional workload, if this run has it.
    transform: Option<Transform>,
    /// The consumer group workload, if this run has it.
    groups: Option<Groups>,
}

/// What the workload did, once its producers have flushed.
struct Finished {
    sent: u64,
    acknowledged: u64,
    failed: u64,
    acknowledged_without_offset: u64,
    producer_errors: Vec<String>,
    reader: ReaderCounts,
    transform: TransformCounts,
    /// Outputs the live read_committed reader read.
    output_reads: u64,
    groups: GroupCounts,
}

impl Finished {
    /// Failed deliveries and reader errors are no anomaly, but worth seeing.
    fn report_errors(&self) {
        if !self.producer_errors.is_empty() {
            eprintln!(
                "chaos: failed deliveries, e.g.:\n  {}",
                self.producer_errors.join("\n  ")
            );
        }
        if !self.transform.errors.is_empty() {
            eprintln!(
                "chaos: transformer errors, e.g.:\n  {}",
                self.transform.errors.join("\n  ")
            );
        }
        if !self.reader.kept_errors.is_empty() {
            eprintln!(
                "chaos: {} live reader errors, e.g.:\n  {}",
                self.reader.errors,
                self.reader.kept_errors.join("\n  ")
            );
        }
        self.groups.report_errors();
    }
}

impl Workload {
    fn start(brokers: &[TestBroker], seed: u64, transform: bool, groups: bool) -> Workload {
        let history: History = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let delivery_timeout = DELIVERY_TIMEOUT.as_millis().to_string();
        let request_timeout = PRODUCE_REQUEST_TIMEOUT.as_millis().to_string();
        let mut producers = Vec::new();
        let mut counts = Vec::new();
        let mut senders = Vec::new();
        for producer in 1..=PRODUCERS {
            let delivered = Arc::new(DeliveryCounts::default());
            let recorder = Recorder {
                producer,
                history: Arc::clone(&history),
                counts: Arc::clone(&delivered),
            };
            let mut config = cluster_config(brokers);
            if let Some(contexts) = std::env::var_os(PRODUCER_DEBUG) {
                config
                    .set("debug", contexts.to_string_lossy())
                    .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
            }
            let client: RecordingProducer = config
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("linger.ms", "5")
                .set("message.timeout.ms", delivery_timeout.as_str())
                .set("request.timeout.ms", request_timeout.as_str())
                .create_with_context(recorder)
                .expect("creating a producer");
            let client = Arc::new(client);
            senders.push({
                let client = Arc::clone(&client);
                let delivered = Arc::clone(&delivered);
                let stop = Arc::clone(&stop);
                thread::spawn(move || send_steadily(&client, producer, &delivered, &stop))
            });
            producers.push(client);
            counts.push(delivered);
        }
        let reader = {
            let consumer = reader_consumer(brokers);
            let history = Arc::clone(&history);
            let stop = Arc::clone(&stop);
            thread::spawn(move || read_live(&consumer, &history, &stop, seed))
        };
        let transform = transform.then(|| Transform::start(brokers, &history, &stop, seed));
        let groups = groups.then(|| Groups::start(brokers, seed));
        Workload {
            history,
            stop,
            producers,
            counts,
            senders,
            reader: Some(reader),
            transform,
            groups,
        }
    }

    /// Acknowledged sends so far, by producer.
    fn acknowledged(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|counts| counts.acknowledged.load(Ordering::Relaxed))
            .collect()
    }

    /// Waits until every producer has new acknowledgements, the group has
    /// committed further in every partition (both within
    /// `PROGRESS_TIMEOUT`) and the transformer has committed a new
    /// transaction (within `TRANSFORM_PROGRESS_TIMEOUT`); a timeout says which
    /// did not, and is returned rather than failing the test there, so
    /// that the run still reads everything back and checks the history.
    fn wait_for_progress(&self, brokers: &[TestBroker], why: &str) -> Result<(), String> {
        if let Some(groups) = &self.groups {
            groups.follow(brokers);
        }
        if let Some(transform) = &self.transform {
            transform.follow(brokers);
        }
        let group_before = self.groups.as_ref().map(Groups::committed);
        let before = self.acknowledged();
        let transactions = || {
            self.transform
                .as_ref()
                .map(|transform| transform.committed.load(Ordering::Relaxed))
        };
        let committed_before = transactions();
        let began = Instant::now();
        try_wait_for(
            &format!("new acknowledgements for every producer ({why})"),
            PROGRESS_TIMEOUT,
            PROGRESS_POLL_INTERVAL,
            || {
                // No progress can come from a producer that hit a fatal
                // error: the run goes on to its final read and check,
                // which say what the broker did (`fatal_errors`).
                if !self.fatal_errors().is_empty() {
                    return Ok(());
                }
                let now = self.acknowledged();
                let group_now = self.groups.as_ref().map(Groups::committed);
                let group_advanced = match (&group_now, &group_before) {
                    (Some(now), Some(before)) => {
                        now.iter().zip(before).all(|(now, before)| now > before)
                    }
                    _ => true,
                };
                if now.iter().zip(&before).all(|(now, before)| now > before) && group_advanced {
                    Ok(())
                } else {
                    Err(format!(
                        "acknowledged by producer {now:?}, before {before:?}; the group's \
                         commits by partition {group_now:?}, before {group_before:?}"
                    ))
                }
            },
        )?;
        try_wait_for(
            &format!("a new transaction committed by the transformer ({why})"),
            TRANSFORM_PROGRESS_TIMEOUT.saturating_sub(began.elapsed()),
            PROGRESS_POLL_INTERVAL,
            || {
                let committed = transactions();
                if !self.fatal_errors().is_empty()
                    || committed.is_none()
                    || committed > committed_before
                {
                    Ok(())
                } else {
                    Err(format!(
                        "transactions committed by the transformer {committed:?}, before \
                         {committed_before:?}"
                    ))
                }
            },
        )
    }

    /// The fatal errors the producers hit (an idempotent producer's
    /// sequence out of order, say): each says what the broker answered.
    fn fatal_errors(&self) -> Vec<String> {
        self.producers
            .iter()
            .enumerate()
            .filter_map(|(index, producer)| {
                let (code, reason) = producer.client().fatal_error()?;
                Some(format!("producer {}: {code:?}: {reason}", index + 1))
            })
            .collect()
    }

    /// Stops sending and reading, and waits for every delivery report.
    fn finish(&mut self) -> Finished {
        self.stop.store(true, Ordering::Relaxed);
        for sender in self.senders.drain(..) {
            assert!(sender.join().is_ok(), "a sending thread panicked");
        }
        let reader = self
            .reader
            .take()
            .map(|reader| reader.join().expect("the live reader panicked"))
            .unwrap_or_default();
        let (transform, output_reads) = self
            .transform
            .as_mut()
            .map(Transform::finish)
            .unwrap_or_default();
        for (index, producer) in self.producers.iter().enumerate() {
            if producer.client().fatal_error().is_some() {
                // Its queue was failed with the fatal error: there is
                // nothing to wait for.
                continue;
            }
            producer.flush(FLUSH_TIMEOUT).unwrap_or_else(|error| {
                panic!(
                    "producer {}: not every send has a delivery report {FLUSH_TIMEOUT:?} \
                     after the last: {error}",
                    index + 1
                )
            });
        }
        let groups = self
            .groups
            .as_mut()
            .map(|groups| groups.finish(&self.history))
            .unwrap_or_default();
        let total = |field: fn(&DeliveryCounts) -> &AtomicU64| -> u64 {
            self.counts
                .iter()
                .map(|counts| field(counts).load(Ordering::Relaxed))
                .sum()
        };
        let producer_errors = self
            .counts
            .iter()
            .flat_map(|counts| {
                counts
                    .errors
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
            })
            .collect();
        Finished {
            sent: total(|counts| &counts.sent),
            acknowledged: total(|counts| &counts.acknowledged),
            failed: total(|counts| &counts.failed),
            acknowledged_without_offset: total(|counts| &counts.acknowledged_without_offset),
            producer_errors,
            reader,
            transform,
            output_reads,
            groups,
        }
    }

    /// The history, once no client records any more.
    fn take_history(&self) -> Vec<Op> {
        std::mem::take(&mut *self.history.lock().expect("a client thread panicked"))
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for sender in self.senders.drain(..) {
            let _ = sender.join();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Sends one value per tick until `stop`, keys spread over the partitions.
fn send_steadily(
    producer: &RecordingProducer,
    id: u32,
    counts: &DeliveryCounts,
    stop: &AtomicBool,
) {
    let mut next_tick = Instant::now();
    let mut sequence = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let value = value_of(SendId {
            producer: id,
            sequence,
        });
        let key = format!("p{id}-k{}", sequence % KEYS_PER_PRODUCER);
        let mut message = BaseRecord::with_opaque_to(TOPIC, Box::new(sequence))
            .key(key.as_bytes())
            .payload(value.as_bytes());
        loop {
            match producer.send(message) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // Never queued, so never sent: stopping here leaves no
                    // gap in what the producer sent.
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    message = back;
                    thread::sleep(Duration::from_millis(1));
                }
                // The producer cannot go on; the harness reports why
                // (`Workload::fatal_errors`).
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::Fatal), _)) => return,
                Err((error, _)) => panic!("producer {id}: queueing send {sequence}: {error}"),
            }
        }
        counts.sent.fetch_add(1, Ordering::Relaxed);
        sequence += 1;
        // A stall (a full queue) is not made up with a burst.
        next_tick = (next_tick + SEND_INTERVAL).max(Instant::now());
        thread::sleep(next_tick.saturating_duration_since(Instant::now()));
    }
}

/// A consumer that only uses `assign`, reads uncommitted, and reports a
/// refused position as an error instead of moving it silently (a move the
/// history would not know of).
fn reader_consumer(brokers: &[TestBroker]) -> BaseConsumer {
    cluster_config(brokers)
        .set("group.id", "sluice-chaos-readers")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "error")
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("creating a reader")
}

/// Assigns every partition at `positions`.
fn assign_at(consumer: &BaseConsumer, positions: &[i64]) {
    let mut assignment = TopicPartitionList::new();
    for (partition, position) in (0..PARTITIONS).zip(positions) {
        assignment
            .add_partition_offset(TOPIC, partition, Offset::Offset(*position))
            .expect("adding a partition");
    }
    consumer
        .assign(&assignment)
        .expect("assigning the partitions");
}

/// Positions from the start of every partition (0: nothing is ever
/// deleted from the topic), recorded as seeks.
fn start_over(consumer: &BaseConsumer, history: &Mutex<Vec<Op>>, reader: u32) -> Vec<i64> {
    let positions = vec![0; PARTITIONS as usize];
    for partition in 0..PARTITIONS {
        record(
            history,
            Op::Seek {
                reader,
                partition,
                offset: 0,
            },
        );
    }
    assign_at(consumer, &positions);
    positions
}

/// The send a message names, as a read by `reader`.
fn read_op(reader: u32, message: &impl Message) -> Op {
    let send = message.payload().and_then(parse_value).unwrap_or_else(|| {
        panic!(
            "reader {reader}: {}/{} holds a value no producer of this test sent: {:?}",
            message.partition(),
            message.offset(),
            message.payload().map(String::from_utf8_lossy)
        )
    });
    Op::Read {
        reader,
        isolation: Isolation::ReadUncommitted,
        partition: message.partition(),
        offset: message.offset(),
        send,
    }
}

/// Least time between two assignments of one consumer made in answer to
/// errors. librdkafka reports such errors once per partition, a burst for
/// one fault; assigning again for each, while the previous assignment's
/// partitions are still stopping, makes librdkafka abort the process
/// (`rd_kafka_assignment_partition_stopped: Assertion rktp->rktp_started
/// failed`: a duplicate stop, librdkafka issue 5573, fixed after the 2.12
/// the tests link; it ended a long run at fault 109). One assignment for
/// the burst is all it needs.
const ASSIGN_SPACING: Duration = Duration::from_secs(1);

/// Spaces a consumer's assignments by [`ASSIGN_SPACING`]: one that is
/// wanted sooner is made when the spacing allows.
#[derive(Default)]
pub struct AssignSpacing {
    wanted: bool,
    last: Option<Instant>,
}

impl AssignSpacing {
    /// Notes whether an assignment is wanted (true sticks until made).
    pub fn want(&mut self, wanted: bool) {
        self.wanted |= wanted;
    }

    /// Whether an assignment may be made now.
    pub fn spaced(&self) -> bool {
        self.last
            .is_none_or(|last| last.elapsed() >= ASSIGN_SPACING)
    }

    /// Waits until the spacing allows an assignment.
    pub fn wait(&self) {
        if let Some(last) = self.last {
            thread::sleep(ASSIGN_SPACING.saturating_sub(last.elapsed()));
        }
    }

    /// Notes an assignment made now.
    pub fn made(&mut self) {
        self.wanted = false;
        self.last = Some(Instant::now());
    }

    /// True, and the assignment noted as made, when one is wanted and the
    /// spacing allows it.
    pub fn due(&mut self) -> bool {
        if self.wanted && self.spaced() {
            self.made();
            return true;
        }
        false
    }
}

/// Whether a consumer error means the broker refused the reader's position.
fn position_refused(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::MessageConsumption(
            RDKafkaErrorCode::AutoOffsetReset
                | RDKafkaErrorCode::OffsetOutOfRange
                | RDKafkaErrorCode::LogTruncation
        )
    )
}

/// Tails every partition until `stop`, now and then rewinding one of them
/// (a seek back, so that it reads offsets again, across failovers).
fn read_live(
    consumer: &BaseConsumer,
    history: &Mutex<Vec<Op>>,
    stop: &AtomicBool,
    seed: u64,
) -> ReaderCounts {
    // A stream of its own: the nemesis's draws stay the same whatever the
    // reader does.
    let mut rng = Rng::new(seed ^ LIVE_READER_SEED);
    let mut counts = ReaderCounts::default();
    let mut positions = start_over(consumer, history, LIVE_READER);
    let mut spacing = AssignSpacing::default();
    spacing.made();
    let mut next_rewind =
        Instant::now() + between(&mut rng, REWIND_INTERVAL_MIN, REWIND_INTERVAL_MAX);
    while !stop.load(Ordering::Relaxed) {
        if spacing.due() {
            counts.resets += 1;
            positions = start_over(consumer, history, LIVE_READER);
        }
        if Instant::now() >= next_rewind && spacing.spaced() {
            let partition = rng.below(PARTITIONS as u64) as usize;
            let position = positions[partition];
            if position > 0 {
                let back = 1 + rng.below((position as u64).min(REWIND_RECORDS_MAX));
                positions[partition] = position - back as i64;
                record(
                    history,
                    Op::Seek {
                        reader: LIVE_READER,
                        partition: partition as i32,
                        offset: positions[partition],
                    },
                );
                assign_at(consumer, &positions);
                spacing.made();
                counts.rewinds += 1;
            }
            next_rewind =
                Instant::now() + between(&mut rng, REWIND_INTERVAL_MIN, REWIND_INTERVAL_MAX);
        }
        match consumer.poll(READ_POLL_TIMEOUT) {
            None => {}
            Some(Ok(message)) => {
                record(history, read_op(LIVE_READER, &message));
                if let Some(position) = usize::try_from(message.partition())
                    .ok()
                    .and_then(|partition| positions.get_mut(partition))
                {
                    *position = message.offset() + 1;
                }
                counts.reads += 1;
            }
            Some(Err(error)) => {
                counts.errors += 1;
                if counts.kept_errors.len() < ERRORS_KEPT_MAX {
                    counts.kept_errors.push(error.to_string());
                }
                // The error does not say which partition: every one
                // starts over (once for a burst of them).
                spacing.want(position_refused(&error));
            }
        }
    }
    counts
}

/// What the final read did.
struct FinalRead {
    reads: u64,
    /// Outputs the final read_committed reader read.
    committed_reads: u64,
    /// Where it read every partition up to, by history partition.
    high_watermarks: BTreeMap<i32, i64>,
}

/// Every partition as the history names it: the topic's, then the
/// transformer's output's.
fn history_partitions() -> impl Iterator<Item = i32> {
    (0..PARTITIONS).chain((0..PARTITIONS).map(|partition| OUTPUT_PARTITION_BASE + partition))
}

/// The topic and partition a history partition names.
fn topic_partition(partition: i32) -> (&'static str, i32) {
    if partition >= OUTPUT_PARTITION_BASE {
        (OUTPUT_TOPIC, partition - OUTPUT_PARTITION_BASE)
    } else {
        (TOPIC, partition)
    }
}

/// The final read: first a read_committed read of the transformer's output
/// (which transactions took effect), then a fresh reader reads every
/// partition of both topics, read uncommitted, from its start to its high
/// watermark; each recorded as reads and then `Op::FinalReadDone`.
fn read_everything(brokers: &[TestBroker], history: &Mutex<Vec<Op>>) -> FinalRead {
    let committed_reads =
        transform::read_output_committed(brokers, history, FINAL_COMMITTED_READER);
    let consumer = reader_consumer(brokers);
    let high_watermarks = high_watermarks_covering_acknowledged(&consumer, history);
    let mut positions: BTreeMap<i32, i64> = history_partitions().map(|p| (p, 0)).collect();
    let mut assignment = TopicPartitionList::new();
    for partition in history_partitions() {
        record(
            history,
            Op::Seek {
                reader: FINAL_READER,
                partition,
                offset: 0,
            },
        );
        let (topic, number) = topic_partition(partition);
        assignment
            .add_partition_offset(topic, number, Offset::Offset(0))
            .expect("adding a partition");
    }
    consumer
        .assign(&assignment)
        .expect("assigning the partitions");
    let deadline = Instant::now() + FINAL_READ_TIMEOUT;
    let mut reads = 0u64;
    // The consumer's position, not the last record read: a transaction's
    // marker can end a partition of the output.
    let reached = |positions: &mut BTreeMap<i32, i64>| {
        let now = consumer.position().expect("the final reader's positions");
        for (partition, position) in positions.iter_mut() {
            let (topic, number) = topic_partition(*partition);
            if let Some(Offset::Offset(at)) =
                now.find_partition(topic, number).map(|tp| tp.offset())
            {
                *position = (*position).max(at);
            }
        }
        positions
            .iter()
            .all(|(partition, position)| *position >= high_watermarks[partition])
    };
    let mut last_read = Instant::now();
    let mut look_at_positions = true;
    loop {
        let read_to_the_end = positions
            .iter()
            .all(|(partition, position)| *position >= high_watermarks[partition]);
        if (look_at_positions || read_to_the_end) && reached(&mut positions) {
            break;
        }
        look_at_positions = false;
        assert!(
            Instant::now() < deadline,
            "the final reader is at {positions:?} after {FINAL_READ_TIMEOUT:?} ({reads} records \
             read), the high watermarks are {high_watermarks:?}"
        );
        assert!(
            last_read.elapsed() < FINAL_READ_STALL_TIMEOUT,
            "the final reader read nothing for {FINAL_READ_STALL_TIMEOUT:?} at {positions:?} \
             ({reads} records read), the high watermarks are {high_watermarks:?}"
        );
        match consumer.poll(READ_POLL_TIMEOUT) {
            None => look_at_positions = true,
            Some(Ok(message)) => {
                last_read = Instant::now();
                let read = if message.topic() == OUTPUT_TOPIC {
                    transform::output_read(FINAL_READER, Isolation::ReadUncommitted, &message)
                } else {
                    read_op(FINAL_READER, &message)
                };
                if let Op::Read {
                    partition, offset, ..
                } = &read
                {
                    positions.insert(*partition, offset + 1);
                }
                record(history, read);
                reads += 1;
                look_at_positions = reads.is_multiple_of(FINAL_READ_POSITION_CHECK_READS);
            }
            Some(Err(error)) => {
                // Reading from the start to the high watermark of a quiet
                // cluster, no position can be out of range.
                assert!(
                    !position_refused(&error),
                    "the final reader's position was refused: {error}"
                );
            }
        }
    }
    record(
        history,
        Op::FinalReadDone {
            reader: FINAL_READER,
            isolation: Isolation::ReadUncommitted,
        },
    );
    FinalRead {
        reads,
        committed_reads,
        high_watermarks,
    }
}

/// Every partition's high watermark (by history partition) once it covers
/// every send acknowledged in it. A new leader may answer with a high
/// watermark behind what its predecessor acknowledged until its followers'
/// next fetches; one that stays behind is not waited for forever: the read
/// goes up to it, and the checker names the acknowledged sends it does not
/// reach.
fn high_watermarks_covering_acknowledged(
    consumer: &BaseConsumer,
    history: &Mutex<Vec<Op>>,
) -> BTreeMap<i32, i64> {
    let mut acknowledged_ends: BTreeMap<i32, i64> = history_partitions().map(|p| (p, 0)).collect();
    for op in history.lock().expect("a client thread panicked").iter() {
        if let Op::Acked {
            partition, offset, ..
        } = op
        {
            let end = acknowledged_ends.entry(*partition).or_default();
            *end = (*end).max(offset + 1);
        }
    }
    let deadline = Instant::now() + HIGH_WATERMARK_TIMEOUT;
    loop {
        let mut high_watermarks = BTreeMap::new();
        let mut behind = Vec::new();
        for partition in history_partitions() {
            let (topic, number) = topic_partition(partition);
            // A leader that just took over answers OFFSET_NOT_AVAILABLE
            // (retriable) until its high watermark has caught up (KIP-207).
            let high = wait_for(
                &format!("the high watermark of {topic}-{number}"),
                CLIENT_TIMEOUT,
                METADATA_POLL_INTERVAL,
                || {
                    consumer
                        .fetch_watermarks(topic, number, METADATA_REQUEST_TIMEOUT)
                        .map(|(_, high)| high)
                        .map_err(|error| error.to_string())
                },
            );
            if high < acknowledged_ends[&partition] {
                behind.push(format!(
                    "{topic}-{number}: high watermark {high}, acknowledged up to {}",
                    acknowledged_ends[&partition] - 1
                ));
            }
            high_watermarks.insert(partition, high);
        }
        if behind.is_empty() {
            return high_watermarks;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "chaos: the high watermarks stay behind acknowledged sends after \
                 {HIGH_WATERMARK_TIMEOUT:?}: {}",
                behind.join("; ")
            );
            return high_watermarks;
        }
        thread::sleep(METADATA_POLL_INTERVAL);
    }
}

// ---- reporting -------------------------------------------------------------------

/// Each anomaly with the operations it names (their positions index the
/// history).
fn describe(history: &[Op], anomalies: &[Anomaly]) -> String {
    let mut text = String::new();
    for anomaly in anomalies.iter().take(ANOMALIES_SHOWN_MAX) {
        text.push_str(&format!("{:?}:\n", anomaly.kind));
        for at in &anomaly.ops {
            text.push_str(&format!("  #{at}: {:?}\n", history.get(*at)));
        }
    }
    if anomalies.len() > ANOMALIES_SHOWN_MAX {
        text.push_str(&format!(
            "... and {} more\n",
            anomalies.len() - ANOMALIES_SHOWN_MAX
        ));
    }
    text
}

fn final_read_done_at(history: &[Op]) -> usize {
    history
        .iter()
        .rposition(|op| matches!(op, Op::FinalReadDone { .. }))
        .expect("the history ends with a final read")
}

/// `12,345,678`.
fn thousands(number: u64) -> String {
    let digits = number.to_string();
    let mut groups = Vec::new();
    let mut end = digits.len();
    while end > 3 {
        groups.push(&digits[end - 3..end]);
        end -= 3;
    }
    groups.push(&digits[..end]);
    groups.reverse();
    groups.join(",")
}

/// A number from the environment, or `default` when unset.
fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|error| panic!("{name}={value}: not a number: {error}")),
        Err(_) => default,
    }
}
