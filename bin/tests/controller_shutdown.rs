//! SIGTERM of the active controller hands the metadata quorum's leadership
//! to another voter before the process stops (raft-rs's leader transfer),
//! so the quorum is not left without a leader for an election timeout, as
//! it is after kill -9 (measured here too, as the baseline).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{
    admin_options, produce_all, quorum_leader, read_all, start_cluster_with, wait_for, Record,
    Stop, TestBroker,
};
use rdkafka::admin::{NewTopic, TopicReplication};

const NODES: usize = 3;
/// Generous bound for any one wait on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(30);
/// Between two rounds of asking the survivors who the controller is: a
/// DescribeQuorum on a fresh connection costs about a millisecond, so the
/// times below are good to a few milliseconds.
const POLL: Duration = Duration::from_millis(5);
const TOPIC: &str = "after-handover";
const PARTITIONS: i32 = 3;
const RECORDS: usize = 30;

/// The controller every broker in `brokers` names, if they agree on one.
fn agreed_controller(brokers: &[&TestBroker]) -> Result<i32, String> {
    let named: BTreeSet<i32> = brokers.iter().map(|broker| quorum_leader(broker)).collect();
    match named.iter().copied().collect::<Vec<_>>().as_slice() {
        [leader] if *leader >= 0 => Ok(*leader),
        _ => Err(format!("controllers named: {named:?}")),
    }
}

/// Whether process `pid` has exited: gone, or a zombie not yet reaped
/// (the harness reaps it later, in `stop`).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) STATE ...`: the state follows the last parenthesis.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_none_or(|state| state == 'Z' || state == 'X'),
        Err(_) => true,
    }
}

/// Every broker but the one at `index`.
fn others(brokers: &[TestBroker], index: usize) -> Vec<&TestBroker> {
    brokers
        .iter()
        .enumerate()
        .filter(|(other, _)| *other != index)
        .map(|(_, broker)| broker)
        .collect()
}

/// What the survivors saw after the controller was stopped.
struct Succession {
    /// The controller they all named, other than the stopped one.
    leader: i32,
    /// From the signal until every survivor named it.
    named: Duration,
    /// From the signal until the stopped process had exited.
    exited: Duration,
}

/// Asks `survivors` every [`POLL`] who the controller is until they all
/// name one other than `stopped` and process `pid` has exited.
fn watch_succession(survivors: &[&TestBroker], stopped: i32, pid: u32) -> Succession {
    let started = Instant::now();
    let mut named = None;
    let mut exit = None;
    loop {
        if let (Some((leader, named)), Some(exited)) = (named, exit) {
            return Succession {
                leader,
                named,
                exited,
            };
        }
        assert!(
            started.elapsed() < WAIT,
            "within {WAIT:?} of stopping node {stopped}: new controller {named:?}, exit {exit:?}"
        );
        if exit.is_none() && exited(pid) {
            exit = Some(started.elapsed());
        }
        if named.is_none() {
            if let Ok(leader) = agreed_controller(survivors) {
                if leader != stopped {
                    named = Some((leader, started.elapsed()));
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

#[test]
fn sigterm_of_the_active_controller_hands_the_quorum_over_before_it_stops() {
    let mut brokers = start_cluster_with(NODES, &[]);
    let all: Vec<&TestBroker> = brokers.iter().collect();
    let controller = wait_for(
        "one controller named by every broker",
        WAIT,
        Duration::from_millis(50),
        || agreed_controller(&all),
    );
    // Leaderships for the controlled shutdown to move before the handover.
    let admin = brokers[0].admin();
    let topic = NewTopic::new("before", PARTITIONS, TopicReplication::Fixed(NODES as i32));
    let created = futures_lite::future::block_on(admin.create_topics(&[topic], &admin_options()))
        .expect("CreateTopics answered");
    assert!(created[0].is_ok(), "{created:?}");
    drop(admin);

    // SIGTERM of the active controller: the survivors must name a new one
    // while the stopped process is still running. Without a handover that
    // cannot happen, whatever the timing: the stopping controller goes on
    // sending heartbeats until it exits (it first moves its partition
    // leaderships, then waits half a second for requests in flight), and
    // with pre-vote and check-quorum no voter that hears a live leader
    // grants a vote. So a new controller named before the exit is one the
    // old controller handed over to, and no slow machine makes the
    // assertion pass by accident or fail by chance (a slow machine only
    // stretches both times).
    let victim = controller as usize - 1;
    let pid = brokers[victim].pid();
    // SAFETY: signalling our own child, running (so its pid is not reused).
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    let handover = watch_succession(&others(&brokers, victim), controller, pid);
    let exited = handover.exited;
    eprintln!(
        "SIGTERM of controller {controller}: node {} named by the others {} ms after the signal, \
         {} ms before the process exited ({} ms after the signal)",
        handover.leader,
        handover.named.as_millis(),
        exited.saturating_sub(handover.named).as_millis(),
        exited.as_millis()
    );
    assert!(
        handover.named < exited,
        "the survivors named node {} only {} ms after the signal, once node {controller} had \
         exited ({} ms): no handover",
        handover.leader,
        handover.named.as_millis(),
        exited.as_millis()
    );
    assert!(
        brokers[victim].stop(Stop::Term),
        "node {controller} did not exit cleanly after its handover; log tail:\n{}",
        brokers[victim].log_tail()
    );
    assert!(
        brokers[victim]
            .log()
            .contains("the metadata quorum's leadership handed over"),
        "node {controller} logged no handover"
    );

    // The new controller decides: a topic created through a survivor, and
    // records through it.
    let survivor = others(&brokers, victim)[0];
    let admin = survivor.admin();
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(2));
    let created = futures_lite::future::block_on(admin.create_topics(&[topic], &admin_options()))
        .expect("CreateTopics answered");
    assert!(
        created[0].is_ok(),
        "created by the new controller: {created:?}"
    );
    drop(admin);
    let records: Vec<Record> = (0..RECORDS)
        .map(|index| Record::with_value(index as i32 % PARTITIONS, format!("r{index}").into()))
        .collect();
    produce_all(survivor, TOPIC, &[("acks", "all")], &records);
    let read = read_all(survivor, TOPIC, PARTITIONS);
    assert_eq!(read.values().map(Vec::len).sum::<usize>(), RECORDS);

    // The baseline: kill -9 of the controller, with the stopped node back
    // so that two voters remain after the kill.
    brokers[victim].start_again();
    let all: Vec<&TestBroker> = brokers.iter().collect();
    let controller = wait_for(
        "one controller named by every broker after the restart",
        WAIT,
        Duration::from_millis(50),
        || agreed_controller(&all),
    );
    let victim = controller as usize - 1;
    let pid = brokers[victim].pid();
    // SAFETY: as above.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
    let election = watch_succession(&others(&brokers, victim), controller, pid);
    brokers[victim].stop(Stop::Kill);
    eprintln!(
        "kill -9 of controller {controller}: node {} named by the others {} ms after the kill \
         (an election timeout is 500-1000 ms); with the SIGTERM handover: {} ms after the signal",
        election.leader,
        election.named.as_millis(),
        handover.named.as_millis()
    );
}
