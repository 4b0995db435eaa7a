//! The transition functions alone, without I/O: Kafka's checks, epoch
//! bumps, and epoch exhaustion on the InitProducerId, EndTxn v5 and
//! transaction-timeout paths.

use std::collections::BTreeSet;

use super::coordinator::{
    add_transition, complete_transition, end_answer, end_transition, fence_transition,
    init_transition, marker_transaction_version, new_meta, EndStep, InitStep, EPOCH_LAST_USABLE,
};
use super::{TxnMeta, TxnStatus};
use crate::errors::code;

const PRODUCER_ID: i64 = 1000;
const TIMEOUT_MS: i32 = 60_000;
const NOW: i64 = 1_700_000_000_000;

fn empty_at(epoch: i16) -> TxnMeta {
    let mut meta = new_meta("id", 0, PRODUCER_ID, TIMEOUT_MS, NOW - 10);
    meta.producer_epoch = epoch;
    meta
}

fn ongoing_at(epoch: i16) -> TxnMeta {
    let mut meta = empty_at(epoch);
    meta.status = TxnStatus::Ongoing;
    meta.start_ms = NOW - 5;
    meta.partitions = BTreeSet::from([("data".to_string(), 0), ("data".to_string(), 1)]);
    meta
}

fn init_next(step: Result<InitStep, i16>) -> TxnMeta {
    match step {
        Ok(InitStep::Next(next)) => next,
        other => panic!("expected a next state, got {other:?}"),
    }
}

fn end_next(step: Result<EndStep, i16>) -> TxnMeta {
    match step {
        Ok(EndStep::Next(next)) => next,
        other => panic!("expected a next state, got {other:?}"),
    }
}

/// A new producer's InitProducerId (no expected pair).
fn init_new_producer(meta: &TxnMeta, new_id: Option<i64>) -> Result<InitStep, i16> {
    init_transition(meta, false, TIMEOUT_MS, -1, -1, new_id, NOW)
}

#[test]
fn init_bumps_the_epoch_and_a_new_producer_fences_the_old_one() {
    let meta = empty_at(3);
    let next = init_next(init_new_producer(&meta, None));
    assert_eq!(next.producer_id, PRODUCER_ID);
    assert_eq!(next.producer_epoch, 4);
    assert_eq!(next.status, TxnStatus::Empty);
    assert_eq!(next.last_update_ms, NOW);
    // The epoch before a new producer's bump is not kept: the old producer
    // recovering with it is fenced, not taken for a retry.
    assert_eq!(next.last_producer_epoch, -1);
    assert_eq!(
        init_transition(&next, false, TIMEOUT_MS, PRODUCER_ID, 3, None, NOW),
        Err(code::PRODUCER_FENCED)
    );
    // The input is untouched: a transition only computes.
    assert_eq!(meta, empty_at(3));
}

#[test]
fn init_recovery_bumps_once_and_a_retry_gets_the_same_pair() {
    let meta = empty_at(3);
    let next = init_next(init_transition(
        &meta,
        false,
        TIMEOUT_MS,
        PRODUCER_ID,
        3,
        None,
        NOW,
    ));
    assert_eq!((next.producer_epoch, next.last_producer_epoch), (4, 3));
    assert_eq!(
        init_transition(&next, false, TIMEOUT_MS, PRODUCER_ID, 3, None, NOW),
        Ok(InitStep::Answer(PRODUCER_ID, 4))
    );
    assert_eq!(
        init_transition(&next, false, TIMEOUT_MS, PRODUCER_ID, 2, None, NOW),
        Err(code::PRODUCER_FENCED)
    );
    assert_eq!(
        init_transition(&next, false, TIMEOUT_MS, PRODUCER_ID + 1, 4, None, NOW),
        Err(code::PRODUCER_FENCED)
    );
}

