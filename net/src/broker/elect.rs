//! Leader elections an operator asks for, on the active controller (Kafka's
//! ElectLeaders: preferred elections from KIP-183, unclean ones from
//! KIP-460).
//!
//! A preferred election gives a partition back to its first replica when
//! that replica is live and in the ISR: what the automatic leader rebalance
//! does, on demand. An unclean election gives a partition that has no live
//! ISR member to any live replica, which loses the records that replica
//! lacks; a partition with a live ISR member gets that member instead, as
//! after any failover. Both reuse the rules the controller applies on its
//! own ([`super::controller::prefer`] and [`super::controller::reconcile`]),
//! so an operator's election and an automatic one cannot disagree.
//!
//! Every election of one request is written to the metadata log as one
//! change. A partition that needs no election, or cannot have one, is left
//! as it is and reported with Kafka's error code.

use sluice_engine::{ClusterMetadata, PartitionState};

use super::controller::{prefer, reconcile, Reconciled};
use super::Broker;
use crate::errors::code;

/// Kafka's error codes of ElectLeaders.
pub mod election_code {
    /// The preferred replica is not live, or not in the ISR.
    pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
    /// No replica can take the leadership.
    pub const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = 83;
    /// The partition already has the leader the election would give it.
    pub const ELECTION_NOT_NEEDED: i16 = 84;
}

use election_code::{
    ELECTION_NOT_NEEDED, ELIGIBLE_LEADERS_NOT_AVAILABLE, PREFERRED_LEADER_NOT_AVAILABLE,
};

/// Which election ElectLeaders asks for (its `election_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElectionType {
    /// 0: the first replica leads, when it is live and in the ISR.
    Preferred,
    /// 1: a live replica outside the ISR may lead a partition whose ISR
    /// has no live member.
    Unclean,
}

impl ElectionType {
    /// The type Kafka's id names; `None` for an id Kafka does not define.
    pub fn from_id(id: i8) -> Option<ElectionType> {
        match id {
            0 => Some(ElectionType::Preferred),
            1 => Some(ElectionType::Unclean),
            _ => None,
        }
    }

    /// Kafka's id of the type.
    pub fn id(self) -> i8 {
        match self {
            ElectionType::Preferred => 0,
            ElectionType::Unclean => 1,
        }
    }
}

/// Partitions of one topic named in an ElectLeaders request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionTopic {
    pub topic: String,
    pub partitions: Vec<i32>,
}

/// What one partition's election did: `error_code` NONE when it moved the
/// leadership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionOutcome {
    pub topic: String,
    pub partition: i32,
    pub error_code: i16,
    pub error_message: Option<String>,
}

/// Why a request's elections were not made at all (the metadata change was
/// not written): a Kafka error code and a sentence.
pub type ElectionFailure = (i16, String);

impl Broker {
    /// Runs the elections against the controller's image and writes them
    /// as one change. `topics` `None` means every partition; then, as in
    /// Kafka, partitions that need no election are left out of the answer.
    pub(super) async fn elect_leaders(
        &self,
        election: ElectionType,
        topics: Option<Vec<ElectionTopic>>,
    ) -> Result<Vec<ElectionOutcome>, ElectionFailure> {
        let base = self.controller_image();
        let mut metadata = (*base).clone();
        let outcomes = elect_all(&mut metadata, election, topics.as_deref());
        self.publish(&base, metadata)
            .await
            .map_err(|error| (error.code, error.message))?;
        Ok(outcomes)
    }
}

