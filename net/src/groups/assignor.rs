//! Server-side assignors of KIP-848 consumer groups: `uniform` (Kafka's
//! default) and `range`.
//!
//! Both are pure functions from the members' subscriptions, the topics'
//! partition counts and the previous target assignment to a new target.
//! `uniform` keeps every partition with its previous owner while that
//! owner is still subscribed and not above its fair share, hands the rest
//! to the least-loaded eligible member, then moves partitions from the most
//! to the least loaded member until no eligible move narrows the spread: with
//! identical subscriptions every member ends within one partition of every
//! other, and a membership change moves only the partitions it must.
//! `range` gives each topic's partitions to its subscribers (sorted by member
//! id) in contiguous ranges, the first `partitions % members` getting one
//! more.

use std::collections::{BTreeMap, BTreeSet};

use super::consumer_records::{Assignment, TopicId};

/// The assignor used when a member names none.
pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";

/// What the assignor needs to know of a member.
#[derive(Clone, Debug, Default)]
pub struct MemberSpec {
    pub subscribed: BTreeSet<TopicId>,
}

/// Runs the assignor called `name` (an unknown name runs `uniform`; the
/// coordinator rejects unknown names before it gets here).
pub fn assign(
    name: &str,
    members: &BTreeMap<String, MemberSpec>,
    topics: &BTreeMap<TopicId, i32>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    if name == RANGE {
        range(members, topics)
    } else {
        uniform(members, topics, previous)
    }
}

fn count(assignment: &Assignment) -> usize {
    assignment.values().map(BTreeSet::len).sum()
}

/// Kafka's `range`: per topic, contiguous ranges over its sorted subscribers.
pub fn range(
    members: &BTreeMap<String, MemberSpec>,
    topics: &BTreeMap<TopicId, i32>,
) -> BTreeMap<String, Assignment> {
    let mut result: BTreeMap<String, Assignment> = members
        .keys()
        .map(|member| (member.clone(), Assignment::new()))
        .collect();
    for (topic, partitions) in topics {
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, spec)| spec.subscribed.contains(topic))
            .map(|(member, _)| member)
            .collect();
        if subscribers.is_empty() || *partitions <= 0 {
            continue;
        }
        let each = *partitions as usize / subscribers.len();
        let extra = *partitions as usize % subscribers.len();
        let mut next = 0i32;
        for (index, member) in subscribers.into_iter().enumerate() {
            let take = each + usize::from(index < extra);
            if take == 0 {
                continue;
            }
            let set: BTreeSet<i32> = (next..next + take as i32).collect();
            next += take as i32;
            if let Some(assignment) = result.get_mut(member) {
                assignment.insert(*topic, set);
            }
        }
    }
    result
}

/// Kafka's `uniform`: balanced and sticky (see the module notes).
pub fn uniform(
    members: &BTreeMap<String, MemberSpec>,
    topics: &BTreeMap<TopicId, i32>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let mut result: BTreeMap<String, Assignment> = members
        .keys()
        .map(|member| (member.clone(), Assignment::new()))
        .collect();
    if members.is_empty() {
        return result;
    }
    let total: usize = topics
        .iter()
        .filter(|(topic, _)| {
            members
                .values()
                .any(|spec| spec.subscribed.contains(*topic))
        })
        .map(|(_, partitions)| (*partitions).max(0) as usize)
        .sum();
    // The fair share when everyone could take anything; heterogeneous
    // subscriptions are evened out by the moves below.
    let quota = total.div_ceil(members.len());
    let valid = |member: &str, topic: &TopicId, partition: i32| {
        members
            .get(member)
            .is_some_and(|spec| spec.subscribed.contains(topic))
            && topics
                .get(topic)
                .is_some_and(|partitions| partition >= 0 && partition < *partitions)
    };
    let mut taken: BTreeSet<(TopicId, i32)> = BTreeSet::new();
    // Stickiness: previous owners keep what is still theirs, up to quota.
    for (member, assignment) in previous {
        let Some(mine) = result.get_mut(member) else {
            continue;
        };
        let mut kept = 0;
        for (topic, partitions) in assignment {
            for partition in partitions {
                if kept >= quota
                    || !valid(member, topic, *partition)
                    || !taken.insert((*topic, *partition))
                {
                    continue;
                }
                mine.entry(*topic).or_default().insert(*partition);
                kept += 1;
            }
        }
    }
    // The rest go to the least-loaded subscriber.
    for (topic, partitions) in topics {
        for partition in 0..(*partitions).max(0) {
            if taken.contains(&(*topic, partition)) {
                continue;
            }
            let least = result
                .iter()
                .filter(|(member, _)| valid(member, topic, partition))
                .min_by_key(|(member, assignment)| (count(assignment), member.as_str()))
                .map(|(member, _)| member.clone());
            if let Some(member) = least {
                if let Some(assignment) = result.get_mut(&member) {
                    assignment.entry(*topic).or_default().insert(partition);
                    taken.insert((*topic, partition));
                }
            }
        }
    }
    balance(&mut result, &valid);
    for assignment in result.values_mut() {
        assignment.retain(|_, partitions| !partitions.is_empty());
    }
    result
}

