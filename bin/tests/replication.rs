//! Kafka-style partition replication across a three-node cluster, with real
//! `sluice` processes and librdkafka. One topic of three partitions, each on
//! all three brokers with `min.insync.replicas=2`, is written all along by an
//! idempotent acks=all producer while partition leaders are killed with
//! kill -9 one after another, frozen with SIGSTOP past the broker session
//! timeout (a leader that does not know it has been replaced), or cut off
//! from the other brokers by a real network partition.
//!
//! Afterwards: every acknowledged record is at the offset it was
//! acknowledged at, no record is stored twice, each partition holds its
//! records in the order they were sent, the producer made progress with a
//! broker down, and, once the cluster is shut down, the three replicas of
//! each partition hold the same record batches byte for byte (a follower
//! stores the leader's batches as they are, leader epoch stamp included).
//! A group's offsets, committed all along, are the last ones committed.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::disk::{partitions_in, KeptFull, SmallDisk};
use common::netns::TestNetwork;
use common::{
    admin_options, quorum_leader, read_all, start_cluster_on, text, wait_for, Delivery, Frozen,
    Host, Record, Stop, TestBroker, TrackedProducer, WireClient,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use sluice_engine::batch::build_batch;

const NODES: usize = 3;
const TOPIC: &str = "replicated";
const PARTITIONS: i32 = 3;
const REPLICATION_FACTOR: i32 = NODES as i32;
/// Two of three: a partition still takes acks=all writes with one replica
/// down, and never acknowledges a write that only one broker holds.
const MIN_INSYNC_REPLICAS: i32 = 2;
const _: () = assert!(MIN_INSYNC_REPLICAS < REPLICATION_FACTOR);

/// Short, so that a dead or frozen broker loses its partitions within the
/// test's time; long enough that a loaded 2-core machine does not fence a
/// healthy broker.
const BROKER_SESSION_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a frozen leader stays frozen at least: well past the session
/// timeout, so that it has certainly been fenced and replaced.
const FROZEN_MIN: Duration = Duration::from_secs(5);
const _: () = assert!(FROZEN_MIN.as_millis() > 2 * BROKER_SESSION_TIMEOUT.as_millis());
/// How long a cut-off leader stays cut off at least, for the same reason.
const PARTITIONED_MIN: Duration = FROZEN_MIN;
/// How often the lease test sends a write to a cut-off leader.
const LEASE_PROBE_INTERVAL: Duration = Duration::from_millis(50);
/// Kafka's NONE and NOT_LEADER_OR_FOLLOWER error codes.
const ERROR_NONE: i16 = 0;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
/// Produce v9: the version librdkafka 2.x sends.
const PRODUCE_VERSION: i16 = 9;

/// Bytes of every record value; it starts with its partition and sequence
/// number (`p1-00000042....`), so each value is unique and says where it
/// belongs and in which order.
const VALUE_BYTES: usize = 100;
const SEQUENCE_DIGITS: usize = 8;
/// The producer sends one record to every partition per tick: 300 records/s,
/// which a 2-core machine running three brokers and the test copes with.
const PRODUCE_TICK: Duration = Duration::from_millis(10);
/// librdkafka's `message.timeout.ms`: long enough that records are retried
/// across every failover rather than failed.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// librdkafka's `request.timeout.ms` (default 30 s): bounds how long a
/// request left with a frozen leader holds up its partition.
const PRODUCE_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One Metadata request to one broker.
const METADATA_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Between two metadata checks: each starts a client, and the brokers share
/// the machine's two cores with it.
const METADATA_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// From start-up to every broker registered with the controller.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);
/// From creating the topic, or restarting a broker, to every replica in
/// sync: the restarted broker catches up on what it missed first.
const FULL_ISR_TIMEOUT: Duration = Duration::from_secs(30);
/// From killing or freezing a leader to new leaders on every other broker:
/// the session timeout, perhaps a new controller election, and the metadata
/// reaching every broker.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the producer goes on with a broker down before it restarts.
/// Kills in the failover-time test when `SLUICE_REPLICATION_KILLS` is unset.
const KILLS_DEFAULT: usize = 2;
/// The broker added (not a voter) by the reassignment scenario.
const NEW_NODE: i32 = NODES as i32 + 1;
/// The small file system the full-disk test moves one broker onto.
const SMALL_DISK_BYTES: u64 = 128 * 1024 * 1024;
/// How soon a broker whose disk is full must leave every ISR and lead
/// nothing: well under `replica.lag.time.max.ms` (30 s), the time a
/// follower that cannot write would take to fall out of the ISRs on its
/// own, and a leader that cannot write would never give its leadership up.
const STEP_OUT_TIMEOUT: Duration = Duration::from_secs(10);
/// Times the full-disk test fills the disk: the second finds no metadata
/// space reserve left.
const DISK_FULL_ROUNDS: u32 = 2;
/// Leadership moves back to preferred replicas this often in the full-disk
/// test, so the broker whose disk fills leads partitions again after its
/// restart.
const LEADER_REBALANCE_INTERVAL_MS: &str = "1000";
/// Time for a reassignment to copy a partition and switch over.
const REASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after a kill answers the dead broker sent before it died may
/// still reach the client (they sit in the socket buffers).
const STRAGGLER_ANSWERS: Duration = Duration::from_millis(20);
/// How often the failover-time test looks for new acknowledgements.
const FAILOVER_POLL_INTERVAL: Duration = Duration::from_millis(5);
const PRODUCE_WHILE_DOWN: Duration = Duration::from_secs(2);
/// How long an acks=all write to a leader whose followers are frozen waits
/// for them: well under the session timeout, so they stay in the ISR.
const UNREPLICATED_WAIT: Duration = Duration::from_millis(700);
const _: () = assert!(UNREPLICATED_WAIT.as_millis() < BROKER_SESSION_TIMEOUT.as_millis());
/// For new acknowledgements in every partition.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(20);
const PROGRESS_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Examples shown when a check fails.
const EXAMPLES_MAX: usize = 10;
/// The group whose offsets a thread of the load commits all along: its
/// committed offsets must come through every scenario as the records do
/// (they live in `__consumer_offsets`, replicated like any partition, and
/// its coordinator fails over with that partition's leader).
const GROUP: &str = "replicated-offsets";
/// Between two offset commits of that thread.
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);
/// Fewest commits that must succeed over a scenario: the committer made
/// progress, so the check below has something to check.
const COMMITS_MIN: u64 = 5;

// A stored record batch (docs/format.md, Kafka's v2 batch): only the fields
// the test reads.
const BATCH_BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = BATCH_BASE_OFFSET_AT + 8;
/// Bytes before those `batch_length` counts.
const BATCH_LOG_OVERHEAD: usize = BATCH_LENGTH_AT + 4;
const BATCH_LAST_OFFSET_DELTA_AT: usize = 23;
/// The batch header up to the first record.
const BATCH_HEADER_BYTES: usize = 61;
const _: () = assert!(BATCH_LAST_OFFSET_DELTA_AT + 4 <= BATCH_HEADER_BYTES);
/// A segment file is named by its base offset in this many digits + `.log`.
const SEGMENT_NAME_DIGITS: usize = 20;

/// Each broker in turn, while it leads a partition, is killed with kill -9,
/// its partitions fail over to the two others and keep taking writes, and
/// it is restarted and catches up until all three are in sync again.
#[test]
fn kill_each_leader_in_turn() {
    let mut brokers = start_replicated_cluster();
    let mut layout = wait_for_full_isr(&brokers, "after the topic was created");
    let load = Load::start(&brokers);
    load.wait_for_progress(&no_acknowledgements(), "before any broker is killed");
    let mut killed = BTreeSet::new();
    for round in 1..=NODES {
        let victim = choose_victim(&layout, &killed);
        killed.insert(victim);
        let killed_at = Instant::now();
        brokers[index_of(victim)].stop(Stop::Kill);
        wait_for_new_leaders(
            &brokers,
            victim,
            &format!("round {round}: broker {victim} killed"),
        );
        let failover = killed_at.elapsed();
        // With two replicas left, min.insync.replicas=2 is still met: the
        // partitions take acks=all writes while the broker is down.
        let before = load.acknowledged_by_partition();
        thread::sleep(PRODUCE_WHILE_DOWN);
        load.wait_for_progress(&before, &format!("round {round}: broker {victim} down"));
        let restarted_at = Instant::now();
        brokers[index_of(victim)].start_again();
        layout = wait_for_full_isr(
            &brokers,
            &format!("round {round}: broker {victim} restarted"),
        );
        eprintln!(
            "round {round}: broker {victim} killed; new leaders after {} ms; \
             all replicas in sync {} ms after its restart",
            failover.as_millis(),
            restarted_at.elapsed().as_millis()
        );
    }
    let outcome = load.finish();
    check_after_scenario(&mut brokers, &outcome);
}