/// Runs the elections asked for on `metadata`, changing the partitions
/// whose leadership moves; one outcome per partition named, in order (or,
/// for `topics` `None`, per partition that needed an election).
fn elect_all(
    metadata: &mut ClusterMetadata,
    election: ElectionType,
    topics: Option<&[ElectionTopic]>,
) -> Vec<ElectionOutcome> {
    let live: Vec<i32> = metadata.live_brokers().map(|broker| broker.id).collect();
    let mut outcomes = Vec::new();
    let Some(topics) = topics else {
        for (name, topic) in metadata.topics.iter_mut() {
            for (index, state) in topic.placement.iter_mut().enumerate() {
                let partition = i32::try_from(index).unwrap_or(i32::MAX);
                let result = elect(state, election, &live);
                if matches!(result, Err((ELECTION_NOT_NEEDED, _))) {
                    continue;
                }
                outcomes.push(outcome(name, partition, state, result));
            }
        }
        return outcomes;
    };
    for asked in topics {
        for &partition in &asked.partitions {
            let state = metadata
                .topics
                .get_mut(&asked.topic)
                .and_then(|topic| topic.placement.get_mut(usize::try_from(partition).ok()?));
            let Some(state) = state else {
                let known = metadata.topics.contains_key(&asked.topic);
                let message = if known {
                    format!("no such partition as {}-{partition}", asked.topic)
                } else {
                    format!("no such topic as {}", asked.topic)
                };
                outcomes.push(ElectionOutcome {
                    topic: asked.topic.clone(),
                    partition,
                    error_code: code::UNKNOWN_TOPIC_OR_PARTITION,
                    error_message: Some(message),
                });
                continue;
            };
            let result = elect(state, election, &live);
            outcomes.push(outcome(&asked.topic, partition, state, result));
        }
    }
    outcomes
}

/// One partition's outcome, logging a leadership that moved.
fn outcome(
    topic: &str,
    partition: i32,
    state: &PartitionState,
    result: Result<Reconciled, ElectionFailure>,
) -> ElectionOutcome {
    let (error_code, error_message) = match result {
        Ok(Reconciled::Unclean) => {
            tracing::warn!(
                topic,
                partition,
                leader = state.leader,
                "unclean leader election asked for: records the new leader lacks are lost"
            );
            (code::NONE, None)
        }
        Ok(_) => {
            tracing::info!(
                topic,
                partition,
                leader = state.leader,
                "leader elected on request"
            );
            (code::NONE, None)
        }
        Err((error_code, message)) => (error_code, Some(message)),
    };
    ElectionOutcome {
        topic: topic.to_string(),
        partition,
        error_code,
        error_message,
    }
}

