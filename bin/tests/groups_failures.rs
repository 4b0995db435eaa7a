//! Members that die: a consumer process killed with SIGKILL (it never sends
//! LeaveGroup) is evicted after its session timeout and its partitions move
//! to the survivor; a static member (`group.instance.id`) killed and
//! restarted within its session timeout gets its partitions back without a
//! rebalance of the others.
//!
//! The consumers that get killed run in child processes: this test binary
//! re-run with only `child_consumer`, which is a no-op in a normal run.

mod common;
mod groups_support;

use std::time::{Duration, Instant};

use groups_support::{
    group_broker, is_exact_split, member_config, run_child_if_asked, wait_for, ChildConsumer,
    Member, HEARTBEAT_INTERVAL_MS,
};

const TOPIC: &str = "jobs";
const PARTITIONS: i32 = 6;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a consumer until killed when started by a test below; passes at
/// once otherwise.
#[test]
fn child_consumer() {
    run_child_if_asked();
}

#[test]
fn a_killed_member_is_evicted_after_its_session_timeout() {
    const SESSION_MS: u64 = 3000;
    let broker = group_broker();
    broker.create_topic(TOPIC, PARTITIONS);
    let survivor = Member::start(member_config(&broker, "workers", &[]), &[TOPIC]);
    let mut doomed = ChildConsumer::start(&broker, "workers", TOPIC, None, SESSION_MS);
    wait_for(
        "three partitions each",
        SETTLE_TIMEOUT,
        || {
            is_exact_split(
                &[survivor.state.assignment(), doomed.assignment()],
                PARTITIONS,
                Some(3),
            )
        },
        || {
            format!(
                "survivor {:?}, child {:?}",
                survivor.state.assignment(),
                doomed.assignment()
            )
        },
    );
    let killed_at = Instant::now();
    doomed.kill();
    wait_for(
        "the survivor to own every partition",
        SETTLE_TIMEOUT,
        || survivor.state.assignment().len() == PARTITIONS as usize,
        || format!("survivor {:?}", survivor.state.assignment()),
    );
    let moved_after = killed_at.elapsed();
    // Eviction is timer-driven: not before the session timeout (less the
    // child's last heartbeat interval), and not much after it.
    let earliest = Duration::from_millis(SESSION_MS - HEARTBEAT_INTERVAL_MS);
    assert!(
        moved_after >= earliest,
        "partitions moved after {moved_after:?}, before the session timeout"
    );
    assert!(
        moved_after <= Duration::from_millis(SESSION_MS) + Duration::from_secs(15),
        "took {moved_after:?}"
    );
    eprintln!(
        "killed member's partitions moved {:.2}s after SIGKILL (session timeout {SESSION_MS} ms)",
        moved_after.as_secs_f64()
    );
}

#[test]
fn a_static_member_restarting_within_its_session_keeps_its_partitions() {
    const SESSION_MS: u64 = 6000;
    let broker = group_broker();
    broker.create_topic(TOPIC, PARTITIONS);
    let other = Member::start(
        member_config(
            &broker,
            "static",
            &[
                ("group.instance.id", "other"),
                ("session.timeout.ms", &SESSION_MS.to_string()),
            ],
        ),
        &[TOPIC],
    );
    let mut restarting =
        ChildConsumer::start(&broker, "static", TOPIC, Some("restarting"), SESSION_MS);
    wait_for(
        "three partitions each",
        SETTLE_TIMEOUT,
        || {
            is_exact_split(
                &[other.state.assignment(), restarting.assignment()],
                PARTITIONS,
                Some(3),
            )
        },
        || {
            format!(
                "other {:?}, child {:?}",
                other.state.assignment(),
                restarting.assignment()
            )
        },
    );
    let before = restarting.assignment();
    let other_before = other.state.assignment();
    let rebalances_before = other.state.assign_count();
    let events_before = other.state.events();

    let killed_at = Instant::now();
    restarting.kill();
    let restarted = ChildConsumer::start(&broker, "static", TOPIC, Some("restarting"), SESSION_MS);
    wait_for(
        "the restarted member to get its partitions back",
        SETTLE_TIMEOUT,
        || restarted.assignment() == before,
        || format!("before {before:?}, now {:?}", restarted.assignment()),
    );
    let back_after = killed_at.elapsed();
    assert!(
        back_after < Duration::from_millis(SESSION_MS),
        "took {back_after:?}, longer than the session timeout"
    );
    // Past the old session's deadline: the old member id was replaced, not
    // expired, so nothing moves.
    std::thread::sleep(Duration::from_millis(SESSION_MS + 1000));
    assert_eq!(restarted.assignment(), before);
    assert_eq!(other.state.assignment(), other_before);
    assert_eq!(
        other.state.assign_count(),
        rebalances_before,
        "the other member rebalanced: {:?} then {:?}",
        events_before,
        other.state.events()
    );
    let (state, _, members) = groups_support::describe_group(&broker, "static");
    assert_eq!((state.as_str(), members), ("Stable", 2));
    eprintln!(
        "static member had its partitions back {:.2}s after SIGKILL",
        back_after.as_secs_f64()
    );
}