#[test]
fn init_answers_concurrent_transactions_while_a_transition_is_pending() {
    assert_eq!(
        init_transition(&empty_at(3), true, TIMEOUT_MS, -1, -1, None, NOW),
        Err(code::CONCURRENT_TRANSACTIONS)
    );
    let mut prepared = ongoing_at(3);
    prepared.status = TxnStatus::PrepareCommit;
    assert_eq!(
        init_new_producer(&prepared, None),
        Err(code::CONCURRENT_TRANSACTIONS)
    );
}

#[test]
fn init_aborts_an_ongoing_transaction_first() {
    assert_eq!(
        init_new_producer(&ongoing_at(3), None),
        Ok(InitStep::AbortFirst)
    );
    // A recovering producer with a stale epoch is fenced instead.
    assert_eq!(
        init_transition(&ongoing_at(3), false, TIMEOUT_MS, PRODUCER_ID, 2, None, NOW),
        Err(code::PRODUCER_FENCED)
    );
}

#[test]
fn init_at_the_last_usable_epoch_moves_to_a_new_producer_id() {
    let meta = empty_at(EPOCH_LAST_USABLE);
    assert_eq!(init_new_producer(&meta, None), Ok(InitStep::NeedProducerId));
    let next = init_next(init_new_producer(&meta, Some(2000)));
    assert_eq!(next.producer_id, 2000);
    assert_eq!(next.producer_epoch, 0);
    assert_eq!(next.previous_producer_id, PRODUCER_ID);

    // Recovering at the last epoch: the same move, and a retry naming the
    // old id gets the new pair.
    let next = init_next(init_transition(
        &meta,
        false,
        TIMEOUT_MS,
        PRODUCER_ID,
        EPOCH_LAST_USABLE,
        Some(2000),
        NOW,
    ));
    assert_eq!((next.producer_id, next.producer_epoch), (2000, 0));
    assert_eq!(
        init_transition(
            &next,
            false,
            TIMEOUT_MS,
            PRODUCER_ID,
            EPOCH_LAST_USABLE,
            None,
            NOW
        ),
        Ok(InitStep::Answer(2000, 0))
    );
}

#[test]
fn a_timeout_abort_at_the_last_usable_epoch_fences_with_short_max() {
    let meta = ongoing_at(EPOCH_LAST_USABLE);
    let fenced = fence_transition(&meta, false, 7, NOW).expect("fenced");
    // The markers carry Short.MAX_VALUE, which no producer ever holds.
    assert_eq!(fenced.status, TxnStatus::PrepareAbort);
    assert_eq!(fenced.producer_id, PRODUCER_ID);
    assert_eq!(fenced.producer_epoch, i16::MAX);
    assert_eq!(fenced.last_producer_epoch, -1);
    assert_eq!(
        fenced.partitions, meta.partitions,
        "the markers' partitions"
    );
    assert_eq!(fenced.completion, 7);
    assert_eq!(fenced.next_producer_id, -1);

    let done = complete_transition(&fenced, 7, NOW).expect("completed");
    assert_eq!(done.status, TxnStatus::CompleteAbort);
    assert_eq!(
        (done.producer_id, done.producer_epoch),
        (PRODUCER_ID, i16::MAX)
    );
    assert!(done.partitions.is_empty());
    assert_eq!(done.completion, 0);

    // The timed-out producer is fenced everywhere, and is never handed the
    // fence epoch: not by InitProducerId recovery, not by EndTxn (v4 or v5).
    let old = EPOCH_LAST_USABLE;
    assert_eq!(
        init_transition(&done, false, TIMEOUT_MS, PRODUCER_ID, old, None, NOW),
        Err(code::PRODUCER_FENCED)
    );
    for bump_epoch in [false, true] {
        assert_eq!(
            end_transition(
                &done,
                false,
                PRODUCER_ID,
                old,
                false,
                bump_epoch,
                None,
                1,
                NOW
            ),
            Err(code::PRODUCER_FENCED)
        );
    }
    assert_eq!(
        add_transition(&done, false, PRODUCER_ID, old, &[("data".into(), 0)], NOW),
        Err(code::PRODUCER_FENCED)
    );

    // A new producer moves the id to a new producer id at epoch 0.
    assert_eq!(init_new_producer(&done, None), Ok(InitStep::NeedProducerId));
    let next = init_next(init_new_producer(&done, Some(3000)));
    assert_eq!((next.producer_id, next.producer_epoch), (3000, 0));
    assert_eq!(next.previous_producer_id, PRODUCER_ID);
    assert_eq!(next.status, TxnStatus::Empty);
    // Even then the old producer naming its old id stays fenced.
    assert_eq!(
        init_transition(&next, false, TIMEOUT_MS, PRODUCER_ID, old, None, NOW),
        Err(code::PRODUCER_FENCED)
    );
}