/// Failover as a producer sees it: from kill -9 of a leader to the first
/// acknowledgement, in every partition it led, of a write taken by the new
/// leader. `SLUICE_REPLICATION_KILLS=N` runs N kills (the README's figures
/// come from a run of 21); CI runs `KILLS_DEFAULT`. Each killed broker is
/// restarted and caught up before the next kill, and the usual checks run
/// at the end.
#[test]
fn failover_time_over_repeated_kills() {
    let kills: usize = std::env::var("SLUICE_REPLICATION_KILLS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(KILLS_DEFAULT);
    let mut brokers = start_replicated_cluster();
    let mut layout = wait_for_full_isr(&brokers, "after the topic was created");
    let load = Load::start(&brokers);
    load.wait_for_progress(&no_acknowledgements(), "before any broker is killed");
    let mut times = Vec::with_capacity(kills);
    for round in 1..=kills {
        let killed = BTreeSet::new();
        let victim = choose_victim(&layout, &killed);
        let led: Vec<i32> = layout
            .iter()
            .filter(|state| state.leader == victim)
            .map(|state| state.partition)
            .collect();
        let killed_at = Instant::now();
        brokers[index_of(victim)].stop(Stop::Kill);
        // Answers the dead leader had already sent may still be read by the
        // client: they are counted before the new leader's are looked for.
        thread::sleep(STRAGGLER_ANSWERS);
        let before = load.acknowledged_by_partition();
        wait_for(
            &format!("round {round}: an acknowledgement from the new leader of {led:?}"),
            FAILOVER_TIMEOUT,
            FAILOVER_POLL_INTERVAL,
            || {
                let now = load.acknowledged_by_partition();
                match led
                    .iter()
                    .find(|partition| now[partition] <= before[partition])
                {
                    None => Ok(()),
                    Some(partition) => Err(format!("partition {partition}: none yet")),
                }
            },
        );
        let failover = killed_at.elapsed();
        times.push(failover);
        brokers[index_of(victim)].start_again();
        layout = wait_for_full_isr(
            &brokers,
            &format!("round {round}: broker {victim} restarted"),
        );
        eprintln!(
            "failover round {round}: broker {victim} (leading {led:?}) killed; first \
             acknowledgement from the new leaders after {} ms",
            failover.as_millis()
        );
    }
    times.sort();
    eprintln!(
        "failover over {kills} kills: median {} ms, worst {} ms",
        times[times.len() / 2].as_millis(),
        times.last().map_or(0, Duration::as_millis)
    );
    let outcome = load.finish();
    check_after_scenario(&mut brokers, &outcome);
}

/// A leader frozen with SIGSTOP past the session timeout is fenced and
/// replaced; thawed, it learns it is a follower, drops what it alone holds,
/// and catches up. The frozen broker is also the active controller: on
/// waking it still believes it leads the quorum, and none of the decisions
/// it makes from its stale image (fencing brokers it has not heard from
/// while frozen, partition states from before the failover) may commit.
#[test]
fn sigstop_leader_loses_leadership() {
    let mut brokers = start_replicated_cluster();
    let layout = wait_for_full_isr(&brokers, "after the topic was created");
    let load = Load::start(&brokers);
    load.wait_for_progress(&no_acknowledgements(), "before the leader is frozen");
    let victim = quorum_leader(&brokers[0]);
    assert!(
        layout.iter().any(|state| state.leader == victim),
        "the active controller {victim} leads no partition of {layout:?}"
    );
    // Declared after `load` and `brokers`, so dropped (thawed) before them
    // when the test fails.
    let frozen = Frozen::freeze(&brokers[index_of(victim)]);
    let frozen_at = Instant::now();
    wait_for_new_leaders(
        &brokers,
        victim,
        &format!("broker {victim} frozen with SIGSTOP"),
    );
    let failover = frozen_at.elapsed();
    thread::sleep(FROZEN_MIN.saturating_sub(frozen_at.elapsed()));
    // Thawed, it still believes it leads until it learns otherwise: it must
    // neither acknowledge a write nor keep one the new leaders do not have.
    frozen.thaw();
    let thawed_at = Instant::now();
    wait_for_full_isr(&brokers, &format!("broker {victim} thawed with SIGCONT"));
    let in_sync = thawed_at.elapsed();
    let before = load.acknowledged_by_partition();
    load.wait_for_progress(&before, "after the frozen leader was thawed");
    eprintln!(
        "broker {victim} frozen; new leaders after {} ms; thawed after {} ms; \
         all replicas in sync {} ms later",
        failover.as_millis(),
        thawed_at.duration_since(frozen_at).as_millis(),
        in_sync.as_millis()
    );
    let outcome = load.finish();
    check_after_scenario(&mut brokers, &outcome);
}

/// SIGTERM is a controlled shutdown, as in Kafka: before the broker stops,
/// the controller moves its leaderships to other in-sync replicas, so the
/// other brokers name new leaders as soon as it has exited, not a session
/// timeout later (when a killed broker's leaderships would move).
#[test]
fn sigterm_hands_leadership_over_first() {
    let mut brokers = start_replicated_cluster();
    let before_stop = wait_for_full_isr(&brokers, "after the topic was created");
    let load = Load::start(&brokers);
    load.wait_for_progress(&no_acknowledgements(), "before the broker is stopped");
    let victim = choose_victim(&before_stop, &BTreeSet::new());
    let clean = brokers[index_of(victim)].stop(Stop::Term);
    let stopped_at = Instant::now();
    assert!(clean, "broker {victim} did not stop cleanly on SIGTERM");
    wait_for(
        &format!("new leaders within the session timeout of broker {victim} stopping"),
        BROKER_SESSION_TIMEOUT,
        Duration::ZERO,
        || {
            for (index, broker) in brokers.iter().enumerate() {
                let node = node_id(index);
                if node == victim {
                    continue;
                }
                let layout = layout(broker).map_err(|error| format!("broker {node}: {error}"))?;
                if let Some(state) = layout.iter().find(|state| state.leader == victim) {
                    return Err(format!("broker {node} reports {state:?}"));
                }
            }
            Ok(())
        },
    );
    eprintln!(
        "broker {victim} stopped; the others named new leaders {} ms after it exited",
        stopped_at.elapsed().as_millis()
    );
    let before = load.acknowledged_by_partition();
    load.wait_for_progress(&before, &format!("with broker {victim} stopped"));
    brokers[index_of(victim)].start_again();
    wait_for_full_isr(&brokers, &format!("broker {victim} restarted"));
    let outcome = load.finish();
    // A controlled shutdown shows the producer retriable errors at most:
    // every record it sent is delivered in the end.
    let failed: Vec<&String> = outcome
        .reports
        .iter()
        .filter_map(|report| report.as_ref().err())
        .collect();
    assert!(
        failed.is_empty(),
        "{} deliveries failed across broker {victim}'s controlled shutdown, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(EXAMPLES_MAX)]
    );
    check_after_scenario(&mut brokers, &outcome);
}

/// A real network partition: each broker on its own host (network
/// namespace), and the leader of a partition, also the active controller,
/// cut off from both other brokers (their packets dropped) while the
/// clients still reach it. The majority fences it, elects new leaders and
/// keeps taking acks=all writes; the cut-off broker acknowledges none of
/// what it alone holds (its followers stopped fetching, and it cannot
/// shrink the ISR without the controller). Healed, it follows the new
/// leaders, drops what it alone holds and catches up.
#[test]
fn network_partition_cuts_off_a_leader() {
    let Some(network) = TestNetwork::or_skip(NODES, "network_partition_cuts_off_a_leader") else {
        return;
    };
    let hosts: Vec<Host> = (0..NODES).map(|index| network.host(index)).collect();
    let mut brokers = start_replicated_cluster_on(&hosts);
    let layout = wait_for_full_isr(&brokers, "after the topic was created");
    let load = Load::start(&brokers);
    load.wait_for_progress(&no_acknowledgements(), "before the network is cut");
    let victim = quorum_leader(&brokers[0]);
    assert!(
        layout.iter().any(|state| state.leader == victim),
        "the active controller {victim} leads no partition of {layout:?}"
    );
    let isolated = index_of(victim);
    let others: Vec<usize> = (0..NODES).filter(|index| *index != isolated).collect();
    for other in &others {
        network.cut(isolated, *other);
    }
    let cut_at = Instant::now();
    wait_for_new_leaders(
        &brokers,
        victim,
        &format!("broker {victim} cut off from the others"),
    );
    let failover = cut_at.elapsed();
    let before = load.acknowledged_by_partition();
    load.wait_for_progress(&before, &format!("with broker {victim} cut off"));
    thread::sleep(PARTITIONED_MIN.saturating_sub(cut_at.elapsed()));
    for other in &others {
        network.heal(isolated, *other);
    }
    let healed_at = Instant::now();
    wait_for_full_isr(&brokers, &format!("the network to broker {victim} healed"));
    let in_sync = healed_at.elapsed();
    let before = load.acknowledged_by_partition();
    load.wait_for_progress(&before, "after the network healed");
    eprintln!(
        "broker {victim} cut off; new leaders after {} ms; healed after {} ms; \
         all replicas in sync {} ms later",
        failover.as_millis(),
        healed_at.duration_since(cut_at).as_millis(),
        in_sync.as_millis()
    );
    let outcome = load.finish();
    check_after_scenario(&mut brokers, &outcome);
}

/// A partition leader cut off from the controller (and from the other
/// brokers) while clients still reach it stops acknowledging writes before
/// the controller can have fenced it and elected another leader: acks=1
/// writes it took after that would be thrown away when it rejoins (as a
/// Kafka broker's are). The leader chosen is not the active controller
/// (if any such leader exists), which is the case no quorum machinery
/// covers: a follower of the quorum that simply stops hearing from it.
/// Skipped where network namespaces cannot be created (CI requires them).
#[test]
fn a_cut_off_leader_stops_taking_writes_before_it_is_replaced() {
    let Some(network) = TestNetwork::or_skip(
        NODES,
        "a_cut_off_leader_stops_taking_writes_before_it_is_replaced",
    ) else {
        return;
    };
    let hosts: Vec<Host> = (0..NODES).map(|index| network.host(index)).collect();
    let brokers = start_replicated_cluster_on(&hosts);
    let layout = wait_for_full_isr(&brokers, "after the topic was created");
    let controller = quorum_leader(&brokers[0]);
    let chosen = layout
        .iter()
        .find(|state| state.leader != controller)
        .or_else(|| layout.first())
        .expect("a partition");
    let (victim, partition) = (chosen.leader, chosen.partition);
    let index = index_of(victim);
    let mut client = WireClient::new(&brokers[index]);
    assert_eq!(
        produce_acks_1(&mut client, partition),
        ERROR_NONE,
        "broker {victim} takes writes to partition {partition} before the cut"
    );
    let others: Vec<usize> = (0..NODES).filter(|other| *other != index).collect();
    for other in &others {
        network.cut(index, *other);
    }
    let cut_at = Instant::now();
    // (when sent after the cut, answer), for every write sent to it.
    let mut answers: Vec<(Duration, i16)> = Vec::new();
    while cut_at.elapsed() < PARTITIONED_MIN {
        let sent = cut_at.elapsed();
        answers.push((sent, produce_acks_1(&mut client, partition)));
        thread::sleep(LEASE_PROBE_INTERVAL);
    }
    for other in &others {
        network.heal(index, *other);
    }
    wait_for_full_isr(&brokers, &format!("the network to broker {victim} healed"));
    let last_acknowledged = answers
        .iter()
        .filter(|(_, code)| *code == ERROR_NONE)
        .map(|(sent, _)| *sent)
        .max();
    let first_refused = answers
        .iter()
        .find(|(_, code)| *code == NOT_LEADER_OR_FOLLOWER)
        .map(|(sent, _)| *sent);
    eprintln!(
        "broker {victim} (controller: {controller}) cut off: {} writes sent, last acknowledged \
         {last_acknowledged:?} after the cut, first refused {first_refused:?} after it",
        answers.len()
    );
    assert!(
        last_acknowledged.is_none_or(|sent| sent < BROKER_SESSION_TIMEOUT),
        "broker {victim} acknowledged a write sent {last_acknowledged:?} after it was cut off, \
         when the controller may already have fenced it (session {BROKER_SESSION_TIMEOUT:?})"
    );
    let unexpected: Vec<&(Duration, i16)> = answers
        .iter()
        .filter(|(_, code)| ![ERROR_NONE, NOT_LEADER_OR_FOLLOWER].contains(code))
        .collect();
    assert!(
        unexpected.is_empty(),
        "answers other than NONE or NOT_LEADER_OR_FOLLOWER: {unexpected:?}"
    );
    assert!(
        answers
            .iter()
            .any(|(sent, code)| *sent > BROKER_SESSION_TIMEOUT && *code == NOT_LEADER_OR_FOLLOWER),
        "broker {victim} stopped answering instead of refusing: {answers:?}"
    );
}

/// A leader that was alone in its ISR commits what it appends at once; once
/// its followers are back in the ISR, acks=all must wait for them again.
/// Its two followers (observers of the metadata quorum, so that freezing
/// both leaves the quorum whole) are frozen until fenced, which leaves the
/// leader alone in the ISR, then thawed until both are back in it, then
/// frozen again: a write sent now cannot be acknowledged, as no follower
/// can fetch it. A leader whose high watermark still followed its log end
/// acknowledged it at once, and a failover then lost it (the fault harness
/// found this as acknowledged records missing from the new leader).
#[test]
fn acks_all_waits_for_followers_back_in_the_isr() {
    let session_timeout = BROKER_SESSION_TIMEOUT.as_millis().to_string();
    let args = ["--broker-session-timeout-ms", session_timeout.as_str()];
    let mut brokers = common::start_cluster_with(NODES, &args);
    let followers = [NEW_NODE, NEW_NODE + 1];
    for node in followers {
        brokers.push(common::start_observer(&brokers, node, &args));
    }
    wait_for_registration(&brokers);
    let leader = node_id(0);
    let replicas = [leader, followers[0], followers[1]];
    let admin = brokers[0].admin();
    let min_insync_replicas = MIN_INSYNC_REPLICAS.to_string();
    let assignment: [&[i32]; 1] = [&replicas];
    let topic = NewTopic::new(TOPIC, 1, TopicReplication::Variable(&assignment))
        .set("min.insync.replicas", &min_insync_replicas);
    let results = futures_lite::future::block_on(admin.create_topics(&[topic], &admin_options()))
        .expect("CreateTopics answered");
    if let Err((topic, code)) = &results[0] {
        panic!("creating topic {topic}: {code:?}");
    }
    let isr_is = |wanted: &[i32], why: &str| {
        let mut wanted = wanted.to_vec();
        wanted.sort_unstable();
        wait_for(
            &format!("ISR {wanted:?} with leader {leader} ({why})"),
            FAILOVER_TIMEOUT,
            METADATA_POLL_INTERVAL,
            || {
                let metadata = brokers[0]
                    .consumer(&[])
                    .fetch_metadata(Some(TOPIC), METADATA_REQUEST_TIMEOUT)
                    .map_err(|error| format!("Metadata: {error}"))?;
                let partition = metadata
                    .topics()
                    .first()
                    .and_then(|topic| topic.partitions().first())
                    .ok_or("no partition")?;
                let mut isr = partition.isr().to_vec();
                isr.sort_unstable();
                if partition.leader() == leader && isr == wanted {
                    Ok(())
                } else {
                    Err(format!("leader {} isr {isr:?}", partition.leader()))
                }
            },
        )
    };
    isr_is(&replicas, "after the topic was created");
    let mut client = WireClient::new(&brokers[0]);
    assert_eq!(
        produce_one(&mut client, 0, -1, PRODUCE_REQUEST_TIMEOUT),
        ERROR_NONE,
        "acks=all with every replica in sync"
    );
    let frozen: Vec<Frozen> = followers
        .iter()
        .map(|node| Frozen::freeze(&brokers[*node as usize - 1]))
        .collect();
    isr_is(&[leader], "both followers frozen and fenced");
    for follower in frozen {
        follower.thaw();
    }
    isr_is(&replicas, "both followers thawed and caught up");
    let _frozen: Vec<Frozen> = followers
        .iter()
        .map(|node| Frozen::freeze(&brokers[*node as usize - 1]))
        .collect();
    // Well within the session timeout: both followers are still in the ISR
    // for the whole wait, and hold nothing of the write.
    let code = produce_one(&mut client, 0, -1, UNREPLICATED_WAIT);
    assert_ne!(
        code, ERROR_NONE,
        "broker {leader} acknowledged an acks=all write that neither follower in its ISR \
         could have fetched (both frozen)"
    );
    eprintln!("acks=all with both followers frozen in the ISR: error code {code}");
}

/// One Produce of a single record to `partition` with `acks`, answered
/// within `timeout` with the partition's error code.
fn produce_one(client: &mut WireClient, partition: i32, acks: i16, timeout: Duration) -> i16 {
    let mut data = PartitionProduceData::default();
    data.index = partition;
    data.records = Some(bytes::Bytes::from(build_batch(0, &[b"leased"])));
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(text(TOPIC));
    topic.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    request.topic_data = vec![topic];
    let response: ProduceResponse = client.call(ApiKey::Produce, PRODUCE_VERSION, &request);
    response
        .responses
        .first()
        .and_then(|topic| topic.partition_responses.first())
        .map(|answer| answer.error_code)
        .expect("an answer for the partition")
}

/// One acks=1 Produce of a single record to `partition`, answered with the
/// partition's error code.
fn produce_acks_1(client: &mut WireClient, partition: i32) -> i16 {
    produce_one(client, partition, 1, PRODUCE_REQUEST_TIMEOUT)
}

/// A follower that crashes and is restarted before the active controller
/// noticed must not come back into the ISRs as if nothing happened: its
/// new process lost whatever the old one had not written yet, and an ISR
/// member may be elected leader. Its previous process is fenced first
/// (which takes it out of the ISRs), then it registers again and rejoins
/// once caught up. The crash here happens while the follower is cut off,
/// so the controller never sees its connections close and only the
/// session timeout can tell: a restarted process talking under the same
/// node id must not keep its dead predecessor alive. Skipped where network
/// namespaces cannot be created (CI requires them).
#[test]
fn a_follower_restarted_before_it_was_fenced_leaves_the_isrs_first() {
    let Some(network) = TestNetwork::or_skip(
        NODES,
        "a_follower_restarted_before_it_was_fenced_leaves_the_isrs_first",
    ) else {
        return;
    };
    let hosts: Vec<Host> = (0..NODES).map(|index| network.host(index)).collect();
    let mut brokers = start_replicated_cluster_on(&hosts);
    wait_for_full_isr(&brokers, "after the topic was created");
    let controller = quorum_leader(&brokers[0]);
    let victim = (1..=NODES as i32)
        .find(|node| *node != controller)
        .expect("a voter that is not the controller");
    let index = index_of(victim);
    let others: Vec<usize> = (0..NODES).filter(|other| *other != index).collect();
    for other in &others {
        network.cut(index, *other);
    }
    brokers[index].stop(Stop::Kill);
    for other in &others {
        network.heal(index, *other);
    }
    let restarted_at = Instant::now();
    brokers[index].start_again();
    let registered = restarted_at.elapsed();
    let fenced = |broker: &TestBroker| {
        broker.log().lines().any(|line| {
            line.contains("fencing a broker") && line.contains(&format!("broker={victim} "))
        })
    };
    assert!(
        others.iter().any(|other| fenced(&brokers[*other])),
        "the previous process of broker {victim} was never fenced"
    );
    // (It waits only if it starts within the session timeout; on a loaded
    // machine its start may take longer.)
    let waited = brokers[index]
        .log()
        .contains("waiting for the active controller to fence this node's previous process");
    wait_for_full_isr(&brokers, &format!("broker {victim} restarted"));
    eprintln!(
        "broker {victim} killed while cut off and restarted at once: registered {} ms after \
         the restart (waited for its previous process to be fenced: {waited})",
        registered.as_millis()
    );
    stop_all_cleanly(&mut brokers);
}

// ---- the cluster and its metadata ----------------------------------------

/// Reassignment while the producer keeps writing: a fourth broker, not a
/// voter, joins the running cluster; partition 0 moves off its leader onto
/// it (the leadership moves with it) and partition 1 swaps a follower for
/// it. Each added replica copies the log from the leader, joins the ISR,
/// and then the removed replicas go; afterwards the usual checks run over
/// the new placement, and the removed brokers hold no copy.
#[test]
fn reassignment_to_a_new_broker_under_load() {
    let mut brokers = start_replicated_cluster();
    let initial = wait_for_full_isr(&brokers, "after the topic was created");
    let load = Load::start(&brokers);
    load.wait_for_progress(&no_acknowledgements(), "before the fourth broker starts");
    brokers.push(common::start_observer(&brokers, NEW_NODE, &[]));
    wait_for_registration(&brokers);
    let moved_leader = &initial[0];
    let mut off_the_leader = vec![NEW_NODE];
    off_the_leader.extend(
        moved_leader
            .replicas
            .iter()
            .copied()
            .filter(|id| *id != moved_leader.leader),
    );
    let swapped = &initial[1];
    let follower = *swapped
        .replicas
        .iter()
        .rev()
        .find(|id| **id != swapped.leader)
        .expect("a follower");
    let swapped_follower: Vec<i32> = swapped
        .replicas
        .iter()
        .map(|id| if *id == follower { NEW_NODE } else { *id })
        .collect();
    let targets = BTreeMap::from([(0, off_the_leader), (1, swapped_follower)]);
    let before = load.acknowledged_by_partition();
    let started = Instant::now();
    alter_reassignments(&brokers[0], &targets);
    let done = wait_for(
        "the reassignments to complete",
        REASSIGNMENT_TIMEOUT,
        METADATA_POLL_INTERVAL,
        || {
            let now = layout(&brokers[NEW_NODE as usize - 1])?;
            for (partition, target) in &targets {
                let state = &now[*partition as usize];
                let mut isr = state.isr.clone();
                isr.sort_unstable();
                let mut wanted = target.clone();
                wanted.sort_unstable();
                if state.replicas != *target || isr != wanted {
                    return Err(format!("{state:?}"));
                }
            }
            Ok(now)
        },
    );
    eprintln!(
        "reassignments complete after {} ms: {:?}",
        started.elapsed().as_millis(),
        &done[..2]
    );
    assert_eq!(
        done[0].leader, NEW_NODE,
        "partition 0's leader left its replicas, so the first target replica leads"
    );
    assert_eq!(
        done[1].leader, swapped.leader,
        "partition 1 kept its leader"
    );
    load.wait_for_progress(&before, "across the reassignments");
    let outcome = load.finish();
    check_after_scenario(&mut brokers, &outcome);
}

/// Records deleted on the leader (DeleteRecords) before a partition moves
/// to a new broker: the new replica, whose log ends before the leader's
/// starts, starts its log afresh at the leader's log start and copies the
/// rest; the replicas that stay move their log start with the leader, so
/// whichever of them leads next starts where the leader did.
#[test]
fn a_new_replica_starts_at_the_leaders_log_start() {
    const RECORDS: usize = 300;
    const CUT: i64 = 180;
    let mut brokers = start_replicated_cluster();
    let initial = wait_for_full_isr(&brokers, "after the topic was created");
    let records: Vec<Record> = (0..RECORDS)
        .map(|index| Record::with_value(0, record_value(0, index as u64)))
        .collect();
    common::produce_all(&brokers[0], TOPIC, &[("acks", "all")], &records);
    let mut cut = rdkafka::TopicPartitionList::new();
    cut.add_partition_offset(TOPIC, 0, rdkafka::Offset::Offset(CUT))
        .expect("an offset");
    let deleted =
        futures_lite::future::block_on(brokers[0].admin().delete_records(&cut, &admin_options()))
            .expect("DeleteRecords answered");
    assert_eq!(
        (
            deleted.elements()[0].offset(),
            deleted.elements()[0].error()
        ),
        (rdkafka::Offset::Offset(CUT), Ok(())),
        "DeleteRecords moved the log start"
    );
    assert_eq!(
        brokers[0]
            .consumer(&[])
            .fetch_watermarks(TOPIC, 0, METADATA_REQUEST_TIMEOUT)
            .map_err(|error| error.to_string()),
        Ok((CUT, RECORDS as i64)),
        "the leader's log starts at the cut"
    );
    brokers.push(common::start_observer(&brokers, NEW_NODE, &[]));
    wait_for_registration(&brokers);
    let moved = &initial[0];
    let mut target = vec![NEW_NODE];
    target.extend(
        moved
            .replicas
            .iter()
            .copied()
            .filter(|id| *id != moved.leader),
    );
    alter_reassignments(&brokers[0], &BTreeMap::from([(0, target.clone())]));
    wait_for(
        "partition 0 to move onto the new broker",
        REASSIGNMENT_TIMEOUT,
        METADATA_POLL_INTERVAL,
        || {
            let now = layout(&brokers[0])?;
            let mut isr = now[0].isr.clone();
            isr.sort_unstable();
            let mut wanted = target.clone();
            wanted.sort_unstable();
            if now[0].replicas == target && isr == wanted && now[0].leader == NEW_NODE {
                Ok(())
            } else {
                Err(format!("{:?}", now[0]))
            }
        },
    );
    let watermarks = |broker: &TestBroker| {
        broker
            .consumer(&[])
            .fetch_watermarks(TOPIC, 0, METADATA_REQUEST_TIMEOUT)
            .map_err(|error| format!("ListOffsets: {error}"))
    };
    let new_node = &brokers[NEW_NODE as usize - 1];
    assert_eq!(
        watermarks(new_node),
        Ok((CUT, RECORDS as i64)),
        "the new replica leads from the leader's log start"
    );
    // The replicas that stayed: one of them leads once the new one is gone.
    brokers[NEW_NODE as usize - 1].stop(Stop::Kill);
    let survivor = &brokers[index_of(target[1])];
    let after = wait_for(
        "a replica that stayed to lead partition 0",
        FAILOVER_TIMEOUT,
        METADATA_POLL_INTERVAL,
        || {
            let now = layout(survivor)?;
            if now[0].leader >= 0 && now[0].leader != NEW_NODE {
                watermarks(survivor)
            } else {
                Err(format!("{:?}", now[0]))
            }
        },
    );
    assert_eq!(
        after,
        (CUT, RECORDS as i64),
        "the log start followed the leader's on the replicas that stayed"
    );
    let read = read_all(survivor, TOPIC, 1);
    let values: Vec<Option<Vec<u8>>> = read[&0].iter().map(|record| record.value.clone()).collect();
    let expected: Vec<Option<Vec<u8>>> = records[CUT as usize..]
        .iter()
        .map(|record| record.value.clone())
        .collect();
    assert_eq!(values.len(), expected.len());
    assert!(values == expected, "the records from the cut on, in order");
}

/// A broker whose disk fills up (to its writes, a failing disk) steps out
/// of the cluster: its leaderships move and it leaves every ISR long
/// before `replica.lag.time.max.ms` would take it out, while acks=all
/// writes go on with the two others; once space returns it registers
/// again, catches up and rejoins every ISR. Nothing acknowledged is lost
/// or doubled, and the replicas end byte-identical. Needs root (a
/// loop-mounted file system), as CI runs it.
///
/// It found a lost acknowledged write: a follower whose return to the ISR
/// was on its way to the controller was not counted in the high watermark,
/// so a record it lacked was acknowledged, and the preferred-leader move
/// right after its return made it the leader without that record.
///
/// The disk fills twice: the first time, the metadata space reserve is
/// given up so that the metadata log can still be written; the second
/// time there is none, the metadata log write fails, and the broker leaves
/// the metadata quorum. It once stayed out until restarted; now it comes
/// back once its disk has room again.
#[test]
fn a_full_disk_takes_only_its_broker_out_of_the_isrs() {
    // Declared before the brokers: unmounted after they have stopped.
    let disk: SmallDisk;
    let hosts: Vec<Host> = (0..NODES).map(|_| Host::loopback()).collect();
    let mut brokers = start_replicated_cluster_with(
        &hosts,
        &[
            "--leader-imbalance-check-interval-ms",
            LEADER_REBALANCE_INTERVAL_MS,
        ],
    );
    let layout_before = wait_for_full_isr(&brokers, "after the topic was created");
    let victim = choose_victim(&layout_before, &BTreeSet::new());
    let index = index_of(victim);
    brokers[index].stop(Stop::Term);
    disk = SmallDisk::move_onto(&brokers[index].data_dir(), SMALL_DISK_BYTES);
    brokers[index].start_again();
    let load = Load::start(&brokers);
    load.wait_for_progress(&no_acknowledgements(), "before the disk fills");
    for round in 1..=DISK_FULL_ROUNDS {
        wait_for(
            &format!("broker {victim} leading again on its small disk (round {round})"),
            FULL_ISR_TIMEOUT,
            METADATA_POLL_INTERVAL,
            || {
                let layout = layout(&brokers[0])?;
                fully_replicated(&layout)?;
                leaders(&layout)
                    .contains(&victim)
                    .then_some(())
                    .ok_or_else(|| format!("leaders {:?}", leaders(&layout)))
            },
        );
        let led: Vec<i32> = layout(&brokers[0])
            .expect("layout")
            .iter()
            .filter(|state| state.leader == victim)
            .map(|state| state.partition)
            .collect();
        let ballast = brokers[index].data_dir().join(".ballast");
        let filled_at = Instant::now();
        let full = KeptFull::fill(&ballast);
        let filled = filled_at.elapsed();
        wait_for(
            &format!("broker {victim}, its disk full, out of every ISR and leading nothing (round {round})"),
            STEP_OUT_TIMEOUT,
            METADATA_POLL_INTERVAL,
            || {
                for (other, broker) in brokers.iter().enumerate() {
                    if other == index {
                        continue;
                    }
                    for state in layout(broker)? {
                        if state.leader == victim || state.isr.contains(&victim) {
                            return Err(format!("broker {} reports {state:?}", node_id(other)));
                        }
                    }
                }
                Ok(())
            },
        );
        let stepped_out = filled_at.elapsed();
        let since = load.acknowledged_by_partition();
        load.wait_for_progress(&since, "with the full disk's broker out of the ISRs");
        full.free();
        let freed_at = Instant::now();
        wait_for_full_isr(
            &brokers,
            &format!("space returned on the full disk (round {round})"),
        );
        eprintln!(
            "round {round}: broker {victim} (leading {led:?}): disk filled in {} ms; out of \
             every ISR {} ms after the filling began; back in every ISR {} ms after space \
             returned",
            filled.as_millis(),
            stepped_out.as_millis(),
            freed_at.elapsed().as_millis()
        );
    }
    let outcome = load.finish();
    check_after_scenario(&mut brokers, &outcome);
    drop(brokers);
    drop(disk);
}

/// The second topic of the failing-directory test: enough partitions
/// that the broker whose second directory fails leads some of them there.
const SPREAD_TOPIC: &str = "spread";
const SPREAD_PARTITIONS: i32 = 12;
/// Sends to the second topic, one to each partition in turn, this far
/// apart.
const SPREAD_ROUNDS: usize = 40;
const SPREAD_SEND_INTERVAL: Duration = Duration::from_millis(5);

/// Kafka's JBOD failure handling: one of a broker's two data directories
/// dies under load (its file system shut down: EIO on every I/O). Only the
/// broker's replicas in it leave their ISRs and hand over their
/// leaderships; the broker stays registered and keeps leading, and in the
/// ISRs of, the partitions in its working directory. Records sent to the
/// failed directory's partitions are acknowledged by the new leaders, and
/// nothing acknowledged anywhere is lost.
#[test]
fn a_failing_data_directory_moves_only_its_own_partitions() {
    // Declared before the brokers: unmounted after they have stopped.
    let disk: SmallDisk;
    let hosts: Vec<Host> = (0..NODES).map(|_| Host::loopback()).collect();
    // Leaderships go back to preferred replicas soon, so the victim leads
    // again after its restart.
    let mut brokers = start_replicated_cluster_with(
        &hosts,
        &[
            "--leader-imbalance-check-interval-ms",
            LEADER_REBALANCE_INTERVAL_MS,
        ],
    );
    let layout_before = wait_for_full_isr(&brokers, "after the topic was created");
    let victim = choose_victim(&layout_before, &BTreeSet::new());
    let index = index_of(victim);
    // The victim gets a second directory, on a disk of its own.
    brokers[index].stop(Stop::Term);
    let second = brokers[index].root().join("disk1");
    disk = SmallDisk::mount(&second, SMALL_DISK_BYTES);
    let dirs = format!(
        "{},{}",
        brokers[index].data_dir().display(),
        second.display()
    );
    brokers[index].add_args(&["--log-dirs", &dirs]);
    brokers[index].start_again();
    wait_for_full_isr(&brokers, "the victim back with two directories");
    // A second topic: on the victim its partitions go to the new, empty
    // directory first (each shard fills its emptiest directory).
    let admin = brokers[0].admin();
    let min_insync_replicas = MIN_INSYNC_REPLICAS.to_string();
    let spread = NewTopic::new(
        SPREAD_TOPIC,
        SPREAD_PARTITIONS,
        TopicReplication::Fixed(REPLICATION_FACTOR),
    )
    .set("min.insync.replicas", &min_insync_replicas);
    let results = futures_lite::future::block_on(admin.create_topics(&[spread], &admin_options()))
        .expect("CreateTopics answered");
    assert!(results[0].is_ok(), "{results:?}");
    let on_failing = partitions_in(&second, SPREAD_TOPIC);
    let spread_before = wait_for(
        "the second topic fully in sync",
        FULL_ISR_TIMEOUT,
        METADATA_POLL_INTERVAL,
        || {
            let layout = topic_layout(&brokers[0], SPREAD_TOPIC, SPREAD_PARTITIONS)?;
            fully_replicated(&layout)?;
            Ok(layout)
        },
    );
    let led_there: Vec<i32> = spread_before
        .iter()
        .filter(|state| state.leader == victim && on_failing.contains(&state.partition))
        .map(|state| state.partition)
        .collect();
    assert!(
        !led_there.is_empty(),
        "broker {victim} leads none of {on_failing:?} in its second directory: {spread_before:?}"
    );
    let kept_before = wait_for(
        &format!("broker {victim} leading again in its first directory"),
        FULL_ISR_TIMEOUT,
        METADATA_POLL_INTERVAL,
        || {
            let layout = layout(&brokers[0])?;
            fully_replicated(&layout)?;
            leaders(&layout)
                .contains(&victim)
                .then_some(layout.clone())
                .ok_or_else(|| format!("leaders {:?}", leaders(&layout)))
        },
    );
    let led_elsewhere: Vec<i32> = kept_before
        .iter()
        .filter(|state| state.leader == victim)
        .map(|state| state.partition)
        .collect();

    let load = Load::start(&brokers);
    load.wait_for_progress(&no_acknowledgements(), "before the directory fails");
    let mut producer = TrackedProducer::for_cluster(
        &brokers,
        SPREAD_TOPIC,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            (
                "message.timeout.ms",
                &DELIVERY_TIMEOUT.as_millis().to_string(),
            ),
        ],
    );
    let sends = SPREAD_ROUNDS * SPREAD_PARTITIONS as usize;
    for sequence in 0..sends {
        if sequence == sends / 2 {
            disk.fail();
        }
        let partition = sequence as i32 % SPREAD_PARTITIONS;
        producer.send(&Record::with_value(
            partition,
            record_value(partition, sequence as u64),
        ));
        thread::sleep(SPREAD_SEND_INTERVAL);
    }
    let failed_at = Instant::now();
    wait_for(
        &format!("broker {victim} out of the ISRs of its failed directory's partitions only"),
        STEP_OUT_TIMEOUT,
        METADATA_POLL_INTERVAL,
        || {
            for (other, broker) in brokers.iter().enumerate() {
                if other == index {
                    continue;
                }
                let spread = topic_layout(broker, SPREAD_TOPIC, SPREAD_PARTITIONS)?;
                for state in &spread {
                    let out = state.leader != victim && !state.isr.contains(&victim);
                    if on_failing.contains(&state.partition) != out {
                        return Err(format!("broker {} reports {state:?}", node_id(other)));
                    }
                }
                let kept = layout(broker)?;
                fully_replicated(&kept)?;
                for partition in &led_elsewhere {
                    let state = &kept[*partition as usize];
                    if state.leader != victim {
                        return Err(format!("broker {} reports {state:?}", node_id(other)));
                    }
                }
            }
            Ok(())
        },
    );
    let moved = failed_at.elapsed();
    producer.flush();
    let reports = producer.reports();
    for (sequence, report) in reports.iter().enumerate() {
        assert!(
            matches!(report, Some(Ok(_))),
            "record {sequence} of the second topic: {report:?}"
        );
    }
    assert_eq!(reports.len(), sends);
    drop(producer);
    // The broker is still registered and unfenced: every broker lists it.
    wait_for_registration(&brokers);
    let since = load.acknowledged_by_partition();
    load.wait_for_progress(&since, "with one directory of a broker failed");
    eprintln!(
        "broker {victim}: its second directory failed; partitions {on_failing:?} there (leading \
         {led_there:?}) out of its hands {} ms after the last send, its leaderships {led_elsewhere:?} \
         of the first directory kept",
        moved.as_millis()
    );
    // Every record sent to the second topic is there once, in send order,
    // on the leaders now serving it.
    let read = read_all(
        &brokers[(index + 1) % NODES],
        SPREAD_TOPIC,
        SPREAD_PARTITIONS,
    );
    for (partition, records) in &read {
        let sequences: Vec<u64> = records
            .iter()
            .map(|record| {
                let (from, sequence) = record
                    .value
                    .as_deref()
                    .and_then(parse_value)
                    .expect("a value this test sent");
                assert_eq!(from, *partition);
                sequence
            })
            .collect();
        let wanted: Vec<u64> = (0..sends as u64)
            .filter(|sequence| *sequence as i32 % SPREAD_PARTITIONS == *partition)
            .collect();
        assert_eq!(
            sequences, wanted,
            "partition {partition} of the second topic"
        );
    }
    let outcome = load.finish();
    // The victim's failed directory keeps its replicas out of sync, so the
    // first topic is checked on its own brokers' terms: every
    // acknowledged record once, in order.
    wait_for_acknowledged_visible(&brokers[0], &outcome);
    let first = read_all(&brokers[0], TOPIC, PARTITIONS);
    check_read_back(&outcome, &first);
    drop(brokers);
    drop(disk);
}

