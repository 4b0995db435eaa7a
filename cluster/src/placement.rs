//! Where a topic's replicas go: spread over brokers and racks, leaders
//! balanced.
//!
//! Brokers are ordered so that consecutive ones sit in different racks
//! (rack by rack, taking one broker from each in turn), then partition `p`
//! gets the `replication_factor` brokers starting at position
//! `start + p`. Consecutive replicas of one partition are thus in different
//! racks whenever the racks allow it, and each broker is the first replica
//! (the preferred leader) of an equal share of partitions. `start` comes
//! from the topic's name so that many small topics do not all lead on the
//! same broker.

use std::collections::BTreeMap;

/// A broker that may take replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: i32,
    pub rack: Option<String>,
}

/// Orders brokers so that neighbours are in different racks.
fn rack_alternating(brokers: &[Candidate]) -> Vec<i32> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for broker in brokers {
        by_rack
            .entry(broker.rack.as_deref())
            .or_default()
            .push(broker.id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let mut ordered = Vec::with_capacity(brokers.len());
    let mut round = 0;
    while ordered.len() < brokers.len() {
        for ids in by_rack.values() {
            if let Some(id) = ids.get(round) {
                ordered.push(*id);
            }
        }
        round += 1;
    }
    ordered
}

/// A stable start position from the topic name (FNV-1a).
fn start_for(topic: &str) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash as usize
}

/// Replica lists for partitions `first..first + count` of a topic.
pub fn place(
    brokers: &[Candidate],
    topic: &str,
    first: i32,
    count: i32,
    replication_factor: usize,
) -> Result<Vec<Vec<i32>>, String> {
    if replication_factor == 0 {
        return Err("the replication factor must be at least 1".into());
    }
    if replication_factor > brokers.len() {
        return Err(format!(
            "Replication factor: {replication_factor} larger than available brokers: {}.",
            brokers.len()
        ));
    }
    let ordered = rack_alternating(brokers);
    let start = start_for(topic);
    Ok((first..first + count)
        .map(|partition| {
            let base = start.wrapping_add(partition as usize);
            (0..replication_factor)
                .map(|replica| ordered[base.wrapping_add(replica) % ordered.len()])
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(racks: &[&str]) -> Vec<Candidate> {
        racks
            .iter()
            .enumerate()
            .map(|(index, rack)| Candidate {
                id: index as i32 + 1,
                rack: (!rack.is_empty()).then(|| rack.to_string()),
            })
            .collect()
    }

    #[test]
    fn leaders_are_balanced_and_replicas_distinct() {
        let placed = place(&brokers(&["", "", ""]), "orders", 0, 12, 3).unwrap();
        let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
        for replicas in &placed {
            let mut distinct = replicas.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), 3, "{replicas:?}");
            *leaders.entry(replicas[0]).or_default() += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![4, 4, 4]);
    }

    #[test]
    fn replicas_spread_over_racks() {
        let racks = ["a", "a", "b", "b", "c", "c"];
        let placed = place(&brokers(&racks), "t", 0, 30, 3).unwrap();
        for replicas in placed {
            let mut seen: Vec<&str> = replicas
                .iter()
                .map(|id| racks[(*id - 1) as usize])
                .collect();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), 3, "{replicas:?} shares a rack");
        }
    }

    #[test]
    fn too_few_brokers_is_refused() {
        let error = place(&brokers(&["", ""]), "t", 0, 1, 3).unwrap_err();
        assert!(
            error.contains("larger than available brokers: 2"),
            "{error}"
        );
    }
}