#[test]
fn a_fence_never_overflows_the_epoch() {
    // A state read from disk may hold Short.MAX_VALUE while Ongoing.
    let fenced = fence_transition(&ongoing_at(i16::MAX), false, 1, NOW).expect("fenced");
    assert_eq!(fenced.producer_epoch, i16::MAX);
    let fenced = fence_transition(&ongoing_at(5), false, 1, NOW).expect("fenced");
    assert_eq!(fenced.producer_epoch, 6);
    assert_eq!(
        fence_transition(&ongoing_at(5), true, 1, NOW),
        Err(code::CONCURRENT_TRANSACTIONS)
    );
    assert_eq!(
        fence_transition(&empty_at(5), false, 1, NOW),
        Err(code::INVALID_TXN_STATE)
    );
}

#[test]
fn end_v5_bumps_the_epoch_and_a_retry_gets_the_bumped_pair() {
    let meta = ongoing_at(5);
    let next = end_next(end_transition(
        &meta,
        false,
        PRODUCER_ID,
        5,
        true,
        true,
        None,
        9,
        NOW,
    ));
    assert_eq!(next.status, TxnStatus::PrepareCommit);
    assert_eq!((next.producer_epoch, next.last_producer_epoch), (6, 5));
    assert_eq!(end_answer(&next), (PRODUCER_ID, 6));
    // A retry while the markers are being written.
    assert_eq!(
        end_transition(&next, false, PRODUCER_ID, 5, true, true, None, 10, NOW),
        Err(code::CONCURRENT_TRANSACTIONS)
    );
    let done = complete_transition(&next, 9, NOW).expect("completed");
    assert_eq!(
        end_transition(&done, false, PRODUCER_ID, 5, true, true, None, 10, NOW),
        Ok(EndStep::Answer(PRODUCER_ID, 6))
    );
    assert_eq!(
        end_transition(&done, false, PRODUCER_ID, 4, true, true, None, 10, NOW),
        Err(code::PRODUCER_FENCED)
    );
}

/// An end records the client's transaction version, which its markers
/// carry (KIP-1228): 2 from EndTxn v5 on, whose end bumps the epoch, and 0
/// below, as Kafka derives it from the EndTxn version; the completion
/// keeps it.
#[test]
fn an_end_records_the_transaction_version_its_markers_carry() {
    for (bump_epoch, version) in [(false, 0), (true, 2)] {
        let mut meta = ongoing_at(5);
        meta.client_transaction_version = 2 - version;
        let next = end_next(end_transition(
            &meta,
            false,
            PRODUCER_ID,
            5,
            true,
            bump_epoch,
            None,
            9,
            NOW,
        ));
        assert_eq!(next.client_transaction_version, version);
        let done = complete_transition(&next, 9, NOW).expect("completed");
        assert_eq!(done.client_transaction_version, version);
        assert_eq!(marker_transaction_version(version), version as i8);
    }
    // A damaged record's version stays on its side of version 2.
    assert_eq!(marker_transaction_version(-3), 0);
    assert_eq!(marker_transaction_version(300), i8::MAX);
}

