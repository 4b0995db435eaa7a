//! The history checker of the fault harness: given what clients did and saw
//! (sends and their acknowledgements, reads, transaction outcomes, committed
//! offsets), it finds the anomalies a Kafka-compatible broker must never
//! show, each with the operations that show it.
//!
//! Values are unique per producer: `(producer, sequence)` names one send, and
//! a producer sends its sequences in increasing order. The checker knows
//! nothing of brokers or faults; the harness records the history and the
//! checker is tested on histories with planted anomalies.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One send: the producer and its own sequence number for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SendId {
    pub producer: u32,
    pub sequence: u64,
}

/// What a reader was allowed to see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    ReadUncommitted,
    ReadCommitted,
}

/// How a transaction ended, as its producer was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    Committed,
    Aborted,
    /// The producer could not learn the outcome (its commit failed fatally
    /// or timed out): the transaction may have committed or aborted, but
    /// it is all or nothing either way.
    Unknown,
}

/// One recorded operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// The broker acknowledged `send` at `partition`/`offset`. `txn` names
    /// the producer's transaction, if any.
    Acked {
        send: SendId,
        partition: i32,
        offset: i64,
        txn: Option<u64>,
    },
    /// A transaction ended (`id` as in `Acked::txn`).
    TxnEnded { id: u64, outcome: TxnOutcome },
    /// `reader` read `send` at `partition`/`offset`.
    Read {
        reader: u32,
        isolation: Isolation,
        partition: i32,
        offset: i64,
        send: SendId,
    },
    /// A reader was assigned `partition` again from `offset` (after a seek,
    /// a restart or a rebalance): its offsets may go back from here.
    Seek {
        reader: u32,
        partition: i32,
        offset: i64,
    },
    /// `group` committed `offset` for `partition`. Commits come in the
    /// order they were acknowledged, whichever member made them (a harness
    /// whose members are processes of their own orders them by a clock
    /// they share): none may go back, not even a fenced member's, since a
    /// coordinator refuses commits of an older generation.
    Committed {
        group: u32,
        partition: i32,
        offset: i64,
    },
    /// `group`'s offset for `partition` was reset on purpose (it may go back).
    OffsetReset { group: u32, partition: i32 },
    /// A member of `group` processed the record at `partition`/`offset`
    /// (before committing past it); `output` is the send it produced from
    /// it, if the group transforms records (in a transaction).
    Processed {
        group: u32,
        partition: i32,
        offset: i64,
        output: Option<SendId>,
    },
    /// The end of the run: a reader read every partition from its start to
    /// its high watermark. Read uncommitted, every acknowledged send must
    /// have been among its `Read`s; read committed, it shows which
    /// transactions took effect.
    FinalReadDone { reader: u32, isolation: Isolation },
}

/// An anomaly and the positions (in the history) of the operations that
/// show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub ops: Vec<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnomalyKind {
    /// An acknowledged send is missing from the final read.
    LostWrite,
    /// A send that was not acknowledged but that a reader was given is
    /// missing from the final read: readers see only what is committed.
    LostRead,
    /// One send stored at two offsets.
    Duplicate,
    /// A producer's sends stored in a partition out of their send order.
    Reordered,
    /// One (partition, offset) read as different sends.
    DivergentRead,
    /// A read_committed reader read a send of an aborted transaction (G1a).
    AbortedRead,
    /// A read_committed reader read a send whose transaction never
    /// committed.
    UncommittedRead,
    /// A read_committed reader read past a committed transaction but saw
    /// only part of it.
    TornTransaction,
    /// A reader's offsets in a partition went back without a seek.
    NonMonotonicRead,
    /// A group's committed offset went back without a reset.
    CommitBackwards,
    /// A record below a group's last committed offset that the group never
    /// processed, or whose output no committed transaction holds.
    Skipped,
    /// A record a transforming group turned into outputs of two committed
    /// transactions (exactly once broken).
    ProcessedTwice,
}

/// Checks a history; the anomalies come sorted by kind, then position.
pub fn check(history: &[Op]) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    stored_once_in_order(history, &mut anomalies);
    reads_agree(history, &mut anomalies);
    transactions(history, &mut anomalies);
    monotonic(history, &mut anomalies);
    processed_once(history, &mut anomalies);
    anomalies.sort_by(|a, b| (a.kind, &a.ops).cmp(&(b.kind, &b.ops)));
    anomalies
}