/// One partition's election, with Kafka's checks in Kafka's order. On
/// success the leadership has moved (a new leader epoch, a new partition
/// epoch); on failure `state` is unchanged.
fn elect(
    state: &mut PartitionState,
    election: ElectionType,
    live: &[i32],
) -> Result<Reconciled, ElectionFailure> {
    let leads = |state: &PartitionState| {
        state.leader >= 0 && live.contains(&state.leader) && state.isr.contains(&state.leader)
    };
    match election {
        ElectionType::Preferred => {
            let Some(preferred) = state.replicas.first().copied() else {
                return Err((
                    PREFERRED_LEADER_NOT_AVAILABLE,
                    "the partition has no replicas".into(),
                ));
            };
            if state.leader == preferred && leads(state) {
                return Err((
                    ELECTION_NOT_NEEDED,
                    format!("the preferred replica {preferred} already leads"),
                ));
            }
            if prefer(state, live) {
                return Ok(Reconciled::Changed);
            }
            let why = if !live.contains(&preferred) {
                format!("the preferred replica {preferred} is not live")
            } else {
                format!(
                    "the preferred replica {preferred} is not in the ISR {:?}",
                    state.isr
                )
            };
            Err((PREFERRED_LEADER_NOT_AVAILABLE, why))
        }
        ElectionType::Unclean => {
            if leads(state) {
                return Err((
                    ELECTION_NOT_NEEDED,
                    format!("broker {} leads the partition", state.leader),
                ));
            }
            // Worked on a copy: an election that finds no leader must not
            // leave the other changes `reconcile` makes on its way.
            let mut next = state.clone();
            let reconciled = reconcile(&mut next, live, true);
            if next.leader < 0 {
                return Err((
                    ELIGIBLE_LEADERS_NOT_AVAILABLE,
                    format!("no replica of {:?} is live", state.replicas),
                ));
            }
            *state = next;
            Ok(reconciled)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sluice_engine::{BrokerInfo, TopicMetadata};

    use super::*;

    fn state(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 4,
            partition_epoch: 9,
            ..PartitionState::default()
        }
    }

    fn code_of(result: Result<Reconciled, ElectionFailure>) -> i16 {
        match result {
            Ok(_) => code::NONE,
            Err((error_code, _)) => error_code,
        }
    }

    #[test]
    fn election_type_ids_are_kafkas() {
        for election in [ElectionType::Preferred, ElectionType::Unclean] {
            assert_eq!(ElectionType::from_id(election.id()), Some(election));
        }
        assert_eq!(ElectionType::from_id(0), Some(ElectionType::Preferred));
        assert_eq!(ElectionType::from_id(2), None);
        assert_eq!(ElectionType::from_id(-1), None);
    }

    #[test]
    fn preferred_election_moves_the_leadership_to_a_live_in_sync_first_replica() {
        let mut partition = state(&[1, 2, 3], &[2, 3, 1], 2);
        assert_eq!(
            code_of(elect(&mut partition, ElectionType::Preferred, &[1, 2, 3])),
            code::NONE
        );
        assert_eq!(partition.leader, 1);
        assert_eq!((partition.leader_epoch, partition.partition_epoch), (5, 10));
        assert_eq!(
            code_of(elect(&mut partition, ElectionType::Preferred, &[1, 2, 3])),
            ELECTION_NOT_NEEDED,
            "a second election has nothing to do"
        );
        assert_eq!((partition.leader_epoch, partition.partition_epoch), (5, 10));
    }

    #[test]
    fn preferred_election_refuses_a_preferred_replica_that_is_down_or_behind() {
        let behind = state(&[1, 2, 3], &[2, 3], 2);
        let down = state(&[1, 2, 3], &[2, 3, 1], 2);
        // Broker 1 is on record as leader but fenced: it cannot lead.
        let fenced_leader = state(&[1, 2, 3], &[1, 2, 3], 1);
        for (mut partition, live) in [
            (behind, &[1, 2, 3][..]),
            (down, &[2, 3][..]),
            (fenced_leader, &[2, 3][..]),
        ] {
            let before = partition.clone();
            assert_eq!(
                code_of(elect(&mut partition, ElectionType::Preferred, live)),
                PREFERRED_LEADER_NOT_AVAILABLE,
                "{before:?} with {live:?} live"
            );
            assert_eq!(partition, before);
        }
        let mut empty = state(&[], &[], -1);
        assert_eq!(
            code_of(elect(&mut empty, ElectionType::Preferred, &[1])),
            PREFERRED_LEADER_NOT_AVAILABLE
        );
    }

    #[test]
    fn unclean_election_takes_a_live_replica_outside_the_isr_only_when_needed() {
        // Offline: the only ISR member, 1, is down; 3 is live but behind.
        let mut partition = state(&[1, 2, 3], &[1], -1);
        assert_eq!(
            elect(&mut partition, ElectionType::Unclean, &[3]),
            Ok(Reconciled::Unclean)
        );
        assert_eq!((partition.leader, partition.isr.clone()), (3, vec![3]));
        assert_eq!((partition.leader_epoch, partition.partition_epoch), (5, 10));
        assert_eq!(
            code_of(elect(&mut partition, ElectionType::Unclean, &[3])),
            ELECTION_NOT_NEEDED
        );
        // A live ISR member is preferred to any replica outside the ISR.
        let mut partition = state(&[1, 2, 3], &[2, 1], 1);
        assert_eq!(
            elect(&mut partition, ElectionType::Unclean, &[2, 3]),
            Ok(Reconciled::Changed)
        );
        assert_eq!((partition.leader, partition.isr.clone()), (2, vec![2]));
    }

    #[test]
    fn unclean_election_without_a_live_replica_changes_nothing() {
        let mut partition = state(&[1, 2], &[1], 1);
        let before = partition.clone();
        assert_eq!(
            code_of(elect(&mut partition, ElectionType::Unclean, &[3])),
            ELIGIBLE_LEADERS_NOT_AVAILABLE
        );
        assert_eq!(partition, before);
    }

    fn broker(id: i32, fenced: bool) -> (i32, BrokerInfo) {
        (
            id,
            BrokerInfo {
                id,
                incarnation: 1,
                host: "localhost".into(),
                port: 9092,
                rack: None,
                fenced,
                endpoints: Vec::new(),
            },
        )
    }

    /// Brokers 1 to 3, 3 fenced; topic "t": partition 0 led by its
    /// preferred replica, 1 led by another with the preferred one in sync,
    /// 2 with its preferred replica (3) fenced.
    fn cluster() -> ClusterMetadata {
        let topic = TopicMetadata {
            name: "t".into(),
            id: [1; 16],
            partitions: 3,
            configs: BTreeMap::new(),
            placement: vec![
                state(&[1, 2], &[1, 2], 1),
                state(&[1, 2], &[2, 1], 2),
                state(&[3, 2], &[2], 2),
            ],
        };
        ClusterMetadata {
            brokers: BTreeMap::from([broker(1, false), broker(2, false), broker(3, true)]),
            topics: BTreeMap::from([("t".to_string(), topic)]),
            ..ClusterMetadata::default()
        }
    }

    fn codes(outcomes: &[ElectionOutcome]) -> Vec<(&str, i32, i16)> {
        outcomes
            .iter()
            .map(|outcome| {
                (
                    outcome.topic.as_str(),
                    outcome.partition,
                    outcome.error_code,
                )
            })
            .collect()
    }

    #[test]
    fn named_partitions_are_answered_in_order_unknown_ones_included() {
        let mut metadata = cluster();
        let asked = [
            ElectionTopic {
                topic: "t".into(),
                partitions: vec![2, 0, 1, 7, -1],
            },
            ElectionTopic {
                topic: "gone".into(),
                partitions: vec![0],
            },
        ];
        let outcomes = elect_all(&mut metadata, ElectionType::Preferred, Some(&asked));
        assert_eq!(
            codes(&outcomes),
            vec![
                ("t", 2, PREFERRED_LEADER_NOT_AVAILABLE),
                ("t", 0, ELECTION_NOT_NEEDED),
                ("t", 1, code::NONE),
                ("t", 7, code::UNKNOWN_TOPIC_OR_PARTITION),
                ("t", -1, code::UNKNOWN_TOPIC_OR_PARTITION),
                ("gone", 0, code::UNKNOWN_TOPIC_OR_PARTITION),
            ]
        );
        assert!(outcomes.iter().all(|outcome| {
            (outcome.error_code == code::NONE) == outcome.error_message.is_none()
        }));
        assert_eq!(
            metadata.partition("t", 1).map(|state| state.leader),
            Some(1)
        );
    }

    #[test]
    fn every_partition_leaves_out_those_that_need_no_election() {
        let mut metadata = cluster();
        let outcomes = elect_all(&mut metadata, ElectionType::Preferred, None);
        assert_eq!(
            codes(&outcomes),
            vec![
                ("t", 1, code::NONE),
                ("t", 2, PREFERRED_LEADER_NOT_AVAILABLE)
            ]
        );
        let again = elect_all(&mut metadata, ElectionType::Preferred, None);
        assert_eq!(
            codes(&again),
            vec![("t", 2, PREFERRED_LEADER_NOT_AVAILABLE)]
        );
        // Every partition has a live leader: no unclean election is needed.
        assert!(elect_all(&mut metadata, ElectionType::Unclean, None).is_empty());
    }
}