#[test]
fn end_v5_at_the_last_usable_epoch_moves_to_a_new_producer_id() {
    let meta = ongoing_at(EPOCH_LAST_USABLE);
    assert_eq!(
        end_transition(
            &meta,
            false,
            PRODUCER_ID,
            EPOCH_LAST_USABLE,
            true,
            true,
            None,
            9,
            NOW
        ),
        Ok(EndStep::NeedProducerId)
    );
    let next = end_next(end_transition(
        &meta,
        false,
        PRODUCER_ID,
        EPOCH_LAST_USABLE,
        true,
        true,
        Some(4000),
        9,
        NOW,
    ));
    // The markers go out under the old id at Short.MAX_VALUE, above every
    // epoch the partitions saw; the producer continues as 4000/0.
    assert_eq!(next.producer_id, PRODUCER_ID);
    assert_eq!(next.producer_epoch, i16::MAX);
    assert_eq!(next.next_producer_id, 4000);
    assert_eq!(end_answer(&next), (4000, 0));

    let done = complete_transition(&next, 9, NOW).expect("completed");
    assert_eq!(done.status, TxnStatus::CompleteCommit);
    assert_eq!((done.producer_id, done.producer_epoch), (4000, 0));
    assert_eq!(done.previous_producer_id, PRODUCER_ID);
    assert_eq!(done.next_producer_id, -1);
    // The client retrying with the old pair gets the new one.
    assert_eq!(
        end_transition(
            &done,
            false,
            PRODUCER_ID,
            EPOCH_LAST_USABLE,
            true,
            true,
            None,
            10,
            NOW
        ),
        Ok(EndStep::Answer(4000, 0))
    );
    // Any other id is unknown.
    assert_eq!(
        end_transition(&done, false, 5, 0, true, true, None, 10, NOW),
        Err(code::INVALID_PRODUCER_ID_MAPPING)
    );
}

#[test]
fn end_v4_keeps_the_epoch_and_checks_the_state() {
    let meta = ongoing_at(5);
    let next = end_next(end_transition(
        &meta,
        false,
        PRODUCER_ID,
        5,
        false,
        false,
        None,
        3,
        NOW,
    ));
    assert_eq!(next.status, TxnStatus::PrepareAbort);
    assert_eq!(next.producer_epoch, 5);
    assert_eq!(next.completion, 3);
    assert_eq!(
        end_transition(
            &empty_at(5),
            false,
            PRODUCER_ID,
            5,
            true,
            false,
            None,
            3,
            NOW
        ),
        Err(code::INVALID_TXN_STATE)
    );
    // Kafka's order: a fenced producer hears so even while a transition
    // is pending; the current one hears CONCURRENT_TRANSACTIONS.
    assert_eq!(
        end_transition(&meta, true, PRODUCER_ID, 4, true, false, None, 3, NOW),
        Err(code::PRODUCER_FENCED)
    );
    assert_eq!(
        end_transition(&meta, true, PRODUCER_ID, 5, true, false, None, 3, NOW),
        Err(code::CONCURRENT_TRANSACTIONS)
    );
    let done = complete_transition(&next, 3, NOW).expect("completed");
    assert_eq!(
        end_transition(&done, false, PRODUCER_ID, 5, false, false, None, 4, NOW),
        Ok(EndStep::Answer(PRODUCER_ID, 5))
    );
    assert_eq!(
        end_transition(&done, false, PRODUCER_ID, 5, true, false, None, 4, NOW),
        Err(code::INVALID_TXN_STATE)
    );
}

#[test]
fn add_partitions_opens_and_extends_a_transaction() {
    let meta = empty_at(2);
    let partitions = vec![("data".to_string(), 0)];
    let next = add_transition(&meta, false, PRODUCER_ID, 2, &partitions, NOW)
        .expect("added")
        .expect("a change");
    assert_eq!(next.status, TxnStatus::Ongoing);
    assert_eq!(next.start_ms, NOW);
    assert!(next.partitions.contains(&("data".to_string(), 0)));
    // Already in: nothing to write.
    assert_eq!(
        add_transition(&next, false, PRODUCER_ID, 2, &partitions, NOW),
        Ok(None)
    );
    let more = vec![("data".to_string(), 1)];
    let extended = add_transition(&next, false, PRODUCER_ID, 2, &more, NOW + 1)
        .expect("added")
        .expect("a change");
    assert_eq!(extended.partitions.len(), 2);
    assert_eq!(extended.start_ms, NOW, "the transaction's start stays");

    assert_eq!(
        add_transition(&next, true, PRODUCER_ID, 2, &more, NOW),
        Err(code::CONCURRENT_TRANSACTIONS)
    );
    assert_eq!(
        add_transition(&next, true, PRODUCER_ID, 1, &more, NOW),
        Err(code::PRODUCER_FENCED)
    );
    assert_eq!(
        add_transition(&next, false, PRODUCER_ID + 1, 2, &more, NOW),
        Err(code::INVALID_PRODUCER_ID_MAPPING)
    );
    let mut prepared = next.clone();
    prepared.status = TxnStatus::PrepareAbort;
    assert_eq!(
        add_transition(&prepared, false, PRODUCER_ID, 2, &more, NOW),
        Err(code::CONCURRENT_TRANSACTIONS)
    );
}