/// Where one send was read: (partition, offset) -> positions of the reads.
type Places = BTreeMap<(i32, i64), Vec<usize>>;

/// One producer's sends stored in one partition: (sequence, offset,
/// position of the first read).
type Stored = Vec<(u64, i64, usize)>;

/// The last complete final read with `isolation`: its position and reader.
fn last_final_read(history: &[Op], isolation: Isolation) -> Option<(usize, u32)> {
    history
        .iter()
        .enumerate()
        .rev()
        .find_map(|(at, op)| match op {
            Op::FinalReadDone {
                reader,
                isolation: done,
            } if *done == isolation => Some((at, *reader)),
            _ => None,
        })
}

/// What `reader` read: (partition, offset, send).
fn reads_by(history: &[Op], reader: u32) -> impl Iterator<Item = (i32, i64, SendId)> + '_ {
    history.iter().filter_map(move |op| match op {
        Op::Read {
            reader: by,
            partition,
            offset,
            send,
            ..
        } if *by == reader => Some((*partition, *offset, *send)),
        _ => None,
    })
}

/// Where every send was read.
fn read_positions(history: &[Op]) -> HashMap<SendId, Places> {
    let mut positions: HashMap<SendId, Places> = HashMap::new();
    for (at, op) in history.iter().enumerate() {
        if let Op::Read {
            partition,
            offset,
            send,
            ..
        } = op
        {
            positions
                .entry(*send)
                .or_default()
                .entry((*partition, *offset))
                .or_default()
                .push(at);
        }
    }
    positions
}

/// Lost writes, duplicates and reordering.
fn stored_once_in_order(history: &[Op], anomalies: &mut Vec<Anomaly>) {
    let positions = read_positions(history);
    // Lost: the last complete final read did not see a send that was
    // acknowledged, or that another reader was given (a reader gets only
    // what is below the high watermark: committed, so it must stay). A
    // read by someone else earlier does not make up for it: the record
    // may have been there and gone since.
    if let Some((last_final, final_reader)) = last_final_read(history, Isolation::ReadUncommitted) {
        let finally_read: HashSet<SendId> = reads_by(history, final_reader)
            .map(|(_, _, send)| send)
            .collect();
        let mut acknowledged: HashSet<SendId> = HashSet::new();
        for (at, op) in history.iter().enumerate() {
            if let Op::Acked { send, .. } = op {
                acknowledged.insert(*send);
                if !finally_read.contains(send) {
                    anomalies.push(Anomaly {
                        kind: AnomalyKind::LostWrite,
                        ops: vec![at, last_final],
                    });
                }
            }
        }
        let mut read_then_lost: Vec<(usize, SendId)> = positions
            .iter()
            .filter(|(send, _)| !finally_read.contains(*send) && !acknowledged.contains(*send))
            .filter_map(|(send, places)| {
                let first = places.values().flatten().min()?;
                Some((*first, *send))
            })
            .collect();
        read_then_lost.sort();
        for (first_read, _) in read_then_lost {
            anomalies.push(Anomaly {
                kind: AnomalyKind::LostRead,
                ops: vec![first_read, last_final],
            });
        }
    }
    // Duplicate: one send read at two different positions.
    let mut sends: Vec<&SendId> = positions.keys().collect();
    sends.sort();
    for send in &sends {
        let places = &positions[*send];
        if places.len() > 1 {
            anomalies.push(Anomaly {
                kind: AnomalyKind::Duplicate,
                ops: places.values().map(|reads| reads[0]).collect(),
            });
        }
    }
    // Reordered: within a partition, one producer's sends must sit at
    // increasing offsets in sequence order.
    // A send stored twice counts at its first place (the second is the
    // duplicate, already reported).
    let mut by_partition_producer: BTreeMap<(i32, u32), Stored> = BTreeMap::new();
    for send in sends {
        if let Some((&(partition, offset), reads)) = positions[send].iter().next() {
            by_partition_producer
                .entry((partition, send.producer))
                .or_default()
                .push((send.sequence, offset, reads[0]));
        }
    }
    for mut stored in by_partition_producer.into_values() {
        stored.sort();
        for pair in stored.windows(2) {
            let ((_, earlier_offset, earlier_read), (_, later_offset, later_read)) =
                (pair[0], pair[1]);
            if later_offset < earlier_offset {
                anomalies.push(Anomaly {
                    kind: AnomalyKind::Reordered,
                    ops: vec![earlier_read, later_read],
                });
            }
        }
    }
}

