//! The plan of `sluice cluster rebalance`: which partitions to move where so
//! that replicas and preferred leaders are spread evenly over the live
//! brokers. A pure function of the layout, so it is tested without a cluster.
//!
//! Goals, in order:
//!
//! 1. Nothing stays on a broker that is not live (fenced or gone).
//! 2. Each topic's replicas are spread evenly: every broker holds the floor
//!    or the ceiling of the topic's replica count over the brokers. The
//!    brokers that already hold the most replicas of the topic are the ones
//!    allowed the ceiling, which is what makes the number of moved replicas
//!    the smallest possible for that spread.
//! 3. Across the cluster, no broker holds two replicas more than another
//!    where a move can fix it without undoing goal 2 (a topic with fewer
//!    replicas than brokers is balanced whichever brokers hold it, so many
//!    small topics can still pile up on the old brokers).
//! 4. Preferred leaders (the first replica) are spread the same way, per
//!    topic and then across the cluster, by reordering replicas only; a
//!    reorder moves no data.
//!
//! Every partition keeps its replication factor. Partitions being reassigned
//! already are counted where they are going but never changed, and so are
//! partitions that cannot be placed (more replicas than live brokers, or a
//! broker named twice); the latter are reported as skipped.
//!
//! Each balancing loop ends: every step lowers a non-negative measure (the
//! distance from the quotas, or the sum of squared counts) by at least one.

use std::collections::{BTreeMap, BTreeSet};

/// One partition as the cluster has it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentPartition {
    pub topic: String,
    pub partition: i32,
    /// The replicas, the preferred leader first. For a partition being
    /// reassigned, the replicas it is being moved to.
    pub replicas: Vec<i32>,
    /// Whether a reassignment of the partition is in progress.
    pub reassigning: bool,
}

/// One partition the plan moves or reorders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedReassignment {
    pub topic: String,
    pub partition: i32,
    pub current: Vec<i32>,
    pub target: Vec<i32>,
}

impl PlannedReassignment {
    /// Replicas placed on a broker that did not hold one (0 for a reorder).
    pub fn moved_replicas(&self) -> usize {
        self.target
            .iter()
            .filter(|id| !self.current.contains(id))
            .count()
    }
}

/// A partition the plan leaves alone although it is not where it should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub topic: String,
    pub partition: i32,
    pub reason: String,
}

/// What `sluice cluster rebalance` proposes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// In topic and partition order.
    pub reassignments: Vec<PlannedReassignment>,
    pub skipped: Vec<Skipped>,
}

impl Plan {
    pub fn moved_replicas(&self) -> usize {
        self.reassignments
            .iter()
            .map(PlannedReassignment::moved_replicas)
            .sum()
    }
}

/// Replica or leader counts by broker, for one topic or the whole cluster.
type Counts = BTreeMap<i32, usize>;

fn count(counts: &Counts, broker: i32) -> usize {
    counts.get(&broker).copied().unwrap_or(0)
}

fn add(counts: &mut Counts, broker: i32) {
    *counts.entry(broker).or_default() += 1;
}

fn remove(counts: &mut Counts, broker: i32) {
    if let Some(value) = counts.get_mut(&broker) {
        *value = value.saturating_sub(1);
    }
}

/// The layout being balanced, with its counts kept up to date.
struct Layout<'a> {
    /// Live brokers, ascending.
    brokers: Vec<i32>,
    live: BTreeSet<i32>,
    partitions: &'a [CurrentPartition],
    /// The replicas each partition will end with.
    assignment: Vec<Vec<i32>>,
    /// Whether the plan may change the partition.
    movable: Vec<bool>,
    /// Index into `topics` of each partition's topic.
    topic_of: Vec<usize>,
    /// The partitions (indexes into `partitions`) of each topic, by name.
    topics: Vec<Vec<usize>>,
    topic_replicas: Vec<Counts>,
    topic_leaders: Vec<Counts>,
    replicas: Counts,
    leaders: Counts,
}