/// Starts the reassignments (partition to target replicas) with
/// AlterPartitionReassignments, as Kafka's admin tools send it; every
/// partition must be accepted.
fn alter_reassignments(broker: &TestBroker, targets: &BTreeMap<i32, Vec<i32>>) {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{
        AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, BrokerId,
    };
    let mut topic = ReassignableTopic::default();
    topic.name = common::text(TOPIC).into();
    topic.partitions = targets
        .iter()
        .map(|(partition, replicas)| {
            let mut entry = ReassignablePartition::default();
            entry.partition_index = *partition;
            entry.replicas = Some(replicas.iter().copied().map(BrokerId).collect());
            entry
        })
        .collect();
    let mut request = AlterPartitionReassignmentsRequest::default();
    request.timeout_ms = 30_000;
    request.topics = vec![topic];
    let response: AlterPartitionReassignmentsResponse =
        common::WireClient::new(broker).call(ApiKey::AlterPartitionReassignments, 0, &request);
    assert_eq!(response.error_code, 0, "{:?}", response.error_message);
    for topic in &response.responses {
        for partition in &topic.partitions {
            assert_eq!(
                partition.error_code, 0,
                "partition {}: {:?}",
                partition.partition_index, partition.error_message
            );
        }
    }
}

/// The three brokers, all registered, and the topic created on them.
fn start_replicated_cluster() -> Vec<TestBroker> {
    let hosts: Vec<Host> = (0..NODES).map(|_| Host::loopback()).collect();
    start_replicated_cluster_on(&hosts)
}