/// Every read of one (partition, offset) names the same send.
fn reads_agree(history: &[Op], anomalies: &mut Vec<Anomaly>) {
    let mut first_read: HashMap<(i32, i64), (SendId, usize)> = HashMap::new();
    let mut reported: HashSet<(i32, i64)> = HashSet::new();
    for (at, op) in history.iter().enumerate() {
        if let Op::Read {
            partition,
            offset,
            send,
            ..
        } = op
        {
            let key = (*partition, *offset);
            match first_read.get(&key) {
                None => {
                    first_read.insert(key, (*send, at));
                }
                Some((seen, seen_at)) if seen != send && reported.insert(key) => {
                    anomalies.push(Anomaly {
                        kind: AnomalyKind::DivergentRead,
                        ops: vec![*seen_at, at],
                    });
                }
                Some(_) => {}
            }
        }
    }
}

/// Aborted, uncommitted and torn transaction reads by read_committed
/// readers.
fn transactions(history: &[Op], anomalies: &mut Vec<Anomaly>) {
    let mut txn_of: HashMap<SendId, (u64, usize)> = HashMap::new();
    let mut members: HashMap<u64, Vec<(i32, i64, usize)>> = HashMap::new();
    let mut outcomes: HashMap<u64, (TxnOutcome, usize)> = HashMap::new();
    for (at, op) in history.iter().enumerate() {
        match op {
            Op::Acked {
                send,
                partition,
                offset,
                txn: Some(id),
            } => {
                txn_of.insert(*send, (*id, at));
                members
                    .entry(*id)
                    .or_default()
                    .push((*partition, *offset, at));
            }
            Op::TxnEnded { id, outcome } => {
                outcomes.insert(*id, (*outcome, at));
            }
            _ => {}
        }
    }
    // What each read_committed reader read, per partition: the highest
    // offset and every send.
    let mut committed_reads: BTreeMap<u32, (HashMap<i32, i64>, HashSet<SendId>)> = BTreeMap::new();
    for (at, op) in history.iter().enumerate() {
        let Op::Read {
            reader,
            isolation: Isolation::ReadCommitted,
            partition,
            offset,
            send,
        } = op
        else {
            continue;
        };
        let (highest, seen) = committed_reads.entry(*reader).or_default();
        let high = highest.entry(*partition).or_insert(*offset);
        *high = (*high).max(*offset);
        seen.insert(*send);
        let Some(&(id, acked_at)) = txn_of.get(send) else {
            continue;
        };
        match outcomes.get(&id) {
            Some((TxnOutcome::Aborted, ended_at)) => anomalies.push(Anomaly {
                kind: AnomalyKind::AbortedRead,
                ops: vec![acked_at, *ended_at, at],
            }),
            Some((TxnOutcome::Committed | TxnOutcome::Unknown, _)) => {}
            None => anomalies.push(Anomaly {
                kind: AnomalyKind::UncommittedRead,
                ops: vec![acked_at, at],
            }),
        }
    }
    // Torn: a reader that read past every record of a committed transaction
    // (in each of its partitions) must have seen all of them.
    let sends_of: HashMap<u64, Vec<SendId>> =
        txn_of
            .iter()
            .fold(HashMap::new(), |mut sends, (send, (id, _))| {
                sends.entry(*id).or_insert_with(Vec::new).push(*send);
                sends
            });
    let mut ids: Vec<&u64> = members.keys().collect();
    ids.sort();
    for (highest, seen) in committed_reads.values() {
        for id in &ids {
            // Committed: all of it; unknown: all or nothing.
            let all_or_nothing = match outcomes.get(*id) {
                Some((TxnOutcome::Committed, _)) => false,
                Some((TxnOutcome::Unknown, _)) => true,
                _ => continue,
            };
            let records = &members[*id];
            let read_past = records.iter().all(|(partition, offset, _)| {
                highest.get(partition).is_some_and(|high| high > offset)
            });
            let sends = &sends_of[*id];
            let missing = sends.iter().any(|send| !seen.contains(send));
            let some_seen = sends.iter().any(|send| seen.contains(send));
            if read_past && missing && (some_seen || !all_or_nothing) {
                let mut ops: Vec<usize> = records.iter().map(|(_, _, at)| *at).collect();
                ops.sort();
                anomalies.push(Anomaly {
                    kind: AnomalyKind::TornTransaction,
                    ops,
                });
            }
        }
    }
}

