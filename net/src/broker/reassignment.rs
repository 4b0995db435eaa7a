//! Partition reassignment on the active controller (Kafka's
//! AlterPartitionReassignments, KIP-455).
//!
//! A reassignment never copies data itself: it widens the partition's
//! replica set to the target plus the current replicas, so the added
//! brokers open the partition and fetch it from the leader like any
//! follower; the leader adds each to the ISR once it has caught up (the
//! usual AlterPartition); and when every added replica is in the ISR the
//! controller narrows the set to the target, moving the leadership first
//! if the leader is among the replicas removed. Producers and consumers
//! keep running throughout: until the switch the old replicas serve, and
//! the switch is an ordinary leader change.

use sluice_engine::PartitionState;

use super::{Broker, Reassignment, ReassignmentOutcome};
use crate::errors::code;

impl Broker {
    /// Starts or cancels each reassignment against the controller's image
    /// and writes them together; every entry gets its own outcome.
    pub(super) async fn alter_reassignments(
        &self,
        reassignments: Vec<Reassignment>,
    ) -> Vec<ReassignmentOutcome> {
        let base = self.controller_image();
        let mut metadata = (*base).clone();
        let live: Vec<i32> = metadata.live_brokers().map(|broker| broker.id).collect();
        let mut outcomes = Vec::with_capacity(reassignments.len());
        for reassignment in reassignments {
            let registered_ids: Vec<i32> = metadata.brokers.keys().copied().collect();
            let Some(state) = metadata
                .topics
                .get_mut(&reassignment.topic)
                .and_then(|topic| {
                    topic
                        .placement
                        .get_mut(usize::try_from(reassignment.partition).ok()?)
                })
            else {
                outcomes.push(failed(
                    code::UNKNOWN_TOPIC_OR_PARTITION,
                    format!(
                        "{}-{} does not exist",
                        reassignment.topic, reassignment.partition
                    ),
                ));
                continue;
            };
            let outcome = match &reassignment.replicas {
                Some(target) => start(state, target, |id| registered_ids.contains(&id)),
                None => cancel(state),
            };
            match outcome {
                Ok(()) => {
                    finish(state, &live);
                    tracing::info!(
                        topic = %reassignment.topic,
                        partition = reassignment.partition,
                        replicas = ?state.replicas,
                        adding = ?state.adding,
                        removing = ?state.removing,
                        "reassignment changed"
                    );
                    outcomes.push(ReassignmentOutcome {
                        error_code: code::NONE,
                        error_message: None,
                    });
                }
                Err((error_code, message)) => outcomes.push(failed(error_code, message)),
            }
        }
        if let Err(error) = self.publish(&base, metadata).await {
            for outcome in outcomes
                .iter_mut()
                .filter(|outcome| outcome.error_code == code::NONE)
            {
                outcome.error_code = error.code;
                outcome.error_message = Some(error.message.clone());
            }
        }
        outcomes
    }
}

fn failed(error_code: i16, message: String) -> ReassignmentOutcome {
    ReassignmentOutcome {
        error_code,
        error_message: Some(message),
    }
}

/// The replicas a partition had before its reassignment began.
fn original(state: &PartitionState) -> Vec<i32> {
    state
        .replicas
        .iter()
        .copied()
        .filter(|id| !state.adding.contains(id))
        .collect()
}