/// Like [`start_replicated_cluster`], broker `i` on `hosts[i]`.
fn start_replicated_cluster_on(hosts: &[Host]) -> Vec<TestBroker> {
    start_replicated_cluster_with(hosts, &[])
}

/// Like [`start_replicated_cluster_on`], with more flags for every broker.
fn start_replicated_cluster_with(hosts: &[Host], extra_args: &[&str]) -> Vec<TestBroker> {
    let session_timeout = BROKER_SESSION_TIMEOUT.as_millis().to_string();
    let mut args = vec!["--broker-session-timeout-ms", session_timeout.as_str()];
    args.extend_from_slice(extra_args);
    let brokers = start_cluster_on(hosts, &args);
    wait_for_registration(&brokers);
    create_topic(&brokers[0]);
    brokers
}

/// Node ids are 1..=NODES, the broker at index `i` being node `i + 1`.
fn node_id(index: usize) -> i32 {
    index as i32 + 1
}

fn index_of(node: i32) -> usize {
    assert!((1..=NEW_NODE).contains(&node), "no broker {node}");
    node as usize - 1
}

fn wait_for_registration(brokers: &[TestBroker]) {
    let everyone: BTreeSet<i32> = (1..=brokers.len() as i32).collect();
    wait_for(
        "every broker to list all of them",
        REGISTRATION_TIMEOUT,
        METADATA_POLL_INTERVAL,
        || {
            for (index, broker) in brokers.iter().enumerate() {
                let listed: BTreeSet<i32> = broker
                    .consumer(&[])
                    .fetch_metadata(None, METADATA_REQUEST_TIMEOUT)
                    .map_err(|error| format!("broker {}: Metadata: {error}", node_id(index)))?
                    .brokers()
                    .iter()
                    .map(|listed| listed.id())
                    .collect();
                if listed != everyone {
                    return Err(format!("broker {} lists {listed:?}", node_id(index)));
                }
            }
            Ok(())
        },
    );
}