#[test]
fn completion_belongs_to_its_token() {
    let fenced = fence_transition(&ongoing_at(1), false, 5, NOW).expect("fenced");
    assert_eq!(complete_transition(&fenced, 4, NOW), None);
    assert!(complete_transition(&fenced, 5, NOW).is_some());
    assert_eq!(complete_transition(&ongoing_at(1), 0, NOW), None);
}

/// Transaction version 2 (Kafka's EndTxn table): an abort with nothing added
/// — from Empty, CompleteCommit or CompleteAbort at the current epoch — bumps
/// the epoch and writes an abort over no partitions; a commit at the current
/// epoch of a completed transaction is not a retry and is refused; only the
/// epoch before the bump repeats a completed end.
#[test]
fn end_v5_aborts_nothing_with_a_bump_and_refuses_a_second_commit() {
    for status in [
        TxnStatus::Empty,
        TxnStatus::CompleteCommit,
        TxnStatus::CompleteAbort,
    ] {
        let mut meta = empty_at(5);
        meta.status = status;
        meta.last_producer_epoch = 4;
        meta.partitions = BTreeSet::from([("data".to_string(), 3)]);
        let next = end_next(end_transition(
            &meta,
            false,
            PRODUCER_ID,
            5,
            false,
            true,
            None,
            9,
            NOW,
        ));
        assert_eq!(next.status, TxnStatus::PrepareAbort, "from {status:?}");
        assert!(next.partitions.is_empty(), "from {status:?}");
        assert_eq!(next.start_ms, NOW);
        assert_eq!(end_answer(&next), (PRODUCER_ID, 6), "from {status:?}");
        let done = complete_transition(&next, 9, NOW).expect("completed");
        assert_eq!(done.status, TxnStatus::CompleteAbort);
    }
    let mut committed = empty_at(5);
    committed.status = TxnStatus::CompleteCommit;
    committed.last_producer_epoch = 4;
    assert_eq!(
        end_transition(&committed, false, PRODUCER_ID, 5, true, true, None, 9, NOW),
        Err(code::INVALID_TXN_STATE),
        "a commit at the current epoch is not a retry"
    );
    assert_eq!(
        end_transition(&committed, false, PRODUCER_ID, 4, true, true, None, 9, NOW),
        Ok(EndStep::Answer(PRODUCER_ID, 5)),
        "the retry of the commit"
    );
    assert_eq!(
        end_transition(&committed, false, PRODUCER_ID, 4, false, true, None, 9, NOW),
        Err(code::INVALID_TXN_STATE),
        "an abort retried against a commit"
    );
    // Version 1 (EndTxn below v5) keeps its table: a repeat of the same
    // end answers without a write, an abort of Empty is refused.
    assert_eq!(
        end_transition(&committed, false, PRODUCER_ID, 5, true, false, None, 9, NOW),
        Ok(EndStep::Answer(PRODUCER_ID, 5))
    );
    assert_eq!(
        end_transition(
            &empty_at(5),
            false,
            PRODUCER_ID,
            5,
            false,
            false,
            None,
            9,
            NOW
        ),
        Err(code::INVALID_TXN_STATE)
    );
}