/// A reader's offsets per partition and a group's committed offsets only go
/// forward (between seeks and resets).
fn monotonic(history: &[Op], anomalies: &mut Vec<Anomaly>) {
    let mut last_read: HashMap<(u32, i32), (i64, usize)> = HashMap::new();
    let mut last_commit: HashMap<(u32, i32), (i64, usize)> = HashMap::new();
    for (at, op) in history.iter().enumerate() {
        match op {
            Op::Read {
                reader,
                partition,
                offset,
                ..
            } => {
                if let Some((previous, previous_at)) = last_read.get(&(*reader, *partition)) {
                    if offset <= previous {
                        anomalies.push(Anomaly {
                            kind: AnomalyKind::NonMonotonicRead,
                            ops: vec![*previous_at, at],
                        });
                    }
                }
                last_read.insert((*reader, *partition), (*offset, at));
            }
            Op::Seek {
                reader, partition, ..
            } => {
                last_read.remove(&(*reader, *partition));
            }
            Op::Committed {
                group,
                partition,
                offset,
            } => {
                if let Some((previous, previous_at)) = last_commit.get(&(*group, *partition)) {
                    if offset < previous {
                        anomalies.push(Anomaly {
                            kind: AnomalyKind::CommitBackwards,
                            ops: vec![*previous_at, at],
                        });
                    }
                }
                last_commit.insert((*group, *partition), (*offset, at));
            }
            Op::OffsetReset { group, partition } => {
                last_commit.remove(&(*group, *partition));
            }
            _ => {}
        }
    }
}