fn create_topic(broker: &TestBroker) {
    let admin = broker.admin();
    let min_insync_replicas = MIN_INSYNC_REPLICAS.to_string();
    let topic = NewTopic::new(
        TOPIC,
        PARTITIONS,
        TopicReplication::Fixed(REPLICATION_FACTOR),
    )
    .set("min.insync.replicas", &min_insync_replicas);
    let results = futures_lite::future::block_on(admin.create_topics(&[topic], &admin_options()))
        .expect("CreateTopics answered");
    if let Err((topic, code)) = &results[0] {
        panic!("creating topic {topic}: {code:?}");
    }
}

/// One partition as a broker's Metadata answer shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PartitionState {
    partition: i32,
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

/// Every partition of the topic as `broker` tells a new client, by
/// partition; an error says why not (no answer, no topic yet, ...).
fn layout(broker: &TestBroker) -> Result<Vec<PartitionState>, String> {
    topic_layout(broker, TOPIC, PARTITIONS)
}

/// Like [`layout`], of any topic of `partitions` partitions.
fn topic_layout(
    broker: &TestBroker,
    name: &str,
    partitions: i32,
) -> Result<Vec<PartitionState>, String> {
    // A new client each time: its first Metadata request goes to its one
    // bootstrap broker, so the answer is that broker's view.
    let consumer = broker.consumer(&[]);
    let metadata = consumer
        .fetch_metadata(Some(name), METADATA_REQUEST_TIMEOUT)
        .map_err(|error| format!("Metadata: {error}"))?;
    let topic = metadata
        .topics()
        .iter()
        .find(|topic| topic.name() == name)
        .ok_or_else(|| format!("no topic {name} in Metadata"))?;
    if let Some(error) = topic.error() {
        return Err(format!("topic error {error:?}"));
    }
    let mut layout: Vec<PartitionState> = topic
        .partitions()
        .iter()
        .map(|partition| PartitionState {
            partition: partition.id(),
            leader: partition.leader(),
            replicas: partition.replicas().to_vec(),
            isr: partition.isr().to_vec(),
        })
        .collect();
    layout.sort_by_key(|state| state.partition);
    if layout.len() != partitions as usize {
        return Err(format!("{} partitions: {layout:?}", layout.len()));
    }
    Ok(layout)
}