/// Starts moving the partition to `target` (replacing a reassignment under
/// way, which then counts from the original replicas, as in Kafka). The
/// replica set becomes the target followed by the replicas to remove;
/// replicas of an abandoned target leave it and the ISR.
fn start(
    state: &mut PartitionState,
    target: &[i32],
    registered: impl Fn(i32) -> bool,
) -> Result<(), (i16, String)> {
    if target.is_empty() {
        return Err((
            code::INVALID_REPLICA_ASSIGNMENT,
            "the target replica list is empty".into(),
        ));
    }
    let mut distinct = target.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() != target.len() {
        return Err((
            code::INVALID_REPLICA_ASSIGNMENT,
            format!("the target replicas {target:?} name a broker twice"),
        ));
    }
    if let Some(unknown) = target.iter().find(|id| !registered(**id)) {
        return Err((
            code::INVALID_REPLICA_ASSIGNMENT,
            format!("broker {unknown} is not registered in the cluster"),
        ));
    }
    let original = original(state);
    let removing: Vec<i32> = original
        .iter()
        .copied()
        .filter(|id| !target.contains(id))
        .collect();
    let adding: Vec<i32> = target
        .iter()
        .copied()
        .filter(|id| !original.contains(id))
        .collect();
    let replicas: Vec<i32> = target.iter().chain(removing.iter()).copied().collect();
    let mut next = state.clone();
    next.isr.retain(|id| replicas.contains(id));
    next.replicas = replicas;
    next.adding = adding;
    next.removing = removing;
    if !next.replicas.contains(&next.leader) {
        // The leader was an added replica of the abandoned target.
        let replicas = next.replicas.clone();
        elect(&mut next, &replicas, &[]);
    }
    if next != *state {
        next.partition_epoch += 1;
        *state = next;
    }
    Ok(())
}

/// Cancels the reassignment under way: back to the original replicas.
fn cancel(state: &mut PartitionState) -> Result<(), (i16, String)> {
    if !state.reassigning() {
        return Err((
            code::NO_REASSIGNMENT_IN_PROGRESS,
            "no reassignment of this partition is in progress".into(),
        ));
    }
    let original = original(state);
    state.isr.retain(|id| original.contains(id));
    state.replicas = original;
    state.adding.clear();
    state.removing.clear();
    if !state.replicas.contains(&state.leader) {
        let replicas = state.replicas.clone();
        elect(state, &replicas, &[]);
    }
    state.partition_epoch += 1;
    Ok(())
}

/// Completes a reassignment whose added replicas are all in the ISR: the
/// replica set and the ISR shrink to the target, and a leader that is not
/// part of it hands over to the first target replica that is live and in
/// sync. Returns whether it completed.
pub(super) fn finish(state: &mut PartitionState, live: &[i32]) -> bool {
    if !state.reassigning() || state.adding.iter().any(|id| !state.isr.contains(id)) {
        return false;
    }
    let target = state.target_replicas();
    let isr: Vec<i32> = state
        .isr
        .iter()
        .copied()
        .filter(|id| target.contains(id))
        .collect();
    let successor = target
        .iter()
        .copied()
        .find(|id| isr.contains(id) && live.contains(id));
    if !target.contains(&state.leader) && successor.is_none() {
        // No target replica can lead yet; wait for one to catch up.
        return false;
    }
    if isr.is_empty() {
        return false;
    }
    state.replicas = target.clone();
    state.isr = isr;
    state.adding.clear();
    state.removing.clear();
    if !target.contains(&state.leader) {
        elect(state, &target, live);
    }
    state.partition_epoch += 1;
    true
}