/// Moves partitions from more to less loaded members while some move
/// leaves the giver still at least as loaded as the taker. Each move
/// lowers the sum of squared loads, so the loop ends.
fn balance(
    result: &mut BTreeMap<String, Assignment>,
    valid: &impl Fn(&str, &TopicId, i32) -> bool,
) {
    loop {
        let mut loads: Vec<(usize, String)> = result
            .iter()
            .map(|(member, assignment)| (count(assignment), member.clone()))
            .collect();
        loads.sort();
        let mut moved = None;
        'search: for (giver_load, giver) in loads.iter().rev() {
            for (taker_load, taker) in loads.iter() {
                if taker_load + 1 >= *giver_load {
                    break;
                }
                let Some(assignment) = result.get(giver) else {
                    continue;
                };
                for (topic, partitions) in assignment {
                    // Move the highest partition: deterministic, and it
                    // keeps lower partitions with their long-time owners.
                    if let Some(partition) = partitions
                        .iter()
                        .rev()
                        .find(|partition| valid(taker, topic, **partition))
                    {
                        moved = Some((giver.clone(), taker.clone(), *topic, *partition));
                        break 'search;
                    }
                }
            }
        }
        let Some((giver, taker, topic, partition)) = moved else {
            return;
        };
        if let Some(assignment) = result.get_mut(&giver) {
            if let Some(partitions) = assignment.get_mut(&topic) {
                partitions.remove(&partition);
            }
        }
        if let Some(assignment) = result.get_mut(&taker) {
            assignment.entry(topic).or_default().insert(partition);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: TopicId = [1; 16];
    const B: TopicId = [2; 16];

    fn members(names: &[&str], topics: &[TopicId]) -> BTreeMap<String, MemberSpec> {
        names
            .iter()
            .map(|name| {
                (
                    name.to_string(),
                    MemberSpec {
                        subscribed: topics.iter().copied().collect(),
                    },
                )
            })
            .collect()
    }

    fn all_once(result: &BTreeMap<String, Assignment>, topics: &BTreeMap<TopicId, i32>) {
        let mut seen = BTreeSet::new();
        for assignment in result.values() {
            for (topic, partitions) in assignment {
                for partition in partitions {
                    assert!(seen.insert((*topic, *partition)), "assigned twice");
                }
            }
        }
        let expected: usize = topics.values().map(|count| *count as usize).sum();
        assert_eq!(seen.len(), expected, "every partition assigned");
    }

    #[test]
    fn uniform_balances_and_assigns_everything_once() {
        let topics = BTreeMap::from([(A, 12), (B, 5)]);
        for size in 1..=7 {
            let names: Vec<String> = (0..size).map(|index| format!("m{index}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let result = uniform(&members(&refs, &[A, B]), &topics, &BTreeMap::new());
            all_once(&result, &topics);
            let loads: Vec<usize> = result.values().map(count).collect();
            let spread = loads.iter().max().unwrap() - loads.iter().min().unwrap();
            assert!(spread <= 1, "{size} members: loads {loads:?}");
        }
    }

    #[test]
    fn uniform_is_sticky_when_members_come_and_go() {
        let topics = BTreeMap::from([(A, 12)]);
        let first = uniform(&members(&["a", "b", "c"], &[A]), &topics, &BTreeMap::new());
        // A fourth member takes exactly its share; nobody else loses more.
        let second = uniform(&members(&["a", "b", "c", "d"], &[A]), &topics, &first);
        all_once(&second, &topics);
        assert_eq!(count(&second["d"]), 3);
        for member in ["a", "b", "c"] {
            let kept = second[member][&A].intersection(&first[member][&A]).count();
            assert_eq!(kept, 3, "{member} keeps 3 of its 4");
        }
        // When "a" leaves, the others keep everything they had.
        let third = uniform(&members(&["b", "c", "d"], &[A]), &topics, &second);
        all_once(&third, &topics);
        for member in ["b", "c", "d"] {
            assert!(second[member][&A].is_subset(&third[member][&A]));
            assert_eq!(count(&third[member]), 4);
        }
    }

    #[test]
    fn uniform_respects_subscriptions() {
        let topics = BTreeMap::from([(A, 4), (B, 4)]);
        let mut specs = members(&["x"], &[A]);
        specs.extend(members(&["y"], &[A, B]));
        let result = uniform(&specs, &topics, &BTreeMap::new());
        all_once(&result, &topics);
        assert!(!result["x"].contains_key(&B));
        assert_eq!(count(&result["x"]), 4);
        assert_eq!(count(&result["y"]), 4);
    }

    #[test]
    fn range_gives_contiguous_ranges_per_topic() {
        let topics = BTreeMap::from([(A, 7), (B, 2)]);
        let result = range(&members(&["a", "b", "c"], &[A, B]), &topics);
        all_once(&result, &topics);
        assert_eq!(result["a"][&A], BTreeSet::from([0, 1, 2]));
        assert_eq!(result["b"][&A], BTreeSet::from([3, 4]));
        assert_eq!(result["c"][&A], BTreeSet::from([5, 6]));
        assert_eq!(result["a"][&B], BTreeSet::from([0]));
        assert_eq!(result["b"][&B], BTreeSet::from([1]));
        assert!(!result["c"].contains_key(&B));
    }
}