impl<'a> Layout<'a> {
    fn new(
        live_brokers: &[i32],
        partitions: &'a [CurrentPartition],
        skipped: &mut Vec<Skipped>,
    ) -> Self {
        let live: BTreeSet<i32> = live_brokers.iter().copied().collect();
        let brokers: Vec<i32> = live.iter().copied().collect();
        let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (index, partition) in partitions.iter().enumerate() {
            by_name.entry(&partition.topic).or_default().push(index);
        }
        let topics: Vec<Vec<usize>> = by_name.into_values().collect();
        let mut topic_of = vec![0; partitions.len()];
        for (topic, members) in topics.iter().enumerate() {
            for index in members {
                topic_of[*index] = topic;
            }
        }
        let mut movable = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let distinct: BTreeSet<i32> = partition.replicas.iter().copied().collect();
            let reason = if partition.reassigning {
                // Counted where it is going; another move would race it.
                None
            } else if partition.replicas.is_empty() {
                Some("the partition has no replicas".to_string())
            } else if distinct.len() != partition.replicas.len() {
                Some("its replica list names a broker twice".to_string())
            } else if partition.replicas.len() > brokers.len() {
                Some(format!(
                    "its {} replicas do not fit on {} live broker(s)",
                    partition.replicas.len(),
                    brokers.len()
                ))
            } else {
                movable.push(true);
                continue;
            };
            if let Some(reason) = reason {
                skipped.push(Skipped {
                    topic: partition.topic.clone(),
                    partition: partition.partition,
                    reason,
                });
            }
            movable.push(false);
        }
        let mut layout = Layout {
            brokers,
            live,
            partitions,
            assignment: partitions.iter().map(|p| p.replicas.clone()).collect(),
            movable,
            topic_of,
            topic_replicas: vec![Counts::new(); topics.len()],
            topic_leaders: vec![Counts::new(); topics.len()],
            topics,
            replicas: Counts::new(),
            leaders: Counts::new(),
        };
        for index in 0..partitions.len() {
            let topic = layout.topic_of[index];
            for (position, broker) in layout.assignment[index].iter().enumerate() {
                add(&mut layout.topic_replicas[topic], *broker);
                add(&mut layout.replicas, *broker);
                if position == 0 {
                    add(&mut layout.topic_leaders[topic], *broker);
                    add(&mut layout.leaders, *broker);
                }
            }
        }
        layout
    }

    /// Puts `broker` in place of the replica at `position` of partition `index`.
    fn replace(&mut self, index: usize, position: usize, broker: i32) {
        let topic = self.topic_of[index];
        let old = self.assignment[index][position];
        self.assignment[index][position] = broker;
        remove(&mut self.topic_replicas[topic], old);
        remove(&mut self.replicas, old);
        add(&mut self.topic_replicas[topic], broker);
        add(&mut self.replicas, broker);
        if position == 0 {
            remove(&mut self.topic_leaders[topic], old);
            remove(&mut self.leaders, old);
            add(&mut self.topic_leaders[topic], broker);
            add(&mut self.leaders, broker);
        }
    }

    /// Makes the replica at `position` of partition `index` its preferred leader.
    fn promote(&mut self, index: usize, position: usize) {
        let topic = self.topic_of[index];
        let old = self.assignment[index][0];
        let new = self.assignment[index][position];
        self.assignment[index].swap(0, position);
        remove(&mut self.topic_leaders[topic], old);
        remove(&mut self.leaders, old);
        add(&mut self.topic_leaders[topic], new);
        add(&mut self.leaders, new);
    }

    /// A replica of `topic`'s movable partitions (any topic's if `None`) on
    /// `from` that can go to `to`, for which `allowed` says yes: a follower
    /// first, so that leadership changes only where it must.
    fn find_move(
        &self,
        topic: Option<usize>,
        from: i32,
        to: i32,
        allowed: impl Fn(usize) -> bool,
    ) -> Option<(usize, usize)> {
        let candidates: Box<dyn Iterator<Item = usize> + '_> = match topic {
            Some(topic) => Box::new(self.topics[topic].iter().copied()),
            None => Box::new(0..self.partitions.len()),
        };
        let mut leader_move = None;
        for index in candidates {
            if !self.movable[index] || !allowed(index) || self.assignment[index].contains(&to) {
                continue;
            }
            match self.assignment[index].iter().position(|id| *id == from) {
                Some(0) => leader_move = leader_move.or(Some((index, 0))),
                Some(position) => return Some((index, position)),
                None => {}
            }
        }
        leader_move
    }

    /// Goal 1 and 2 for one topic.
    fn balance_topic_replicas(&mut self, topic: usize) {
        if self.brokers.is_empty() {
            return;
        }
        // The replicas that should be on live brokers: all of a movable
        // partition's, and those a fixed one already has there.
        let total: usize = self.topics[topic]
            .iter()
            .map(|&index| {
                let replicas = &self.assignment[index];
                if self.movable[index] {
                    replicas.len()
                } else {
                    replicas.iter().filter(|id| self.live.contains(id)).count()
                }
            })
            .sum();
        let floor = total / self.brokers.len();
        let extra = total % self.brokers.len();
        let mut by_holding = self.brokers.clone();
        by_holding.sort_by_key(|broker| {
            (
                std::cmp::Reverse(count(&self.topic_replicas[topic], *broker)),
                count(&self.replicas, *broker),
                *broker,
            )
        });
        let quota: Counts = by_holding
            .iter()
            .enumerate()
            .map(|(rank, broker)| (*broker, floor + usize::from(rank < extra)))
            .collect();
        // Replicas on brokers that are not live go first, to the broker
        // furthest below its quota.
        for index in self.topics[topic].clone() {
            if !self.movable[index] {
                continue;
            }
            for position in 0..self.assignment[index].len() {
                if self.live.contains(&self.assignment[index][position]) {
                    continue;
                }
                let held = &self.assignment[index];
                let target = self
                    .brokers
                    .iter()
                    .copied()
                    .filter(|broker| !held.contains(broker))
                    .max_by_key(|broker| {
                        let deficit = count(&quota, *broker) as i64
                            - count(&self.topic_replicas[topic], *broker) as i64;
                        (
                            deficit,
                            std::cmp::Reverse(count(&self.replicas, *broker)),
                            std::cmp::Reverse(*broker),
                        )
                    });
                // A movable partition has no more replicas than there are
                // live brokers, so one that holds none of them exists.
                if let Some(target) = target {
                    self.replace(index, position, target);
                }
            }
        }
        loop {
            let held = |broker: i32| count(&self.topic_replicas[topic], broker);
            let mut over: Vec<i32> = self
                .brokers
                .iter()
                .copied()
                .filter(|broker| held(*broker) > count(&quota, *broker))
                .collect();
            over.sort_by_key(|broker| {
                (
                    std::cmp::Reverse(held(*broker) - count(&quota, *broker)),
                    std::cmp::Reverse(count(&self.replicas, *broker)),
                )
            });
            let mut under: Vec<i32> = self
                .brokers
                .iter()
                .copied()
                .filter(|broker| held(*broker) < count(&quota, *broker))
                .collect();
            under.sort_by_key(|broker| {
                (
                    std::cmp::Reverse(count(&quota, *broker) - held(*broker)),
                    count(&self.replicas, *broker),
                )
            });
            let step = over.iter().find_map(|from| {
                under.iter().find_map(|to| {
                    self.find_move(Some(topic), *from, *to, |_| true)
                        .map(|(index, position)| (index, position, *to))
                })
            });
            let Some((index, position, to)) = step else {
                break;
            };
            self.replace(index, position, to);
        }
    }

    /// Goal 3: moves between the cluster's fullest and emptiest brokers that
    /// keep every topic within its floor and ceiling.
    fn balance_cluster_replicas(&mut self) {
        loop {
            let mut order = self.brokers.clone();
            order.sort_by_key(|broker| (count(&self.replicas, *broker), *broker));
            let step = order.iter().rev().find_map(|from| {
                order.iter().find_map(|to| {
                    if count(&self.replicas, *from) < count(&self.replicas, *to) + 2 {
                        return None;
                    }
                    // Only where the topic has more on `from` than on `to`:
                    // the move then swaps their counts and the topic stays
                    // as even as it was.
                    let keeps_topic_even = |index: usize| {
                        let counts = &self.topic_replicas[self.topic_of[index]];
                        count(counts, *from) > count(counts, *to)
                    };
                    self.find_move(None, *from, *to, keeps_topic_even)
                        .map(|(index, position)| (index, position, *to))
                })
            });
            let Some((index, position, to)) = step else {
                break;
            };
            self.replace(index, position, to);
        }
    }

    /// A movable partition led by `from` (of `topic`, or any topic) that
    /// has a replica on `to`, for which `allowed` says yes.
    fn find_promotion(
        &self,
        topic: Option<usize>,
        from: i32,
        to: i32,
        allowed: impl Fn(usize) -> bool,
    ) -> Option<(usize, usize)> {
        let candidates: Box<dyn Iterator<Item = usize> + '_> = match topic {
            Some(topic) => Box::new(self.topics[topic].iter().copied()),
            None => Box::new(0..self.partitions.len()),
        };
        for index in candidates {
            let replicas = &self.assignment[index];
            if !self.movable[index] || replicas.first() != Some(&from) || !allowed(index) {
                continue;
            }
            if let Some(position) = replicas.iter().position(|id| *id == to) {
                return Some((index, position));
            }
        }
        None
    }

    /// Goal 4: per topic when `topic` is given, else across the cluster
    /// keeping each topic as even as it is.
    fn balance_leaders(&mut self, topic: Option<usize>) {
        loop {
            let leaders = match topic {
                Some(topic) => &self.topic_leaders[topic],
                None => &self.leaders,
            };
            let mut order = self.brokers.clone();
            order.sort_by_key(|broker| (count(leaders, *broker), *broker));
            let step = order.iter().rev().find_map(|from| {
                order.iter().find_map(|to| {
                    if count(leaders, *from) < count(leaders, *to) + 2 {
                        return None;
                    }
                    let keeps_topic_even = |index: usize| {
                        let counts = &self.topic_leaders[self.topic_of[index]];
                        topic.is_some() || count(counts, *from) > count(counts, *to)
                    };
                    self.find_promotion(topic, *from, *to, keeps_topic_even)
                })
            });
            let Some((index, position)) = step else {
                break;
            };
            self.promote(index, position);
        }
    }
}