/// Each group processed every record below its last committed offset (at
/// least once; a transforming group's output of it in a committed
/// transaction), and a transforming group committed no record's output
/// twice. Needs the final reads: which records exist (read uncommitted)
/// and which outputs took effect (read committed).
fn processed_once(history: &[Op], anomalies: &mut Vec<Anomaly>) {
    let Some((uncommitted_done, uncommitted_reader)) =
        last_final_read(history, Isolation::ReadUncommitted)
    else {
        return;
    };
    let committed_final = last_final_read(history, Isolation::ReadCommitted);
    // Where the committed reader found each output.
    let visible: HashMap<SendId, (i32, i64)> = committed_final
        .map(|(_, reader)| {
            reads_by(history, reader)
                .map(|(partition, offset, send)| (send, (partition, offset)))
                .collect()
        })
        .unwrap_or_default();
    // Per group: the last committed offset of each partition, and every
    // processing of each record (its position and output).
    let mut last_commit: BTreeMap<(u32, i32), (i64, usize)> = BTreeMap::new();
    type Processings = HashMap<(u32, i32, i64), Vec<(usize, Option<SendId>)>>;
    let mut processed: Processings = HashMap::new();
    for (at, op) in history.iter().enumerate() {
        match op {
            Op::Committed {
                group,
                partition,
                offset,
            } => {
                last_commit.insert((*group, *partition), (*offset, at));
            }
            Op::Processed {
                group,
                partition,
                offset,
                output,
            } => processed
                .entry((*group, *partition, *offset))
                .or_default()
                .push((at, *output)),
            _ => {}
        }
    }
    let mut records: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (partition, offset, _) in reads_by(history, uncommitted_reader) {
        records.entry(partition).or_default().push(offset);
    }
    for (&(group, partition), &(committed, commit_at)) in &last_commit {
        for &offset in records.get(&partition).into_iter().flatten() {
            if offset >= committed {
                continue;
            }
            let processings = processed.get(&(group, partition, offset));
            let done = processings.is_some_and(|processings| {
                processings.iter().any(|(_, output)| match output {
                    None => true,
                    Some(output) => visible.contains_key(output),
                })
            });
            // A transforming group can only be judged with a committed
            // final read.
            let judged = committed_final.is_some()
                || processings.is_none_or(|processings| {
                    processings.iter().all(|(_, output)| output.is_none())
                });
            if !done && judged {
                let mut ops: Vec<usize> = processings
                    .into_iter()
                    .flatten()
                    .map(|(at, _)| *at)
                    .collect();
                ops.push(commit_at);
                ops.push(uncommitted_done);
                anomalies.push(Anomaly {
                    kind: AnomalyKind::Skipped,
                    ops,
                });
            }
        }
    }
    let mut twice: Vec<Vec<usize>> = processed
        .values()
        .filter_map(|processings| {
            let took_effect: Vec<usize> = processings
                .iter()
                .filter(|(_, output)| output.is_some_and(|output| visible.contains_key(&output)))
                .map(|(at, _)| *at)
                .collect();
            (took_effect.len() > 1).then_some(took_effect)
        })
        .collect();
    twice.sort();
    for ops in twice {
        anomalies.push(Anomaly {
            kind: AnomalyKind::ProcessedTwice,
            ops,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(producer: u32, sequence: u64) -> SendId {
        SendId { producer, sequence }
    }

    fn acked(producer: u32, sequence: u64, offset: i64) -> Op {
        Op::Acked {
            send: send(producer, sequence),
            partition: 0,
            offset,
            txn: None,
        }
    }

    fn read(reader: u32, offset: i64, producer: u32, sequence: u64) -> Op {
        Op::Read {
            reader,
            isolation: Isolation::ReadUncommitted,
            partition: 0,
            offset,
            send: send(producer, sequence),
        }
    }

    fn committed_read(reader: u32, partition: i32, offset: i64, sequence: u64) -> Op {
        Op::Read {
            reader,
            isolation: Isolation::ReadCommitted,
            partition,
            offset,
            send: send(1, sequence),
        }
    }

    fn in_txn(sequence: u64, partition: i32, offset: i64, id: u64) -> Op {
        Op::Acked {
            send: send(1, sequence),
            partition,
            offset,
            txn: Some(id),
        }
    }

    fn ended(id: u64, outcome: TxnOutcome) -> Op {
        Op::TxnEnded { id, outcome }
    }

    /// One anomaly of `kind`, shown by the operations at `ops`.
    fn only(kind: AnomalyKind, ops: &[usize]) -> Vec<Anomaly> {
        vec![Anomaly {
            kind,
            ops: ops.to_vec(),
        }]
    }

    fn kinds(history: &[Op]) -> Vec<AnomalyKind> {
        check(history)
            .into_iter()
            .map(|anomaly| anomaly.kind)
            .collect()
    }

    /// Three sends acknowledged and read back in order by two readers.
    fn clean() -> Vec<Op> {
        vec![
            acked(1, 0, 0),
            acked(1, 1, 1),
            acked(1, 2, 2),
            read(7, 0, 1, 0),
            read(7, 1, 1, 1),
            read(7, 2, 1, 2),
            read(8, 0, 1, 0),
            read(8, 1, 1, 1),
            read(8, 2, 1, 2),
            Op::FinalReadDone {
                reader: 8,
                isolation: Isolation::ReadUncommitted,
            },
        ]
    }

    #[test]
    fn a_clean_history_has_no_anomaly() {
        assert_eq!(check(&clean()), Vec::new());
    }

    #[test]
    fn a_lost_write_is_found() {
        let mut history = clean();
        history.insert(3, acked(1, 3, 3));
        assert_eq!(check(&history), only(AnomalyKind::LostWrite, &[3, 10]));
        // Without a complete final read nothing can be called lost.
        history.pop();
        assert_eq!(kinds(&history), Vec::new());
    }

    #[test]
    fn a_write_read_early_and_gone_later_is_lost() {
        // Reader 7 saw the third send while it was there; the final read
        // by reader 8 ends before it.
        let mut history = clean();
        history.remove(8);
        assert_eq!(check(&history), only(AnomalyKind::LostWrite, &[2, 8]));
        // The same for a send nobody acknowledged (its producer gave up)
        // but a reader was given.
        let mut history = clean();
        history.remove(8);
        history.remove(2);
        assert_eq!(check(&history), only(AnomalyKind::LostRead, &[4, 7]));
    }

    #[test]
    fn a_duplicate_is_found() {
        let mut history = clean();
        history.push(read(8, 3, 1, 1));
        assert_eq!(kinds(&history), vec![AnomalyKind::Duplicate]);
        // The same send read twice at the same place is not a duplicate.
        let mut history = clean();
        history.push(Op::Seek {
            reader: 8,
            partition: 0,
            offset: 1,
        });
        history.push(read(8, 1, 1, 1));
        assert_eq!(kinds(&history), Vec::new());
    }

    #[test]
    fn reordering_is_found() {
        let history = vec![
            acked(1, 0, 0),
            acked(1, 1, 2),
            acked(1, 2, 1),
            read(7, 0, 1, 0),
            read(7, 1, 1, 2),
            read(7, 2, 1, 1),
        ];
        assert_eq!(
            check(&history),
            // The earlier send's read, then the later send's.
            only(AnomalyKind::Reordered, &[5, 4])
        );
        // Two producers interleaved is not reordering.
        let history = vec![
            read(7, 0, 1, 0),
            read(7, 1, 2, 0),
            read(7, 2, 1, 1),
            read(7, 3, 2, 1),
        ];
        assert_eq!(kinds(&history), Vec::new());
    }

    #[test]
    fn divergent_reads_are_found() {
        let mut history = clean();
        history.push(Op::Seek {
            reader: 7,
            partition: 0,
            offset: 1,
        });
        history.push(read(7, 1, 2, 9));
        // The send read instead is not in the final read either: what a
        // reader was given is gone.
        assert_eq!(
            kinds(&history),
            vec![AnomalyKind::LostRead, AnomalyKind::DivergentRead]
        );
    }

    #[test]
    fn aborted_and_uncommitted_reads_are_found() {
        let history = vec![
            in_txn(0, 0, 0, 1),
            ended(1, TxnOutcome::Aborted),
            in_txn(1, 0, 2, 2),
            committed_read(7, 0, 0, 0),
            committed_read(7, 0, 2, 1),
        ];
        assert_eq!(
            check(&history),
            vec![
                Anomaly {
                    kind: AnomalyKind::AbortedRead,
                    ops: vec![0, 1, 3],
                },
                Anomaly {
                    kind: AnomalyKind::UncommittedRead,
                    ops: vec![2, 4],
                },
            ]
        );
        // Read uncommitted may see both.
        let history = vec![
            in_txn(0, 0, 0, 1),
            ended(1, TxnOutcome::Aborted),
            read(7, 0, 1, 0),
        ];
        assert_eq!(kinds(&history), Vec::new());
    }

    #[test]
    fn a_torn_transaction_is_found() {
        let mut history = vec![
            in_txn(0, 0, 0, 1),
            in_txn(1, 1, 0, 1),
            ended(1, TxnOutcome::Committed),
            // Markers at offset 1 of each partition, then later data.
            committed_read(7, 0, 0, 0),
            committed_read(7, 0, 5, 10),
            committed_read(7, 1, 5, 11),
        ];
        assert_eq!(check(&history), only(AnomalyKind::TornTransaction, &[0, 1]));
        // The reader that saw the whole transaction is fine.
        history.push(committed_read(8, 0, 0, 0));
        history.push(committed_read(8, 1, 0, 1));
        history.push(committed_read(8, 1, 6, 12));
        assert_eq!(check(&history).len(), 1);
        // A reader that has not yet read past it is not torn.
        let history = vec![
            in_txn(0, 0, 0, 1),
            in_txn(1, 1, 0, 1),
            ended(1, TxnOutcome::Committed),
            committed_read(7, 0, 0, 0),
        ];
        assert_eq!(kinds(&history), Vec::new());
    }

    #[test]
    fn offsets_going_back_are_found_unless_sought_or_reset() {
        let history = vec![read(7, 5, 1, 5), read(7, 3, 1, 3)];
        assert_eq!(kinds(&history), vec![AnomalyKind::NonMonotonicRead]);
        let history = vec![
            read(7, 5, 1, 5),
            Op::Seek {
                reader: 7,
                partition: 0,
                offset: 3,
            },
            read(7, 3, 1, 3),
        ];
        assert_eq!(kinds(&history), Vec::new());
        let commit = |offset| Op::Committed {
            group: 1,
            partition: 0,
            offset,
        };
        let history = vec![commit(10), commit(10), commit(4)];
        assert_eq!(check(&history), only(AnomalyKind::CommitBackwards, &[1, 2]));
        let history = vec![
            commit(10),
            Op::OffsetReset {
                group: 1,
                partition: 0,
            },
            commit(4),
        ];
        assert_eq!(kinds(&history), Vec::new());
    }

    fn processed(group: u32, offset: i64, output: Option<u64>) -> Op {
        Op::Processed {
            group,
            partition: 0,
            offset,
            output: output.map(|sequence| send(9, sequence)),
        }
    }

    fn group_commit(group: u32, offset: i64) -> Op {
        Op::Committed {
            group,
            partition: 0,
            offset,
        }
    }

    #[test]
    fn a_group_skipping_a_record_is_found() {
        // Group 3 processed offsets 0 and 2 and committed past all three.
        let mut history = clean();
        let done = history.pop().expect("the final read");
        history.extend([
            processed(3, 0, None),
            processed(3, 2, None),
            group_commit(3, 3),
            done,
        ]);
        assert_eq!(check(&history), only(AnomalyKind::Skipped, &[11, 12]));
        // Processed twice is at least once, which is all a group promises.
        history.insert(11, processed(3, 1, None));
        history.insert(11, processed(3, 1, None));
        assert_eq!(kinds(&history), Vec::new());
        // Not yet committed past a record is not skipping it.
        let mut history = clean();
        let done = history.pop().expect("the final read");
        history.extend([processed(3, 0, None), group_commit(3, 1), done]);
        assert_eq!(kinds(&history), Vec::new());
    }

    fn seek(reader: u32, offset: i64) -> Op {
        Op::Seek {
            reader,
            partition: 0,
            offset,
        }
    }

    /// A read of offset `offset` by a member of group 3 (as `reader`),
    /// which is also the group's processing of it.
    fn member_read(reader: u32, offset: i64) -> [Op; 2] {
        [
            read(reader, offset, 1, offset as u64),
            processed(3, offset, None),
        ]
    }

    /// Group 3's members 20 and 21 (as readers) hand partition 0 over:
    /// 20 reads offsets 0 and 1 and commits 2, then 21 is assigned the
    /// partition, reads 1 again (at least once allows that) and 2, and
    /// commits 3.
    fn handed_over() -> Vec<Op> {
        let mut history = clean();
        let done = history.pop().expect("the final read");
        history.push(seek(20, 0));
        history.extend(member_read(20, 0));
        history.extend(member_read(20, 1));
        history.push(group_commit(3, 2));
        history.push(seek(21, 1));
        history.extend(member_read(21, 1));
        history.extend(member_read(21, 2));
        history.push(group_commit(3, 3));
        history.push(done);
        history
    }

    #[test]
    fn a_group_is_checked_across_its_members() {
        assert_eq!(check(&handed_over()), Vec::new());
        // Member 21 commits 1 after member 20's 2: back, whoever made it.
        let mut history = handed_over();
        history.insert(15, group_commit(3, 1));
        assert_eq!(
            check(&history),
            only(AnomalyKind::CommitBackwards, &[14, 15])
        );
        // Member 21 assigned the partition past the committed offset: it
        // never reads offset 2, yet the group commits past it.
        let mut history = handed_over();
        history.drain(15..21);
        history.insert(15, seek(21, 3));
        history.insert(16, group_commit(3, 3));
        assert_eq!(check(&history), only(AnomalyKind::Skipped, &[16, 17]));
        // Member 21's offsets going back within one assignment.
        let mut history = handed_over();
        history.insert(20, read(21, 1, 1, 1));
        assert_eq!(
            check(&history),
            only(AnomalyKind::NonMonotonicRead, &[18, 20])
        );
    }

    /// Offsets 0..3 of partition 0 transformed by group 3 into sends of
    /// producer 9 in transactions, the outputs at partition 5; the final
    /// reads, read uncommitted and read committed.
    fn transformed(outcomes: [TxnOutcome; 3], committed_sees: &[u64]) -> Vec<Op> {
        let mut history = clean();
        history.pop();
        for (offset, outcome) in outcomes.into_iter().enumerate() {
            let sequence = offset as u64;
            history.push(processed(3, offset as i64, Some(sequence)));
            history.push(Op::Acked {
                send: send(9, sequence),
                partition: 5,
                offset: 2 * offset as i64,
                txn: Some(sequence),
            });
            history.push(ended(sequence, outcome));
        }
        history.push(group_commit(3, 3));
        history.push(Op::FinalReadDone {
            reader: 8,
            isolation: Isolation::ReadUncommitted,
        });
        for sequence in committed_sees {
            history.push(Op::Read {
                reader: 20,
                isolation: Isolation::ReadCommitted,
                partition: 5,
                offset: 2 * *sequence as i64,
                send: send(9, *sequence),
            });
        }
        history.push(Op::FinalReadDone {
            reader: 20,
            isolation: Isolation::ReadCommitted,
        });
        history
    }

    #[test]
    fn a_transforming_group_is_checked_for_exactly_once() {
        use TxnOutcome::{Aborted, Committed, Unknown};
        // The final uncommitted reader here read only the input partition;
        // the outputs are left out of its reads on purpose, so lost writes
        // of them are expected and filtered out.
        let exactly_once = |history: &[Op]| -> Vec<AnomalyKind> {
            kinds(history)
                .into_iter()
                .filter(|kind| *kind != AnomalyKind::LostWrite)
                .collect()
        };
        let history = transformed([Committed, Committed, Unknown], &[0, 1, 2]);
        assert_eq!(exactly_once(&history), Vec::new());
        // Offset 1's only output was aborted, yet the group committed past
        // it.
        let history = transformed([Committed, Aborted, Committed], &[0, 2]);
        assert_eq!(exactly_once(&history), vec![AnomalyKind::Skipped]);
        // An unknown outcome that did not take effect is the same.
        let history = transformed([Committed, Committed, Unknown], &[0, 1]);
        assert_eq!(exactly_once(&history), vec![AnomalyKind::Skipped]);
        // Offset 1 transformed again into a second committed output.
        let mut history = transformed([Committed, Committed, Committed], &[0, 1, 2, 3]);
        let at = history
            .iter()
            .position(|op| matches!(op, Op::Committed { .. }))
            .expect("the group's commit");
        history.insert(at, ended(3, Committed));
        history.insert(
            at,
            Op::Acked {
                send: send(9, 3),
                partition: 5,
                offset: 6,
                txn: Some(3),
            },
        );
        history.insert(at, processed(3, 1, Some(3)));
        let found = check(&history);
        let twice: Vec<&Anomaly> = found
            .iter()
            .filter(|anomaly| anomaly.kind == AnomalyKind::ProcessedTwice)
            .collect();
        assert_eq!(twice.len(), 1, "{found:?}");
        assert_eq!(twice[0].ops, vec![12, at]);
    }

    #[test]
    fn an_unknown_outcome_is_all_or_nothing() {
        let history = vec![
            in_txn(0, 0, 0, 1),
            in_txn(1, 1, 0, 1),
            ended(1, TxnOutcome::Unknown),
            committed_read(7, 0, 0, 0),
            committed_read(7, 0, 5, 10),
            committed_read(7, 1, 5, 11),
        ];
        assert_eq!(check(&history), only(AnomalyKind::TornTransaction, &[0, 1]));
        // Seen whole or not at all, either is fine.
        let history = vec![
            in_txn(0, 0, 0, 1),
            in_txn(1, 1, 0, 1),
            ended(1, TxnOutcome::Unknown),
            committed_read(7, 0, 5, 10),
            committed_read(7, 1, 5, 11),
            committed_read(8, 0, 0, 0),
            committed_read(8, 1, 0, 1),
            committed_read(8, 1, 6, 12),
        ];
        assert_eq!(kinds(&history), Vec::new());
    }
}