/// Every partition has a leader, its replication factor of replicas (no
/// reassignment under way), and all of them in its ISR.
fn fully_replicated(layout: &[PartitionState]) -> Result<(), String> {
    for state in layout {
        let mut replicas = state.replicas.clone();
        replicas.sort_unstable();
        let mut isr = state.isr.clone();
        isr.sort_unstable();
        if state.leader < 0 || replicas.len() != REPLICATION_FACTOR as usize || isr != replicas {
            return Err(format!("{state:?}"));
        }
    }
    Ok(())
}

/// Waits until every broker shows every partition fully replicated, and
/// all of them the same leaders (a thawed or restarted broker has learned
/// who leads now); returns the first broker's layout.
fn wait_for_full_isr(brokers: &[TestBroker], why: &str) -> Vec<PartitionState> {
    wait_for(
        &format!("every partition fully in sync, as every broker sees it ({why})"),
        FULL_ISR_TIMEOUT,
        METADATA_POLL_INTERVAL,
        || {
            let mut agreed: Option<Vec<PartitionState>> = None;
            for (index, broker) in brokers.iter().enumerate() {
                let node = node_id(index);
                let layout = layout(broker).map_err(|error| format!("broker {node}: {error}"))?;
                fully_replicated(&layout)
                    .map_err(|state| format!("broker {node} reports {state}"))?;
                if let Some(agreed) = &agreed {
                    if leaders(agreed) != leaders(&layout) {
                        return Err(format!(
                            "broker 1 reports leaders {:?}, broker {node} {:?}",
                            leaders(agreed),
                            leaders(&layout)
                        ));
                    }
                }
                if agreed.is_none() {
                    agreed = Some(layout);
                }
            }
            agreed.ok_or_else(|| "no broker".to_string())
        },
    )
}

/// The leader of every partition, by partition.
fn leaders(layout: &[PartitionState]) -> Vec<i32> {
    layout.iter().map(|state| state.leader).collect()
}

/// Waits until every broker but `victim` shows a leader other than
/// `victim` for every partition.
fn wait_for_new_leaders(brokers: &[TestBroker], victim: i32, why: &str) {
    wait_for(
        &format!("a leader other than broker {victim} for every partition ({why})"),
        FAILOVER_TIMEOUT,
        METADATA_POLL_INTERVAL,
        || {
            for (index, broker) in brokers.iter().enumerate() {
                let node = node_id(index);
                if node == victim {
                    continue;
                }
                let layout = layout(broker).map_err(|error| format!("broker {node}: {error}"))?;
                if let Some(state) = layout
                    .iter()
                    .find(|state| state.leader < 0 || state.leader == victim)
                {
                    return Err(format!("broker {node} reports {state:?}"));
                }
            }
            Ok(())
        },
    );
}

/// The broker to kill (or freeze) next: one that leads a partition and,
/// if any such broker is left, one not killed yet, so that each broker is
/// killed once and each time as a leader.
fn choose_victim(layout: &[PartitionState], killed: &BTreeSet<i32>) -> i32 {
    let mut led: BTreeMap<i32, usize> = BTreeMap::new();
    for state in layout {
        *led.entry(state.leader).or_default() += 1;
    }
    let fresh = led
        .iter()
        .filter(|(node, _)| !killed.contains(*node))
        .max_by_key(|(_, partitions)| **partitions)
        .map(|(node, _)| *node);
    match fresh {
        Some(node) => node,
        None => {
            let node = *led.keys().next().expect("every partition has a leader");
            eprintln!(
                "no broker that was not killed yet leads a partition (leaders {led:?}); \
                 broker {node} is killed again"
            );
            node
        }
    }
}

// ---- the producer ----------------------------------------------------------

fn record_value(partition: i32, sequence: u64) -> Vec<u8> {
    let mut value = format!("p{partition}-{sequence:0SEQUENCE_DIGITS$}").into_bytes();
    assert!(value.len() <= VALUE_BYTES);
    value.resize(VALUE_BYTES, b'.');
    value
}

/// The (partition, sequence) a [`record_value`] starts with.
fn parse_value(value: &[u8]) -> Option<(i32, u64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (partition, rest) = text.strip_prefix('p')?.split_once('-')?;
    let sequence = rest.get(..SEQUENCE_DIGITS)?.parse().ok()?;
    Some((partition.parse().ok()?, sequence))
}

/// A value as a failure message shows it: without its padding.
fn shown(value: &[u8]) -> String {
    String::from_utf8_lossy(value)
        .trim_end_matches('.')
        .to_string()
}

/// What the producing thread has sent, shared with the test that watches.
struct Sent {
    producer: TrackedProducer,
    /// Every value sent, by the producer's message index.
    values: Vec<Vec<u8>>,
}

/// An idempotent acks=all producer sending to every partition at a steady
/// pace from a thread of its own, until it is finished, or dropped (when a
/// test fails).
struct Load {
    sent: Arc<Mutex<Sent>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    committer: Option<thread::JoinHandle<Commits>>,
}

/// What became of every record, once the producer has flushed.
struct Outcome {
    /// By message index.
    values: Vec<Vec<u8>>,
    /// By message index.
    reports: Vec<Delivery>,
    commits: Commits,
}

/// The offset commits of [`GROUP`]: the n-th attempt commits offset n for
/// every partition, so the committed offset tells which commit it was.
#[derive(Debug, Default)]
struct Commits {
    /// The last attempt that succeeded (0: none).
    last_succeeded: u64,
    /// The last attempt made; one that failed may still have been stored
    /// (its answer lost in a failover), so the committed offset may be
    /// any attempt from `last_succeeded` on.
    last_attempted: u64,
    succeeded: u64,
    failed: u64,
}