/// Gives the leadership to the first of `candidates` in the ISR (and live,
/// when `live` is not empty), or none; bumps the leader epoch.
fn elect(state: &mut PartitionState, candidates: &[i32], live: &[i32]) {
    let leader = candidates
        .iter()
        .copied()
        .find(|id| state.isr.contains(id) && (live.is_empty() || live.contains(id)))
        .unwrap_or(-1);
    if leader != state.leader {
        state.leader = leader;
        state.leader_epoch += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 3,
            partition_epoch: 8,
            ..PartitionState::default()
        }
    }

    fn any(_: i32) -> bool {
        true
    }

    #[test]
    fn a_move_widens_the_replicas_then_narrows_them_once_the_new_ones_are_in_sync() {
        let mut partition = state(&[1, 2, 3], &[1, 2, 3], 1);
        start(&mut partition, &[4, 2, 3], any).unwrap();
        assert_eq!(partition.replicas, vec![4, 2, 3, 1]);
        assert_eq!(partition.adding, vec![4]);
        assert_eq!(partition.removing, vec![1]);
        assert_eq!(partition.leader, 1, "the leader keeps serving meanwhile");
        assert_eq!(partition.partition_epoch, 9);
        let live = [1, 2, 3, 4];
        assert!(
            !finish(&mut partition, &live),
            "broker 4 has not caught up yet"
        );
        partition.isr.push(4);
        assert!(finish(&mut partition, &live));
        assert_eq!(partition.replicas, vec![4, 2, 3]);
        assert_eq!(partition.isr, vec![2, 3, 4]);
        assert!(!partition.reassigning());
        assert_eq!(
            partition.leader, 4,
            "the removed leader hands over to the first target replica in sync"
        );
        assert_eq!(partition.leader_epoch, 4);
    }

    #[test]
    fn removing_a_follower_completes_at_once_and_keeps_the_leader() {
        let mut partition = state(&[1, 2, 3], &[1, 2, 3], 1);
        start(&mut partition, &[1, 2], any).unwrap();
        assert!(finish(&mut partition, &[1, 2, 3]));
        assert_eq!(partition.replicas, vec![1, 2]);
        assert_eq!(partition.isr, vec![1, 2]);
        assert_eq!((partition.leader, partition.leader_epoch), (1, 3));
    }

    #[test]
    fn a_target_without_a_live_in_sync_replica_waits() {
        let mut partition = state(&[1, 2], &[1], 1);
        start(&mut partition, &[2], any).unwrap();
        assert!(!finish(&mut partition, &[1, 2]), "2 is out of sync");
        assert_eq!(partition.replicas, vec![2, 1]);
        assert_eq!(partition.leader, 1);
    }

    #[test]
    fn cancelling_returns_to_the_original_replicas() {
        let mut partition = state(&[1, 2, 3], &[1, 2, 3], 1);
        start(&mut partition, &[4, 5, 3], any).unwrap();
        partition.isr.push(4);
        cancel(&mut partition).unwrap();
        // Kafka's revert keeps the order the replicas had meanwhile.
        assert_eq!(partition.replicas, vec![3, 1, 2]);
        assert_eq!(partition.isr, vec![1, 2, 3]);
        assert!(!partition.reassigning());
        assert_eq!(
            cancel(&mut partition).unwrap_err().0,
            code::NO_REASSIGNMENT_IN_PROGRESS
        );
    }

    #[test]
    fn a_new_target_replaces_the_one_under_way_from_the_original_replicas() {
        let mut partition = state(&[1, 2, 3], &[1, 2, 3], 1);
        start(&mut partition, &[4, 2, 3], any).unwrap();
        partition.isr.push(4);
        partition.leader = 4;
        start(&mut partition, &[5, 2, 3], any).unwrap();
        assert_eq!(partition.replicas, vec![5, 2, 3, 1]);
        assert_eq!(partition.adding, vec![5]);
        assert_eq!(partition.removing, vec![1]);
        assert!(!partition.isr.contains(&4));
        assert_eq!(
            partition.leader, 2,
            "the abandoned replica 4 cannot keep leading"
        );
    }

    #[test]
    fn bad_targets_are_refused_with_kafkas_codes() {
        let mut partition = state(&[1, 2, 3], &[1, 2, 3], 1);
        let before = partition.clone();
        for target in [&[][..], &[1, 1][..]] {
            assert_eq!(
                start(&mut partition, target, any).unwrap_err().0,
                code::INVALID_REPLICA_ASSIGNMENT
            );
        }
        assert_eq!(
            start(&mut partition, &[1, 9], |id| id < 5).unwrap_err().0,
            code::INVALID_REPLICA_ASSIGNMENT
        );
        assert_eq!(partition, before);
        start(&mut partition, &[1, 2, 3], any).unwrap();
        assert_eq!(
            partition, before,
            "the current replicas as target change nothing"
        );
    }
}