/// Plans a rebalance of `partitions` over `live_brokers` (see the module
/// notes). An already balanced layout gives an empty plan.
pub fn plan(live_brokers: &[i32], partitions: &[CurrentPartition]) -> Plan {
    let mut skipped = Vec::new();
    let mut layout = Layout::new(live_brokers, partitions, &mut skipped);
    if layout.brokers.is_empty() {
        return Plan {
            reassignments: Vec::new(),
            skipped,
        };
    }
    for topic in 0..layout.topics.len() {
        layout.balance_topic_replicas(topic);
    }
    layout.balance_cluster_replicas();
    for topic in 0..layout.topics.len() {
        layout.balance_leaders(Some(topic));
    }
    layout.balance_leaders(None);
    let mut reassignments: Vec<PlannedReassignment> = partitions
        .iter()
        .zip(&layout.assignment)
        .filter(|(partition, target)| partition.replicas != **target)
        .map(|(partition, target)| PlannedReassignment {
            topic: partition.topic.clone(),
            partition: partition.partition,
            current: partition.replicas.clone(),
            target: target.clone(),
        })
        .collect();
    reassignments.sort_by(|left, right| {
        (left.topic.as_str(), left.partition).cmp(&(right.topic.as_str(), right.partition))
    });
    skipped.sort_by(|left, right| {
        (left.topic.as_str(), left.partition).cmp(&(right.topic.as_str(), right.partition))
    });
    Plan {
        reassignments,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(topic: &str, index: i32, replicas: &[i32]) -> CurrentPartition {
        CurrentPartition {
            topic: topic.to_string(),
            partition: index,
            replicas: replicas.to_vec(),
            reassigning: false,
        }
    }

    /// `count` partitions of `topic` with `factor` replicas over `brokers`,
    /// placed round-robin as a fresh topic is (leaders balanced too).
    fn round_robin(
        topic: &str,
        count: i32,
        factor: usize,
        brokers: &[i32],
    ) -> Vec<CurrentPartition> {
        (0..count)
            .map(|index| {
                let replicas: Vec<i32> = (0..factor)
                    .map(|offset| brokers[(index as usize + offset) % brokers.len()])
                    .collect();
                partition(topic, index, &replicas)
            })
            .collect()
    }

    /// The layout after applying `plan` to `partitions`.
    fn applied(partitions: &[CurrentPartition], plan: &Plan) -> Vec<CurrentPartition> {
        partitions
            .iter()
            .map(|partition| {
                let planned = plan.reassignments.iter().find(|planned| {
                    planned.topic == partition.topic && planned.partition == partition.partition
                });
                match planned {
                    Some(planned) => CurrentPartition {
                        replicas: planned.target.clone(),
                        ..partition.clone()
                    },
                    None => partition.clone(),
                }
            })
            .collect()
    }

    fn replica_counts(partitions: &[CurrentPartition], topic: Option<&str>) -> Counts {
        let mut counts = Counts::new();
        for partition in partitions {
            if topic.is_none_or(|name| name == partition.topic) {
                for broker in &partition.replicas {
                    add(&mut counts, *broker);
                }
            }
        }
        counts
    }

    fn leader_counts(partitions: &[CurrentPartition], topic: Option<&str>) -> Counts {
        let mut counts = Counts::new();
        for partition in partitions {
            if topic.is_none_or(|name| name == partition.topic) {
                add(&mut counts, partition.replicas[0]);
            }
        }
        counts
    }

    /// Every live broker's count is within one of every other's.
    fn assert_even(counts: &Counts, brokers: &[i32], what: &str) {
        let values: Vec<usize> = brokers
            .iter()
            .map(|broker| count(counts, *broker))
            .collect();
        let (Some(low), Some(high)) = (values.iter().min(), values.iter().max()) else {
            return;
        };
        assert!(high - low <= 1, "{what}: {counts:?}");
    }

    /// Factors are kept and no broker appears twice in a partition.
    fn assert_valid(before: &[CurrentPartition], after: &[CurrentPartition], brokers: &[i32]) {
        for (old, new) in before.iter().zip(after) {
            assert_eq!(old.replicas.len(), new.replicas.len(), "{new:?}");
            let distinct: BTreeSet<i32> = new.replicas.iter().copied().collect();
            assert_eq!(distinct.len(), new.replicas.len(), "{new:?}");
            assert!(
                new.replicas.iter().all(|id| brokers.contains(id)),
                "{new:?}"
            );
        }
    }

    #[test]
    fn a_fourth_broker_gets_its_share_and_nothing_else_moves() {
        let before = round_robin("orders", 12, 2, &[1, 2, 3]);
        let brokers = [1, 2, 3, 4];
        let plan = plan(&brokers, &before);
        let after = applied(&before, &plan);
        assert_valid(&before, &after, &brokers);
        // 24 replicas over 4 brokers: 6 each. Brokers 1-3 held 8 each, so
        // exactly 6 replicas must move, all of them to broker 4.
        assert_eq!(plan.moved_replicas(), 6, "{plan:#?}");
        for planned in &plan.reassignments {
            let added: Vec<i32> = planned
                .target
                .iter()
                .copied()
                .filter(|id| !planned.current.contains(id))
                .collect();
            assert!(added.is_empty() || added == [4], "{planned:?}");
        }
        let replicas = replica_counts(&after, None);
        assert_eq!(replicas.values().copied().collect::<Vec<_>>(), vec![6; 4]);
        let leaders = leader_counts(&after, None);
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![3; 4]);
        // The plan is a fixed point: applied, there is nothing left to do.
        assert_eq!(super::plan(&brokers, &after), Plan::default());
    }

    #[test]
    fn a_balanced_cluster_gives_an_empty_plan() {
        let brokers = [1, 2, 3];
        let mut layout = round_robin("a", 6, 3, &brokers);
        layout.extend(round_robin("b", 3, 2, &brokers));
        layout.extend(round_robin("c", 1, 1, &[2]));
        assert_eq!(plan(&brokers, &layout), Plan::default());
        assert_eq!(plan(&brokers, &[]), Plan::default());
    }

    #[test]
    fn replicas_leave_brokers_that_are_not_live() {
        let before = round_robin("t", 6, 2, &[1, 2, 3]);
        let brokers = [1, 2];
        let plan = plan(&brokers, &before);
        let after = applied(&before, &plan);
        assert_valid(&before, &after, &brokers);
        // Exactly the four replicas broker 3 held move.
        assert_eq!(plan.moved_replicas(), 4);
        assert_eq!(
            replica_counts(&after, None)
                .values()
                .copied()
                .collect::<Vec<_>>(),
            vec![6, 6]
        );
        assert_even(&leader_counts(&after, None), &brokers, "leaders");
    }

    #[test]
    fn many_small_topics_are_spread_over_a_new_broker() {
        // Topics of one single-replica partition are each balanced wherever
        // they are; the cluster as a whole is not until broker 4 holds some.
        let mut before = Vec::new();
        for index in 0..12 {
            let name = format!("small-{index:02}");
            before.push(partition(&name, 0, &[1 + index % 3]));
        }
        let brokers = [1, 2, 3, 4];
        let plan = plan(&brokers, &before);
        let after = applied(&before, &plan);
        assert_valid(&before, &after, &brokers);
        assert_eq!(plan.moved_replicas(), 3, "{plan:#?}");
        assert_even(&replica_counts(&after, None), &brokers, "replicas");
        assert_even(&leader_counts(&after, None), &brokers, "leaders");
    }

    #[test]
    fn leaders_are_balanced_by_reordering_alone() {
        // Every partition led by broker 1: no replica needs to move.
        let before: Vec<CurrentPartition> = (0..6)
            .map(|index| {
                let second = 2 + index % 2;
                partition("t", index, &[1, second, 5 - second])
            })
            .collect();
        let brokers = [1, 2, 3];
        let plan = plan(&brokers, &before);
        assert_eq!(plan.moved_replicas(), 0);
        let after = applied(&before, &plan);
        assert_eq!(
            leader_counts(&after, Some("t"))
                .values()
                .copied()
                .collect::<Vec<_>>(),
            vec![2, 2, 2]
        );
        // Only as many partitions change as leaders must: four.
        assert_eq!(plan.reassignments.len(), 4);
    }

    /// xorshift64, so that a failing layout can be reproduced from its seed.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, bound: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % bound as u64) as usize
        }
    }

    /// Random layouts over up to six brokers, some of which leave and some
    /// of which are new: every plan keeps factors, uses live brokers only,
    /// spreads each topic evenly, and leaves no replica to move after it.
    #[test]
    fn random_layouts_are_spread_evenly() {
        const LAYOUTS: u64 = 300;
        for seed in 1..=LAYOUTS {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let old: Vec<i32> = (1..=1 + rng.below(6) as i32).collect();
            let mut live: Vec<i32> = old.clone();
            if live.len() > 1 && rng.below(3) == 0 {
                live.remove(rng.below(live.len()));
            }
            live.extend((0..rng.below(3)).map(|extra| 10 + extra as i32));
            let mut before = Vec::new();
            for topic in 0..1 + rng.below(5) {
                let factor = 1 + rng.below(old.len().min(live.len()).min(3));
                for index in 0..1 + rng.below(8) {
                    let mut replicas = Vec::new();
                    while replicas.len() < factor {
                        let broker = old[rng.below(old.len())];
                        if !replicas.contains(&broker) {
                            replicas.push(broker);
                        }
                    }
                    before.push(partition(&format!("t{topic}"), index as i32, &replicas));
                }
            }
            let plan = plan(&live, &before);
            assert!(plan.skipped.is_empty(), "seed {seed}: {plan:#?}");
            let after = applied(&before, &plan);
            assert_valid(&before, &after, &live);
            for topic in 0..5 {
                let name = format!("t{topic}");
                let counts = replica_counts(&after, Some(&name));
                if !counts.is_empty() {
                    assert_even(&counts, &live, &format!("seed {seed}, {name} replicas"));
                }
            }
            let again = super::plan(&live, &after);
            assert_eq!(again.moved_replicas(), 0, "seed {seed}: {again:#?}");
        }
    }

    #[test]
    fn partitions_being_moved_or_unplaceable_are_left_alone() {
        let mut before = round_robin("t", 4, 2, &[1, 2]);
        before[0].reassigning = true;
        before.push(partition("wide", 0, &[1, 2, 3]));
        before.push(partition("twice", 0, &[1, 1]));
        let brokers = [1, 2, 3];
        let plan = plan(&brokers, &before);
        assert!(plan.reassignments.iter().all(|planned| {
            (planned.topic.as_str(), planned.partition) != ("t", 0) && planned.topic != "twice"
        }));
        // Broker 3 still gets its share of "t" from the other partitions.
        assert!(plan.moved_replicas() > 0, "{plan:#?}");
        let skipped: Vec<(&str, i32)> = plan
            .skipped
            .iter()
            .map(|skipped| (skipped.topic.as_str(), skipped.partition))
            .collect();
        assert_eq!(skipped, vec![("twice", 0)]);
        // With two live brokers, the three-replica partition cannot fit.
        let narrow = super::plan(&[1, 2], &before);
        assert!(narrow.skipped.iter().any(|skipped| skipped.topic == "wide"));
        // No live broker: nothing to plan.
        assert!(super::plan(&[], &before).reassignments.is_empty());
    }
}