impl Load {
    fn start(brokers: &[TestBroker]) -> Load {
        let delivery_timeout = DELIVERY_TIMEOUT.as_millis().to_string();
        let request_timeout = PRODUCE_REQUEST_TIMEOUT.as_millis().to_string();
        // Bootstrapped from all three, so that it does not depend on any one.
        let producer = TrackedProducer::for_cluster(
            brokers,
            TOPIC,
            &[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("message.timeout.ms", delivery_timeout.as_str()),
                ("request.timeout.ms", request_timeout.as_str()),
            ],
        );
        let sent = Arc::new(Mutex::new(Sent {
            producer,
            values: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let sent = Arc::clone(&sent);
            let stop = Arc::clone(&stop);
            thread::spawn(move || produce_steadily(&sent, &stop))
        };
        let committer = {
            let stop = Arc::clone(&stop);
            let consumer = group_member(brokers);
            thread::spawn(move || commit_steadily(&consumer, &stop))
        };
        Load {
            sent,
            stop,
            thread: Some(thread),
            committer: Some(committer),
        }
    }

    /// Acknowledged records so far, by partition.
    fn acknowledged_by_partition(&self) -> BTreeMap<i32, usize> {
        let reports = self
            .sent
            .lock()
            .expect("the producing thread panicked")
            .producer
            .reports();
        let mut counts = no_acknowledgements();
        // Reports so far (the outer flatten), and of those the successes.
        for (partition, _) in reports.iter().flatten().flatten() {
            *counts.entry(*partition).or_default() += 1;
        }
        counts
    }

    /// Waits until every partition has more acknowledged records than
    /// `since`.
    fn wait_for_progress(&self, since: &BTreeMap<i32, usize>, why: &str) {
        wait_for(
            &format!("new acknowledgements in every partition ({why})"),
            PROGRESS_TIMEOUT,
            PROGRESS_POLL_INTERVAL,
            || {
                let now = self.acknowledged_by_partition();
                if (0..PARTITIONS).all(|partition| now[&partition] > since[&partition]) {
                    Ok(())
                } else {
                    Err(format!(
                        "acknowledged by partition {now:?}, before {since:?}"
                    ))
                }
            },
        );
    }

    /// Stops sending, waits for every delivery report, and returns them.
    fn finish(mut self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            assert!(thread.join().is_ok(), "the producing thread panicked");
        }
        let commits = self
            .committer
            .take()
            .map(|committer| committer.join().expect("the committing thread panicked"))
            .unwrap_or_default();
        let mut sent = self.sent.lock().expect("the producing thread panicked");
        sent.producer.flush();
        let reports = sent
            .producer
            .reports()
            .into_iter()
            .enumerate()
            .map(|(index, report)| {
                report.unwrap_or_else(|| panic!("message {index} has no delivery report"))
            })
            .collect();
        Outcome {
            values: std::mem::take(&mut sent.values),
            reports,
            commits,
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(committer) = self.committer.take() {
            let _ = committer.join();
        }
    }
}

/// A client of [`GROUP`] that commits offsets without joining it (as a
/// consumer with assigned partitions does), bootstrapped from every broker.
fn group_member(brokers: &[TestBroker]) -> rdkafka::consumer::BaseConsumer {
    let first = brokers.first().expect("a cluster has a broker");
    let mut config = first.client_config();
    config
        .set("bootstrap.servers", common::cluster_bootstrap(brokers))
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false");
    config.create().expect("a group client")
}

/// Commits offset n for every partition at the n-th attempt, every
/// `COMMIT_INTERVAL`, until `stop`; failures (a coordinator that died or
/// moved) are counted, not retried.
fn commit_steadily(consumer: &rdkafka::consumer::BaseConsumer, stop: &AtomicBool) -> Commits {
    use rdkafka::consumer::CommitMode;
    let mut commits = Commits::default();
    while !stop.load(Ordering::Relaxed) {
        let attempt = commits.last_attempted + 1;
        let mut offsets = rdkafka::TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            offsets
                .add_partition_offset(TOPIC, partition, rdkafka::Offset::Offset(attempt as i64))
                .expect("an offset");
        }
        commits.last_attempted = attempt;
        match consumer.commit(&offsets, CommitMode::Sync) {
            Ok(()) => {
                commits.last_succeeded = attempt;
                commits.succeeded += 1;
            }
            Err(_) => commits.failed += 1,
        }
        thread::sleep(COMMIT_INTERVAL);
    }
    commits
}

/// The group's committed offsets are the last commit that succeeded, or a
/// later attempt whose answer was lost; never an earlier one (a lost or
/// rolled-back commit), and the same for every partition.
fn check_committed_offsets(brokers: &[TestBroker], commits: &Commits) {
    assert!(
        commits.succeeded >= COMMITS_MIN,
        "too few offset commits succeeded: {commits:?}"
    );
    let consumer = group_member(brokers);
    let mut partitions = rdkafka::TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions.add_partition(TOPIC, partition);
    }
    let committed = wait_for(
        "the group's committed offsets",
        FULL_ISR_TIMEOUT,
        METADATA_POLL_INTERVAL,
        || {
            consumer
                .committed_offsets(partitions.clone(), METADATA_REQUEST_TIMEOUT)
                .map_err(|error| error.to_string())
        },
    );
    for element in committed.elements() {
        let offset = match element.offset() {
            rdkafka::Offset::Offset(offset) => offset as u64,
            other => panic!(
                "partition {}: no committed offset ({other:?}); commits {commits:?}",
                element.partition()
            ),
        };
        assert!(
            (commits.last_succeeded..=commits.last_attempted).contains(&offset),
            "partition {}: committed offset {offset}, but commit {} succeeded last \
             (commits {commits:?})",
            element.partition(),
            commits.last_succeeded
        );
    }
    let distinct: BTreeSet<String> = committed
        .elements()
        .iter()
        .map(|element| format!("{:?}", element.offset()))
        .collect();
    assert_eq!(
        distinct.len(),
        1,
        "one commit holds every partition's offset (one batch in the \
         group's offsets partition): {distinct:?}"
    );
    eprintln!(
        "group offsets: {} commits succeeded, {} failed, the last one kept",
        commits.succeeded, commits.failed
    );
}

fn no_acknowledgements() -> BTreeMap<i32, usize> {
    (0..PARTITIONS).map(|partition| (partition, 0)).collect()
}

/// Sends one record to every partition per tick until `stop`. Each
/// partition's values carry the tick number, so they increase.
fn produce_steadily(sent: &Mutex<Sent>, stop: &AtomicBool) {
    let mut next_tick = Instant::now();
    let mut sequence = 0u64;
    while !stop.load(Ordering::Relaxed) {
        {
            let mut sent = sent.lock().expect("the test panicked holding the producer");
            for partition in 0..PARTITIONS {
                let value = record_value(partition, sequence);
                let index = sent
                    .producer
                    .send(&Record::with_value(partition, value.clone()));
                assert_eq!(
                    index,
                    sent.values.len(),
                    "message indexes follow the values"
                );
                sent.values.push(value);
            }
        }
        sequence += 1;
        // A stall (a full queue) is not made up with a burst: the pace stays
        // what the machine was promised.
        next_tick = (next_tick + PRODUCE_TICK).max(Instant::now());
        thread::sleep(next_tick.saturating_duration_since(Instant::now()));
    }
}

// ---- the checks --------------------------------------------------------------

/// Reads everything back and checks it, then shuts the cluster down and
/// compares the replicas' files.
fn check_after_scenario(brokers: &mut [TestBroker], outcome: &Outcome) {
    let layout = wait_for_full_isr(brokers, "after the producer stopped");
    check_committed_offsets(brokers, &outcome.commits);
    wait_for_acknowledged_visible(&brokers[0], outcome);
    let read = read_all(&brokers[0], TOPIC, PARTITIONS);
    let covered = check_read_back(outcome, &read);
    stop_all_cleanly(brokers);
    check_identical_replicas(brokers, &covered, &layout);
}

/// Waits until every partition's high watermark, as its leader answers a
/// client, covers every record acknowledged in it: an acknowledged record
/// must become readable. A leader that just took over may briefly answer
/// with a high watermark behind what its predecessor acknowledged (it
/// learns the rest from its followers' next fetches); one that stays
/// behind fails the test here, naming the partition.
fn wait_for_acknowledged_visible(broker: &TestBroker, outcome: &Outcome) {
    let mut wanted: BTreeMap<i32, i64> = BTreeMap::new();
    for (partition, offset) in outcome
        .reports
        .iter()
        .filter_map(|report| report.as_ref().ok())
    {
        let end = wanted.entry(*partition).or_default();
        *end = (*end).max(offset + 1);
    }
    let consumer = broker.consumer(&[]);
    let started = Instant::now();
    wait_for(
        "every acknowledged record below its partition's high watermark",
        FULL_ISR_TIMEOUT,
        METADATA_POLL_INTERVAL,
        || {
            for (partition, end) in &wanted {
                let (_, high) = consumer
                    .fetch_watermarks(TOPIC, *partition, METADATA_REQUEST_TIMEOUT)
                    .map_err(|error| format!("partition {partition}: {error}"))?;
                if high < *end {
                    return Err(format!(
                        "partition {partition}: high watermark {high}, acknowledged up to {}",
                        end - 1
                    ));
                }
            }
            Ok(())
        },
    );
    let waited = started.elapsed();
    if waited > METADATA_POLL_INTERVAL {
        eprintln!(
            "the high watermarks covered every acknowledged record after {} ms",
            waited.as_millis()
        );
    }
}

/// Checks what a consumer reads against what the producer was told: no
/// acknowledged record lost or moved, none twice, each partition in send
/// order. Returns, by partition, the offset every replica must hold the log
/// up to: past every acknowledged record and everything read.
fn check_read_back(outcome: &Outcome, read: &BTreeMap<i32, Vec<Record>>) -> BTreeMap<i32, i64> {
    let stored: HashMap<(i32, i64), &[u8]> = read
        .values()
        .flatten()
        .map(|record| {
            (
                (record.partition, record.offset),
                record.value.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    let mut covered: BTreeMap<i32, i64> = (0..PARTITIONS)
        .map(|partition| {
            let end = read
                .get(&partition)
                .and_then(|records| records.last())
                .map_or(0, |record| record.offset + 1);
            (partition, end)
        })
        .collect();
    let mut acknowledged = 0;
    let mut failed = Vec::new();
    let mut lost = Vec::new();
    for (index, (value, report)) in outcome.values.iter().zip(&outcome.reports).enumerate() {
        let (partition, _) = parse_value(value).expect("the test's own values parse");
        match report {
            Ok((acknowledged_partition, offset)) => {
                acknowledged += 1;
                assert_eq!(
                    *acknowledged_partition,
                    partition,
                    "message {index} ({}) was acknowledged in another partition",
                    shown(value)
                );
                let end = covered.entry(partition).or_default();
                *end = (*end).max(offset + 1);
                let found = stored.get(&(partition, *offset)).copied();
                if found != Some(value.as_slice()) {
                    lost.push(format!(
                        "{} acknowledged at offset {offset}, found {}",
                        shown(value),
                        found.map_or("nothing".to_string(), shown)
                    ));
                }
            }
            Err(error) => failed.push(format!("{}: {error}", shown(value))),
        }
    }
    let read_count: usize = read.values().map(Vec::len).sum();
    eprintln!(
        "{} records sent, {acknowledged} acknowledged, {} failed, {read_count} read back",
        outcome.values.len(),
        failed.len()
    );
    if !failed.is_empty() {
        // Not an error by itself (a failed record may or may not be stored),
        // but worth seeing: with this delivery timeout none should fail.
        eprintln!(
            "failed deliveries, e.g.:\n{}",
            failed[..failed.len().min(EXAMPLES_MAX)].join("\n")
        );
    }
    assert!(
        lost.is_empty(),
        "{} of {acknowledged} acknowledged records are not where they were acknowledged, e.g.:\n{}",
        lost.len(),
        lost[..lost.len().min(EXAMPLES_MAX)].join("\n")
    );

    let sent: HashSet<&[u8]> = outcome.values.iter().map(Vec::as_slice).collect();
    let mut first_seen: HashMap<&[u8], i64> = HashMap::new();
    let mut duplicates = Vec::new();
    let mut out_of_order = Vec::new();
    for (partition, records) in read {
        let mut previous: Option<(u64, i64)> = None;
        for record in records {
            let value = record.value.as_deref().unwrap_or_default();
            assert!(
                sent.contains(value),
                "partition {partition} offset {}: a value the producer never sent: {}",
                record.offset,
                shown(value)
            );
            let (sent_to, sequence) = parse_value(value).expect("a sent value parses");
            assert_eq!(
                sent_to,
                *partition,
                "offset {}: {} is in partition {partition}",
                record.offset,
                shown(value)
            );
            if let Some(first) = first_seen.insert(value, record.offset) {
                duplicates.push(format!(
                    "{} at offsets {first} and {}",
                    shown(value),
                    record.offset
                ));
            }
            if let Some((previous_sequence, previous_offset)) = previous {
                if sequence <= previous_sequence {
                    out_of_order.push(format!(
                        "partition {partition}: sequence {previous_sequence} at offset \
                         {previous_offset}, then {sequence} at offset {}",
                        record.offset
                    ));
                }
            }
            previous = Some((sequence, record.offset));
        }
    }
    assert!(
        duplicates.is_empty(),
        "{} records are stored twice (the idempotent producer's retries were appended again), e.g.:\n{}",
        duplicates.len(),
        duplicates[..duplicates.len().min(EXAMPLES_MAX)].join("\n")
    );
    assert!(
        out_of_order.is_empty(),
        "{} records are out of send order, e.g.:\n{}",
        out_of_order.len(),
        out_of_order[..out_of_order.len().min(EXAMPLES_MAX)].join("\n")
    );
    covered
}

/// SIGTERM to all three at once, as a cluster is shut down; each must exit
/// cleanly, its logs flushed and closed.
fn stop_all_cleanly(brokers: &mut [TestBroker]) {
    let clean: Vec<bool> = thread::scope(|scope| {
        let stopping: Vec<_> = brokers
            .iter_mut()
            .map(|broker| scope.spawn(move || broker.stop(Stop::Term)))
            .collect();
        stopping
            .into_iter()
            .map(|stopping| stopping.join().expect("stopping a broker"))
            .collect()
    });
    for (index, clean) in clean.into_iter().enumerate() {
        assert!(
            clean,
            "broker {} did not shut down cleanly on SIGTERM; log tail:\n{}",
            node_id(index),
            brokers[index].log_tail()
        );
    }
}

/// One record batch as stored in a segment file.
struct StoredBatch {
    base_offset: i64,
    last_offset: i64,
    /// The whole batch, from its base offset field on.
    bytes: Vec<u8>,
}

/// The segment files (`<base offset, 20 digits>.log`) of one partition
/// directory, in base offset order.
fn segment_files(dir: &Path) -> Vec<(i64, PathBuf)> {
    let entries = fs::read_dir(dir).unwrap_or_else(|error| {
        panic!(
            "listing {} (every replica has the partition's directory): {error}",
            dir.display()
        )
    });
    let mut segments: Vec<(i64, PathBuf)> = entries
        .filter_map(|entry| {
            let entry = entry.expect("reading a directory entry");
            let name = entry.file_name().into_string().ok()?;
            let digits = name.strip_suffix(".log")?;
            if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((digits.parse().ok()?, entry.path()))
        })
        .collect();
    segments.sort();
    assert!(!segments.is_empty(), "no segment file in {}", dir.display());
    segments
}

fn read_i64(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn read_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Every batch of one partition's log, segment after segment. A segment may
/// end in zero padding; anything else that is not a whole batch following
/// the one before fails the test.
fn stored_batches(dir: &Path) -> Vec<StoredBatch> {
    let mut batches: Vec<StoredBatch> = Vec::new();
    for (segment_base, path) in segment_files(dir) {
        let bytes =
            fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
        let mut position = 0;
        let mut first_in_segment = true;
        while position < bytes.len() {
            if bytes[position..].iter().all(|byte| *byte == 0) {
                break;
            }
            let at = |what: &str| format!("{} byte {position}: {what}", path.display());
            assert!(
                position + BATCH_HEADER_BYTES <= bytes.len(),
                "{}",
                at("a batch header cut short")
            );
            let base_offset = read_i64(&bytes, position + BATCH_BASE_OFFSET_AT);
            let length = read_i32(&bytes, position + BATCH_LENGTH_AT);
            assert!(
                length >= (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD) as i32,
                "{}",
                at(&format!("batch length {length}"))
            );
            let end = position + BATCH_LOG_OVERHEAD + length as usize;
            assert!(end <= bytes.len(), "{}", at("a batch cut short"));
            let last_offset_delta = read_i32(&bytes, position + BATCH_LAST_OFFSET_DELTA_AT);
            assert!(
                last_offset_delta >= 0,
                "{}",
                at(&format!("last offset delta {last_offset_delta}"))
            );
            if first_in_segment {
                assert_eq!(
                    base_offset,
                    segment_base,
                    "{}",
                    at("the segment's first batch is not at its base offset")
                );
            }
            if let Some(previous) = batches.last() {
                assert_eq!(
                    base_offset,
                    previous.last_offset + 1,
                    "{}",
                    at("the batch does not follow the one before")
                );
            }
            batches.push(StoredBatch {
                base_offset,
                last_offset: base_offset + last_offset_delta as i64,
                bytes: bytes[position..end].to_vec(),
            });
            first_in_segment = false;
            position = end;
        }
    }
    batches
}

/// The batch header field at `position` (docs/format.md), for a failure
/// message.
fn batch_field(position: usize) -> &'static str {
    match position {
        0..=7 => "base_offset",
        8..=11 => "batch_length",
        12..=15 => "partition_leader_epoch",
        16 => "magic",
        17..=20 => "crc",
        21..=22 => "attributes",
        23..=26 => "last_offset_delta",
        27..=34 => "base_timestamp",
        35..=42 => "max_timestamp",
        43..=50 => "producer_id",
        51..=52 => "producer_epoch",
        53..=56 => "base_sequence",
        57..=60 => "record_count",
        _ => "records",
    }
}

/// With the cluster stopped: every replica of each partition (as `layout`
/// places them) holds its log from offset 0 to at least `covered`, all
/// hold the same batches, byte for byte, up to the smallest of their log
/// ends, and a broker that is not a replica holds none of it.
fn check_identical_replicas(
    brokers: &[TestBroker],
    covered: &BTreeMap<i32, i64>,
    layout: &[PartitionState],
) {
    for partition in 0..PARTITIONS {
        let replicas = &layout[partition as usize].replicas;
        let dir = |index: usize| {
            brokers[index]
                .data_dir()
                .join(format!("{TOPIC}-{partition}"))
        };
        let holders: Vec<usize> = (0..brokers.len())
            .filter(|index| replicas.contains(&node_id(*index)))
            .collect();
        for index in (0..brokers.len()).filter(|index| !holders.contains(index)) {
            assert!(
                !dir(index).exists(),
                "broker {} still holds partition {partition}, whose replicas are {replicas:?}",
                node_id(index)
            );
        }
        let logs: Vec<Vec<StoredBatch>> = holders
            .iter()
            .map(|index| stored_batches(&dir(*index)))
            .collect();
        let node_id = |position: usize| node_id(holders[position]);
        for (index, batches) in logs.iter().enumerate() {
            if let Some(first) = batches.first() {
                assert_eq!(
                    first.base_offset,
                    0,
                    "broker {}: partition {partition} starts at offset {}, but nothing was deleted",
                    node_id(index),
                    first.base_offset
                );
            }
        }
        let ends: Vec<i64> = logs
            .iter()
            .map(|batches| batches.last().map_or(0, |batch| batch.last_offset + 1))
            .collect();
        let common_end = *ends.iter().min().expect("a broker");
        let needed = covered.get(&partition).copied().unwrap_or(0);
        assert!(
            common_end >= needed,
            "partition {partition}: the replicas' log ends {ends:?} (brokers {replicas:?}) do \
             not all reach offset {needed}, past every acknowledged and every read record"
        );
        let shared = |batches: &[StoredBatch]| -> usize {
            batches
                .iter()
                .take_while(|batch| batch.base_offset < common_end)
                .count()
        };
        let reference = &logs[0][..shared(logs[0].as_slice())];
        for (index, batches) in logs.iter().enumerate().skip(1) {
            let node = node_id(index);
            let other = &batches[..shared(batches.as_slice())];
            for (ours, theirs) in reference.iter().zip(other) {
                if ours.bytes == theirs.bytes {
                    continue;
                }
                let difference = ours
                    .bytes
                    .iter()
                    .zip(&theirs.bytes)
                    .position(|(a, b)| a != b);
                panic!(
                    "partition {partition}: brokers {} and {node} hold different batches: at \
                     offset {} (broker {}, {} bytes) and {} (broker {node}, {} bytes), {}",
                    node_id(0),
                    ours.base_offset,
                    node_id(0),
                    ours.bytes.len(),
                    theirs.base_offset,
                    theirs.bytes.len(),
                    match difference {
                        Some(at) => format!("first differing at byte {at} ({})", batch_field(at)),
                        None => "one a prefix of the other".to_string(),
                    }
                );
            }
            assert_eq!(
                reference.len(),
                other.len(),
                "partition {partition}: broker {} holds {} batches below offset {common_end}, \
                 broker {node} {}",
                node_id(0),
                reference.len(),
                other.len()
            );
        }
        let bytes: usize = reference.iter().map(|batch| batch.bytes.len()).sum();
        eprintln!(
            "partition {partition}: {} batches ({bytes} bytes) identical on brokers \
             {replicas:?} up to offset {common_end} (log ends {ends:?})",
            reference.len()
        );
    }
}
