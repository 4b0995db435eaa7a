//! The transaction state machine: what each request does to an id's state,
//! with Kafka's error rules, and the marker writes that end a transaction.
//!
//! Every change is a transition: a pure function computes the next state
//! from the installed one (`init_transition`, `add_transition`,
//! `end_transition`, `fence_transition`, `complete_transition`), then
//! `transit` marks the id pending, appends the next state, waits until it is
//! durable and only then installs it. Memory therefore never runs ahead of
//! the log: a failed append leaves the old state installed, and a request
//! arriving while an append is in flight sees the last durable state (and
//! answers CONCURRENT_TRANSACTIONS where Kafka does).

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use sluice_engine::txn::TxnMarker;

use super::records::{self, TxnStatus, TxnValue};
use super::{now_ms, write_error_code, DescribedTxn, ListedTxn, TxnCoordinator, WriteError};
use crate::broker::{Broker, ControllerRequest, ShardResponse};
use crate::constants::{
    TXN_END_WAIT_MS, TXN_INIT_PASSES_MAX, TXN_MARKER_RETRY_MS, TXN_MARKER_TIMEOUT_MS,
    TXN_PARTITIONS_MAX,
};
use crate::errors::code;
use crate::groups::records::KeyedRecord;

/// The highest epoch handed out; at it, the next bump allocates a new
/// producer id (Kafka keeps `Short.MAX_VALUE` free for fencing).
pub(super) const EPOCH_LAST_USABLE: i16 = i16::MAX - 1;

/// The coordinator epoch written in markers: one broker, never re-elected.
const COORDINATOR_EPOCH: i32 = 0;

/// One transactional id's state.
#[derive(Clone, Debug, PartialEq)]
pub struct TxnMeta {
    pub id: String,
    /// Its `__transaction_state` partition.
    pub partition: i32,
    pub producer_id: i64,
    /// The id before the last change of producer id (epoch exhaustion).
    pub previous_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, for recognising a retried
    /// InitProducerId (-1 when unknown).
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub status: TxnStatus,
    pub partitions: BTreeSet<(String, i32)>,
    pub start_ms: i64,
    pub last_update_ms: i64,
    pub client_transaction_version: i16,
    /// The completion task that owns a Prepare* state (its token).
    pub completion: u64,
}

impl TxnMeta {
    pub fn from_value(id: String, partition: i32, value: TxnValue) -> TxnMeta {
        TxnMeta {
            id,
            partition,
            producer_id: value.producer_id,
            previous_producer_id: value.previous_producer_id,
            next_producer_id: value.next_producer_id,
            producer_epoch: value.producer_epoch,
            last_producer_epoch: -1,
            timeout_ms: value.timeout_ms,
            status: value.status,
            partitions: value
                .partitions
                .into_iter()
                .flat_map(|(topic, ids)| ids.into_iter().map(move |id| (topic.clone(), id)))
                .collect(),
            start_ms: value.start_ms,
            last_update_ms: value.last_update_ms,
            client_transaction_version: value.client_transaction_version,
            completion: 0,
        }
    }

    pub fn to_value(&self) -> TxnValue {
        let mut partitions: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in &self.partitions {
            partitions.entry(topic).or_default().push(*partition);
        }
        TxnValue {
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            timeout_ms: self.timeout_ms,
            status: self.status,
            partitions: partitions
                .into_iter()
                .map(|(topic, ids)| (topic.to_string(), ids))
                .collect(),
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
            client_transaction_version: self.client_transaction_version,
        }
    }
}

/// What the end of a transaction must write, taken from its state when it
/// was decided.
struct Ending {
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    partitions: Vec<(String, i32)>,
    /// The client's transaction version, which its markers carry: from 2
    /// on, `producer_epoch` is the one bumped at the end, and partitions
    /// refuse a marker at the epoch of the transaction (KIP-1228).
    transaction_version: i8,
}

/// A client's transaction version as a marker carries it (an int8 on the
/// wire, an int16 in the transaction log). A version past int8 from a
/// damaged record stays above every known one.
pub(super) fn marker_transaction_version(client_transaction_version: i16) -> i8 {
    i8::try_from(client_transaction_version.max(0)).unwrap_or(i8::MAX)
}

/// A transition in flight: its state is appended but not yet durable, so
/// not installed.
#[derive(Debug)]
pub(super) struct Pending {
    pub partition: i32,
    /// Tells this transition from a later one of the same id.
    pub token: u64,
}

/// A transition between its append and its install.
pub(super) struct Transit {
    id: String,
    partition: i32,
    token: u64,
    /// The offset after the appended record.
    end: i64,
    from: Option<TxnMeta>,
    next: Option<TxnMeta>,
}

/// Why a transition was not installed.
#[derive(Debug)]
pub(super) enum TransitError {
    /// Another transition of the id is pending, or the installed state is
    /// no longer the one the transition was computed from.
    Concurrent,
    /// The append or its sync failed; the old state stays installed.
    Write(WriteError),
}

impl TransitError {
    /// The error the client gets.
    pub(super) fn code(&self) -> i16 {
        match self {
            TransitError::Concurrent => code::CONCURRENT_TRANSACTIONS,
            TransitError::Write(error) => write_error_code(error),
        }
    }
}

impl std::fmt::Display for TransitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransitError::Concurrent => write!(f, "another transition of the id is in flight"),
            TransitError::Write(error) => write!(f, "{error}"),
        }
    }
}

/// Whether an Ongoing transaction passed its timeout.
fn timed_out(meta: &TxnMeta, now: i64) -> bool {
    meta.status == TxnStatus::Ongoing
        && meta.start_ms >= 0
        && now.saturating_sub(meta.start_ms) > i64::from(meta.timeout_ms)
}

/// What InitProducerId does with an existing id.
#[derive(Debug, PartialEq)]
pub(super) enum InitStep {
    /// Answer with this producer id and epoch, writing nothing (a retry of
    /// a bump that already happened).
    Answer(i64, i16),
    /// A transaction is Ongoing: abort it first, fencing its producer.
    AbortFirst,
    /// The epoch is exhausted: a new producer id must be allocated first.
    NeedProducerId,
    /// Install this state and answer with its producer id and epoch.
    Next(TxnMeta),
}

/// What EndTxn does.
#[derive(Debug, PartialEq)]
pub(super) enum EndStep {
    /// Answer with this producer id and epoch, writing nothing (a retry of
    /// an end that already happened).
    Answer(i64, i16),
    /// Transaction version 2 at an exhausted epoch: a new producer id must
    /// be allocated first.
    NeedProducerId,
    /// Install this Prepare* state, then complete the transaction.
    Next(TxnMeta),
}

/// The state of a new transactional id.
pub(super) fn new_meta(
    id: &str,
    partition: i32,
    producer_id: i64,
    timeout_ms: i32,
    now: i64,
) -> TxnMeta {
    TxnMeta {
        id: id.to_string(),
        partition,
        producer_id,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch: 0,
        last_producer_epoch: -1,
        timeout_ms,
        status: TxnStatus::Empty,
        partitions: BTreeSet::new(),
        start_ms: -1,
        last_update_ms: now,
        client_transaction_version: 0,
        completion: 0,
    }
}

/// InitProducerId on an existing id (Kafka's order of checks: a pending
/// transition, the KIP-360 producer id, the state, then the epoch).
/// `new_producer_id` is the id allocated after an earlier
/// `NeedProducerId`.
pub(super) fn init_transition(
    meta: &TxnMeta,
    pending: bool,
    timeout_ms: i32,
    expected_id: i64,
    expected_epoch: i16,
    new_producer_id: Option<i64>,
    now: i64,
) -> Result<InitStep, i16> {
    if pending {
        return Err(code::CONCURRENT_TRANSACTIONS);
    }
    // KIP-360: a client recovering names the id and epoch it had.
    let recovering = expected_id >= 0 || expected_epoch >= 0;
    if recovering {
        // The current producer id, or the one before a move to a new id
        // (the client may not have seen that answer).
        let known = expected_id == meta.producer_id
            || (expected_id >= 0
                && expected_id == meta.previous_producer_id
                && expected_epoch >= EPOCH_LAST_USABLE);
        if !known {
            return Err(code::PRODUCER_FENCED);
        }
    }
    let current = expected_id == meta.producer_id && expected_epoch == meta.producer_epoch;
    match meta.status {
        TxnStatus::PrepareCommit
        | TxnStatus::PrepareAbort
        | TxnStatus::PrepareEpochFence
        | TxnStatus::Dead => return Err(code::CONCURRENT_TRANSACTIONS),
        TxnStatus::Ongoing if recovering && !current => return Err(code::PRODUCER_FENCED),
        TxnStatus::Ongoing => return Ok(InitStep::AbortFirst),
        TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => {}
    }
    if recovering && !current {
        // A retry of a bump that happened: the epoch before it was
        // recorded only when the bump itself was a recovery (a new
        // producer's InitProducerId clears it, fencing the old one). The
        // fence epoch (Short.MAX_VALUE) is never handed out.
        let retried = meta.last_producer_epoch >= 0
            && expected_epoch == meta.last_producer_epoch
            && meta.producer_epoch <= EPOCH_LAST_USABLE;
        if retried {
            return Ok(InitStep::Answer(meta.producer_id, meta.producer_epoch));
        }
        return Err(code::PRODUCER_FENCED);
    }
    let mut next = meta.clone();
    if meta.producer_epoch >= EPOCH_LAST_USABLE {
        let Some(new_id) = new_producer_id else {
            return Ok(InitStep::NeedProducerId);
        };
        next.previous_producer_id = meta.producer_id;
        next.producer_id = new_id;
        next.producer_epoch = 0;
        next.last_producer_epoch = if recovering { meta.producer_epoch } else { -1 };
    } else {
        next.producer_epoch = meta.producer_epoch + 1;
        next.last_producer_epoch = if recovering { meta.producer_epoch } else { -1 };
    }
    next.next_producer_id = -1;
    next.timeout_ms = timeout_ms;
    next.status = TxnStatus::Empty;
    next.partitions.clear();
    next.start_ms = -1;
    next.last_update_ms = now;
    next.completion = 0;
    Ok(InitStep::Next(next))
}

/// The checks every request of a running producer passes: the producer id
/// is the id's current one, the epoch is current.
fn check_producer(meta: &TxnMeta, producer_id: i64, producer_epoch: i16) -> Result<(), i16> {
    if meta.producer_id != producer_id {
        return Err(code::INVALID_PRODUCER_ID_MAPPING);
    }
    if meta.producer_epoch != producer_epoch {
        return Err(code::PRODUCER_FENCED);
    }
    Ok(())
}

/// AddPartitionsToTxn / AddOffsetsToTxn. `None`: the partitions are already
/// in the Ongoing transaction, nothing to write.
pub(super) fn add_transition(
    meta: &TxnMeta,
    pending: bool,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
    now: i64,
) -> Result<Option<TxnMeta>, i16> {
    check_producer(meta, producer_id, producer_epoch)?;
    if pending {
        return Err(code::CONCURRENT_TRANSACTIONS);
    }
    match meta.status {
        TxnStatus::PrepareCommit
        | TxnStatus::PrepareAbort
        | TxnStatus::PrepareEpochFence
        | TxnStatus::Dead => return Err(code::CONCURRENT_TRANSACTIONS),
        TxnStatus::Ongoing if partitions.iter().all(|key| meta.partitions.contains(key)) => {
            return Ok(None);
        }
        _ => {}
    }
    let ongoing = meta.status == TxnStatus::Ongoing;
    let fresh = partitions
        .iter()
        .filter(|key| !ongoing || !meta.partitions.contains(*key))
        .collect::<BTreeSet<_>>()
        .len();
    let kept = if ongoing { meta.partitions.len() } else { 0 };
    if kept + fresh > TXN_PARTITIONS_MAX {
        return Err(code::INVALID_REQUEST);
    }
    let mut next = meta.clone();
    if !ongoing {
        next.partitions.clear();
        next.start_ms = now;
        next.status = TxnStatus::Ongoing;
    }
    next.partitions.extend(partitions.iter().cloned());
    next.last_update_ms = now;
    next.completion = 0;
    Ok(Some(next))
}

/// EndTxn. `bump_epoch` is transaction version 2 (EndTxn v5): the epoch is
/// bumped at every end, and at an exhausted epoch the markers carry
/// Short.MAX_VALUE and the producer continues with a new producer id
/// (`new_producer_id`, allocated after an earlier `NeedProducerId`).
/// `completion` is the token of the task that will write the markers.
#[allow(clippy::too_many_arguments)]
pub(super) fn end_transition(
    meta: &TxnMeta,
    pending: bool,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    bump_epoch: bool,
    new_producer_id: Option<i64>,
    completion: u64,
    now: i64,
) -> Result<EndStep, i16> {
    let completed = matches!(
        meta.status,
        TxnStatus::CompleteCommit | TxnStatus::CompleteAbort
    );
    let same_id = producer_id == meta.producer_id;
    // A retry of a version 2 end that moved the producer to a new id: the
    // client still names the old id at the last usable epoch.
    let retry_new_id = bump_epoch
        && completed
        && !same_id
        && producer_id == meta.previous_producer_id
        && producer_epoch >= EPOCH_LAST_USABLE
        && meta.producer_epoch == 0;
    if !same_id && !retry_new_id {
        return Err(code::INVALID_PRODUCER_ID_MAPPING);
    }
    // A retry of a version 2 end carries the epoch before its bump.
    let retry_bump = bump_epoch
        && same_id
        && matches!(
            meta.status,
            TxnStatus::CompleteCommit
                | TxnStatus::CompleteAbort
                | TxnStatus::PrepareCommit
                | TxnStatus::PrepareAbort
        )
        && meta.last_producer_epoch >= 0
        && producer_epoch == meta.last_producer_epoch;
    if same_id && producer_epoch != meta.producer_epoch && !retry_bump {
        return Err(code::PRODUCER_FENCED);
    }
    if pending {
        return Err(code::CONCURRENT_TRANSACTIONS);
    }
    let answer = Ok(EndStep::Answer(meta.producer_id, meta.producer_epoch));
    // Transaction version 2 answers a completed end only to its retry (the
    // epoch before the bump); version 1 has no retry epoch.
    let repeat = !bump_epoch || retry_bump || retry_new_id;
    // Transaction version 2 lets a producer abort with nothing added (it
    // may have produced before learning of an error): the epoch is bumped
    // and an abort over no partitions is written.
    let mut abort_nothing = false;
    match meta.status {
        TxnStatus::Ongoing if !retry_bump => {}
        TxnStatus::CompleteCommit if commit && repeat => return answer,
        TxnStatus::CompleteAbort if !commit && repeat => return answer,
        TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort
            if bump_epoch && !commit && !retry_bump && !retry_new_id =>
        {
            abort_nothing = true;
        }
        TxnStatus::PrepareCommit if commit => return Err(code::CONCURRENT_TRANSACTIONS),
        TxnStatus::PrepareAbort if !commit => return Err(code::CONCURRENT_TRANSACTIONS),
        TxnStatus::PrepareEpochFence | TxnStatus::Dead => {
            return Err(code::CONCURRENT_TRANSACTIONS);
        }
        _ => return Err(code::INVALID_TXN_STATE),
    }
    let mut next = meta.clone();
    if abort_nothing {
        next.partitions.clear();
        next.start_ms = now;
    }
    // The version this end's markers carry, as Kafka derives it from the
    // EndTxn version: v5 and later are a client of transaction version 2,
    // every earlier one of version 0.
    next.client_transaction_version = if bump_epoch {
        i16::from(TxnMarker::EPOCH_BUMP_TRANSACTION_VERSION)
    } else {
        0
    };
    if bump_epoch {
        if meta.producer_epoch >= EPOCH_LAST_USABLE {
            let Some(new_id) = new_producer_id else {
                return Ok(EndStep::NeedProducerId);
            };
            next.next_producer_id = new_id;
        }
        // At most Short.MAX_VALUE: the epoch handed out is at most
        // EPOCH_LAST_USABLE, and at it the producer moves to a new id.
        next.last_producer_epoch = meta.producer_epoch;
        next.producer_epoch = meta.producer_epoch.saturating_add(1);
    }
    next.status = if commit {
        TxnStatus::PrepareCommit
    } else {
        TxnStatus::PrepareAbort
    };
    next.last_update_ms = now;
    next.completion = completion;
    Ok(EndStep::Next(next))
}

/// The producer id and epoch a client continues with once `next` (an
/// `end_transition` result) is installed.
pub(super) fn end_answer(next: &TxnMeta) -> (i64, i16) {
    if next.next_producer_id >= 0 {
        (next.next_producer_id, 0)
    } else {
        (next.producer_id, next.producer_epoch)
    }
}

/// Aborts an Ongoing transaction on the coordinator's own initiative (its
/// timeout passed, or a new producer took the id): the epoch is bumped so
/// the running producer is fenced, and the epoch before it is forgotten so
/// that producer cannot pass for a retry. At the last usable epoch the
/// bump reaches Short.MAX_VALUE, which is never handed out: the next
/// InitProducerId moves the id to a new producer id.
pub(super) fn fence_transition(
    meta: &TxnMeta,
    pending: bool,
    completion: u64,
    now: i64,
) -> Result<TxnMeta, i16> {
    if pending {
        return Err(code::CONCURRENT_TRANSACTIONS);
    }
    if meta.status != TxnStatus::Ongoing {
        return Err(code::INVALID_TXN_STATE);
    }
    let mut next = meta.clone();
    // An epoch read from disk may already be Short.MAX_VALUE; it then
    // stays there rather than wrapping.
    next.producer_epoch = meta.producer_epoch.saturating_add(1);
    next.last_producer_epoch = -1;
    next.status = TxnStatus::PrepareAbort;
    next.last_update_ms = now;
    next.completion = completion;
    Ok(next)
}

/// Records a decided transaction's completion once its markers are
/// written. `None` when the state is not the Prepare* owned by
/// `completion`.
pub(super) fn complete_transition(meta: &TxnMeta, completion: u64, now: i64) -> Option<TxnMeta> {
    if meta.completion != completion {
        return None;
    }
    let status = match meta.status {
        TxnStatus::PrepareCommit => TxnStatus::CompleteCommit,
        TxnStatus::PrepareAbort => TxnStatus::CompleteAbort,
        _ => return None,
    };
    let mut next = meta.clone();
    next.status = status;
    if meta.next_producer_id >= 0 {
        // Transaction version 2 moved to a new producer id.
        next.previous_producer_id = meta.producer_id;
        next.producer_id = meta.next_producer_id;
        next.next_producer_id = -1;
        next.producer_epoch = 0;
        next.last_producer_epoch = -1;
    }
    next.partitions.clear();
    next.last_update_ms = now;
    next.completion = 0;
    Some(next)
}

impl TxnCoordinator {
    /// Allocates a producer id from the controller.
    async fn allocate_producer_id(&self, broker: &Rc<Broker>) -> Result<i64, i16> {
        match broker
            .controller_call(ControllerRequest::AllocateProducerId)
            .await
        {
            Some(ShardResponse::ProducerId(id)) if id >= 0 => Ok(id),
            _ => Err(code::COORDINATOR_NOT_AVAILABLE),
        }
    }

    /// The installed state of an id and whether a transition is pending.
    fn installed(&self, transactional_id: &str) -> (Option<TxnMeta>, bool) {
        (
            self.txns.borrow().get(transactional_id).cloned(),
            self.pending.borrow().contains_key(transactional_id),
        )
    }

    /// InitProducerId with a transactional id. Returns (error, id, epoch).
    pub(super) async fn init_producer_id(
        &self,
        broker: &Rc<Broker>,
        transactional_id: &str,
        timeout_ms: i32,
        expected_id: i64,
        expected_epoch: i16,
    ) -> (i16, i64, i16) {
        let failed = |error_code| (error_code, -1, -1);
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return failed(code::INVALID_TRANSACTION_TIMEOUT);
        }
        // A fresh id may need a producer id (an await), an Ongoing
        // transaction must be aborted first (several awaits): each pass
        // re-reads the state, and every pass but the last makes progress.
        let mut allocated: Option<i64> = None;
        for _ in 0..TXN_INIT_PASSES_MAX {
            let partition = match self.check_partition(broker, transactional_id) {
                Ok(partition) => partition,
                Err(error_code) => return failed(error_code),
            };
            if let Err(error_code) = self
                .wait_for_room(broker, transactional_id, partition)
                .await
            {
                return failed(error_code);
            }
            let (installed, pending) = self.installed(transactional_id);
            if pending {
                return failed(code::CONCURRENT_TRANSACTIONS);
            }
            let Some(meta) = installed else {
                let producer_id = match allocated.take() {
                    Some(id) => id,
                    None => match self.allocate_producer_id(broker).await {
                        Ok(id) => id,
                        Err(error_code) => return failed(error_code),
                    },
                };
                let next = new_meta(
                    transactional_id,
                    partition,
                    producer_id,
                    timeout_ms,
                    now_ms(),
                );
                match self.transit(broker, None, Some(next)).await {
                    Ok(()) => return (code::NONE, producer_id, 0),
                    Err(TransitError::Concurrent) => {
                        // Another request created the id meanwhile; the
                        // allocated id is used in the next pass if needed.
                        allocated = Some(producer_id);
                        continue;
                    }
                    Err(error) => return failed(error.code()),
                }
            };
            let step = match init_transition(
                &meta,
                false,
                timeout_ms,
                expected_id,
                expected_epoch,
                allocated,
                now_ms(),
            ) {
                Ok(step) => step,
                Err(error_code) => return failed(error_code),
            };
            match step {
                InitStep::Answer(producer_id, producer_epoch) => {
                    return (code::NONE, producer_id, producer_epoch)
                }
                InitStep::NeedProducerId => match self.allocate_producer_id(broker).await {
                    Ok(id) => allocated = Some(id),
                    Err(error_code) => return failed(error_code),
                },
                InitStep::AbortFirst => {
                    // Fence the running producer and abort its transaction,
                    // then bump again for the new one (Kafka's order).
                    let token = self.token();
                    let next = match fence_transition(&meta, false, token, now_ms()) {
                        Ok(next) => next,
                        Err(error_code) => return failed(error_code),
                    };
                    match self.transit(broker, Some(meta), Some(next)).await {
                        Ok(()) => self.run_completion(broker, transactional_id, token).await,
                        Err(TransitError::Concurrent) => {}
                        Err(error) => return failed(error.code()),
                    }
                }
                InitStep::Next(next) => {
                    let answer = (code::NONE, next.producer_id, next.producer_epoch);
                    match self.transit(broker, Some(meta), Some(next)).await {
                        Ok(()) => return answer,
                        Err(TransitError::Concurrent) => {}
                        Err(error) => return failed(error.code()),
                    }
                }
            }
        }
        failed(code::CONCURRENT_TRANSACTIONS)
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn, or (`verify_only`) the KIP-890
    /// check that the partitions are already in the transaction.
    pub(super) async fn add_partitions(
        &self,
        broker: &Rc<Broker>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
        verify_only: bool,
    ) -> Result<Vec<i16>, i16> {
        let partition = self.check_partition(broker, transactional_id)?;
        if verify_only {
            // Answered from the installed (durable) state: a partition
            // whose addition is still being written is not in yet.
            let txns = self.txns.borrow();
            let meta = txns
                .get(transactional_id)
                .ok_or(code::INVALID_PRODUCER_ID_MAPPING)?;
            check_producer(meta, producer_id, producer_epoch)?;
            // As Kafka: a decided transaction is being completed, so the
            // batch is a late retry or early for the next transaction; the
            // producer retries (a partition addition still being written
            // is answered from the durable state instead, where Kafka
            // answers CONCURRENT_TRANSACTIONS, which costs a retry).
            if matches!(
                meta.status,
                TxnStatus::PrepareCommit | TxnStatus::PrepareAbort
            ) {
                return Err(code::CONCURRENT_TRANSACTIONS);
            }
            let ongoing = meta.status == TxnStatus::Ongoing;
            return Ok(partitions
                .iter()
                .map(|key| {
                    if ongoing && meta.partitions.contains(key) {
                        code::NONE
                    } else {
                        code::INVALID_TXN_STATE
                    }
                })
                .collect());
        }
        self.wait_for_room(broker, transactional_id, partition)
            .await?;
        let (installed, pending) = self.installed(transactional_id);
        let meta = installed.ok_or(code::INVALID_PRODUCER_ID_MAPPING)?;
        let next = add_transition(
            &meta,
            pending,
            producer_id,
            producer_epoch,
            &partitions,
            now_ms(),
        )?;
        if let Some(next) = next {
            self.transit(broker, Some(meta), Some(next))
                .await
                .map_err(|error| error.code())?;
        }
        Ok(vec![code::NONE; partitions.len()])
    }

    /// Runs the completion of a decided transaction, waiting for it at most
    /// `TXN_END_WAIT_MS` (it continues in the background after that).
    async fn run_completion(&self, broker: &Rc<Broker>, transactional_id: &str, token: u64) {
        let weak = Rc::downgrade(broker);
        let id = transactional_id.to_string();
        let handle = glommio::spawn_local(async move {
            if let Some(broker) = weak.upgrade() {
                broker.txns.complete(&broker, &id, token).await;
            }
        })
        .detach();
        let _ = glommio::timer::timeout(Duration::from_millis(TXN_END_WAIT_MS), async {
            handle.await;
            Ok(())
        })
        .await;
    }

    /// EndTxn. Returns (error, producer id, epoch); the id and epoch are
    /// the ones the producer must use next (transaction version 2).
    pub(super) async fn end_txn(
        &self,
        broker: &Rc<Broker>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        bump_epoch: bool,
    ) -> (i16, i64, i16) {
        let failed = |error_code| (error_code, -1, -1);
        let partition = match self.check_partition(broker, transactional_id) {
            Ok(partition) => partition,
            Err(error_code) => return failed(error_code),
        };
        if let Err(error_code) = self
            .wait_for_room(broker, transactional_id, partition)
            .await
        {
            return failed(error_code);
        }
        let mut allocated: Option<i64> = None;
        // At most two passes: the second has the producer id the first
        // found missing.
        for _ in 0..2 {
            let (installed, pending) = self.installed(transactional_id);
            let Some(meta) = installed else {
                return failed(code::INVALID_PRODUCER_ID_MAPPING);
            };
            let token = self.token();
            let step = end_transition(
                &meta,
                pending,
                producer_id,
                producer_epoch,
                commit,
                bump_epoch,
                allocated,
                token,
                now_ms(),
            );
            match step {
                Err(error_code) => return failed(error_code),
                Ok(EndStep::Answer(producer_id, producer_epoch)) => {
                    return (code::NONE, producer_id, producer_epoch)
                }
                Ok(EndStep::NeedProducerId) => match self.allocate_producer_id(broker).await {
                    Ok(id) => allocated = Some(id),
                    Err(error_code) => return failed(error_code),
                },
                Ok(EndStep::Next(next)) => {
                    let (next_id, next_epoch) = end_answer(&next);
                    if let Err(error) = self.transit(broker, Some(meta), Some(next)).await {
                        return failed(error.code());
                    }
                    self.run_completion(broker, transactional_id, token).await;
                    return (code::NONE, next_id, next_epoch);
                }
            }
        }
        failed(code::CONCURRENT_TRANSACTIONS)
    }

    /// Writes the markers of a decided transaction and records its
    /// completion. Retries until done, the shard stops, or the id's state
    /// moved on (another completion owns it).
    pub(super) async fn complete(&self, broker: &Rc<Broker>, transactional_id: &str, token: u64) {
        let ending = {
            let txns = self.txns.borrow();
            let Some(meta) = txns.get(transactional_id) else {
                return;
            };
            if meta.completion != token {
                return;
            }
            let commit = match meta.status {
                TxnStatus::PrepareCommit => true,
                TxnStatus::PrepareAbort => false,
                _ => return,
            };
            Ending {
                producer_id: meta.producer_id,
                producer_epoch: meta.producer_epoch,
                commit,
                partitions: meta.partitions.iter().cloned().collect(),
                transaction_version: marker_transaction_version(meta.client_transaction_version),
            }
        };
        let owned = || {
            self.txns
                .borrow()
                .get(transactional_id)
                .is_some_and(|meta| meta.completion == token)
        };
        loop {
            if broker.shutting_down.get() {
                return;
            }
            if write_markers(broker, &ending).await {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(TXN_MARKER_RETRY_MS)).await;
            if !owned() {
                return;
            }
        }
        // Markers are durable; record the completion (a crash before this
        // rewrites the markers on load, which partitions treat as no-ops).
        // A failed write leaves Prepare* installed and is retried: the
        // state must not claim a completion the log does not hold.
        loop {
            if broker.shutting_down.get() {
                return;
            }
            let Some(meta) = self.txns.borrow().get(transactional_id).cloned() else {
                return;
            };
            let Some(next) = complete_transition(&meta, token, now_ms()) else {
                return;
            };
            match self.transit(broker, Some(meta), Some(next)).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(id = %transactional_id, %error, "recording a completed transaction failed; retrying");
                }
            }
            glommio::timer::sleep(Duration::from_millis(TXN_MARKER_RETRY_MS)).await;
            if !owned() {
                return;
            }
        }
    }

    /// Aborts transactions Ongoing longer than their timeout, fencing their
    /// producer.
    pub(super) async fn abort_timed_out(&self, broker: &Rc<Broker>) {
        let expired: Vec<(String, i32)> = {
            let now = now_ms();
            self.txns
                .borrow()
                .values()
                .filter(|meta| timed_out(meta, now))
                .map(|meta| (meta.id.clone(), meta.partition))
                .collect()
        };
        for (id, partition) in expired {
            // Refused: the next check finds the id again.
            if self.wait_for_room(broker, &id, partition).await.is_err() {
                continue;
            }
            let (installed, pending) = self.installed(&id);
            let Some(meta) = installed else {
                continue;
            };
            // Kafka skips an id with a transition in flight; the next
            // check finds it again if it is still Ongoing.
            if pending || !timed_out(&meta, now_ms()) {
                continue;
            }
            let token = self.token();
            let Ok(next) = fence_transition(&meta, pending, token, now_ms()) else {
                continue;
            };
            tracing::info!(id = %id, "aborting a transaction that passed its timeout");
            if let Err(error) = self.transit(broker, Some(meta), Some(next)).await {
                tracing::warn!(id = %id, %error, "recording a timed-out abort failed");
                continue;
            }
            let weak = Rc::downgrade(broker);
            super::spawn_detached(async move {
                if let Some(broker) = weak.upgrade() {
                    broker.txns.complete(&broker, &id, token).await;
                }
            });
        }
    }

    /// Removes ids with no transaction running that were idle longer than
    /// `transactional.id.expiration.ms` (a tombstone, so a restart forgets
    /// them too). The tombstones are appended together and waited for
    /// together, each id pending meanwhile.
    pub(super) async fn expire_ids(&self, broker: &Rc<Broker>) {
        let now = now_ms();
        let expiration = self.config.id_expiration_ms;
        let idle: Vec<TxnMeta> = self
            .txns
            .borrow()
            .values()
            .filter(|meta| {
                matches!(
                    meta.status,
                    TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort
                ) && now.saturating_sub(meta.last_update_ms) > expiration
            })
            .cloned()
            .collect();
        let mut started = Vec::new();
        for meta in idle {
            let id = meta.id.clone();
            match self.begin_transit(broker, &id, meta.partition, Some(meta), None) {
                Ok(transit) => started.push(transit),
                Err(TransitError::Concurrent) => {}
                Err(error) => {
                    tracing::warn!(id = %id, %error, "expiring a transactional id failed")
                }
            }
        }
        for transit in started {
            let id = transit.id.clone();
            match self.finish_transit(broker, transit).await {
                Ok(()) => tracing::info!(id = %id, "transactional id expired"),
                Err(error) => {
                    tracing::warn!(id = %id, %error, "expiring a transactional id failed")
                }
            }
        }
    }

    /// Makes `next` the installed state of its id (`None`: removes it), once
    /// durable, if the installed state is still `from`.
    pub(super) async fn transit(
        &self,
        broker: &Broker,
        from: Option<TxnMeta>,
        next: Option<TxnMeta>,
    ) -> Result<(), TransitError> {
        let (id, partition) = match (&next, &from) {
            (Some(meta), _) | (None, Some(meta)) => (meta.id.clone(), meta.partition),
            (None, None) => return Ok(()),
        };
        let transit = self.begin_transit(broker, &id, partition, from, next)?;
        self.finish_transit(broker, transit).await
    }

    /// The first half of a transition, without an await: checks that no
    /// other transition is pending and that `from` is installed, appends
    /// `next`, and marks the id pending.
    fn begin_transit(
        &self,
        broker: &Broker,
        transactional_id: &str,
        partition: i32,
        from: Option<TxnMeta>,
        next: Option<TxnMeta>,
    ) -> Result<Transit, TransitError> {
        if self.pending.borrow().contains_key(transactional_id)
            || self.txns.borrow().get(transactional_id) != from.as_ref()
        {
            return Err(TransitError::Concurrent);
        }
        let record = KeyedRecord {
            key: records::encode_key(transactional_id),
            value: next
                .as_ref()
                .map(|meta| records::encode_value(&meta.to_value())),
        };
        let end = self
            .append_now(broker, partition, &[record])
            .map_err(TransitError::Write)?;
        let token = self.token();
        self.pending
            .borrow_mut()
            .insert(transactional_id.to_string(), Pending { partition, token });
        Ok(Transit {
            id: transactional_id.to_string(),
            partition,
            token,
            end,
            from,
            next,
        })
    }

    /// The second half: waits until the appended state is durable, clears
    /// the pending mark, and installs the state. On failure the old state
    /// stays installed.
    async fn finish_transit(&self, broker: &Broker, transit: Transit) -> Result<(), TransitError> {
        let written = self
            .wait_written(broker, transit.partition, transit.end)
            .await;
        let ours = self
            .pending
            .borrow()
            .get(&transit.id)
            .is_some_and(|pending| pending.token == transit.token);
        if ours {
            self.pending.borrow_mut().remove(&transit.id);
        }
        written.map_err(TransitError::Write)?;
        // The partition was unloaded (and maybe loaded again) meanwhile:
        // this shard no longer decides for the id.
        if !ours {
            return Err(TransitError::Write(WriteError::NotCoordinator));
        }
        let mut txns = self.txns.borrow_mut();
        if txns.get(&transit.id) != transit.from.as_ref() {
            return Err(TransitError::Write(WriteError::NotCoordinator));
        }
        match transit.next {
            Some(next) => {
                txns.insert(transit.id, next);
            }
            None => {
                txns.remove(&transit.id);
            }
        }
        Ok(())
    }

    /// DescribeTransactions for ids of this shard.
    pub(super) fn describe(&self, broker: &Broker, ids: Vec<String>) -> Vec<DescribedTxn> {
        ids.into_iter()
            .map(|id| {
                let mut described = DescribedTxn {
                    transactional_id: id.clone(),
                    error_code: code::NONE,
                    state: "",
                    timeout_ms: 0,
                    start_ms: -1,
                    producer_id: -1,
                    producer_epoch: -1,
                    partitions: Vec::new(),
                };
                if let Err(error_code) = self.check_partition(broker, &id) {
                    described.error_code = error_code;
                    return described;
                }
                match self.txns.borrow().get(&id) {
                    Some(meta) => {
                        described.state = meta.status.name();
                        described.timeout_ms = meta.timeout_ms;
                        described.start_ms = meta.start_ms;
                        described.producer_id = meta.producer_id;
                        described.producer_epoch = meta.producer_epoch;
                        described.partitions = meta.to_value().partitions;
                    }
                    None => described.error_code = code::TRANSACTIONAL_ID_NOT_FOUND,
                }
                described
            })
            .collect()
    }

    /// ListTransactions for this shard.
    pub(super) fn list(
        &self,
        states: &[TxnStatus],
        producer_ids: &[i64],
        min_duration_ms: i64,
    ) -> Result<Vec<ListedTxn>, i16> {
        if self
            .partitions
            .borrow()
            .values()
            .any(|load| *load == super::Load::Loading)
        {
            return Err(code::COORDINATOR_LOAD_IN_PROGRESS);
        }
        let now = now_ms();
        let mut listed: Vec<ListedTxn> = self
            .txns
            .borrow()
            .values()
            .filter(|meta| states.is_empty() || states.contains(&meta.status))
            .filter(|meta| producer_ids.is_empty() || producer_ids.contains(&meta.producer_id))
            .filter(|meta| {
                // KIP-994: only transactions running at least this long.
                min_duration_ms < 0
                    || (meta.status == TxnStatus::Ongoing
                        && meta.start_ms >= 0
                        && now.saturating_sub(meta.start_ms) >= min_duration_ms)
            })
            .map(|meta| ListedTxn {
                transactional_id: meta.id.clone(),
                producer_id: meta.producer_id,
                state: meta.status.name(),
            })
            .collect();
        listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(listed)
    }
}

/// Writes a transaction's markers to every partition (each partition's
/// leader appends them, makes them durable and replicated, and tells its
/// group coordinator when it is a `__consumer_offsets` partition). True
/// when every partition has its
/// marker (or no longer exists: Kafka skips deleted partitions).
async fn write_markers(broker: &Rc<Broker>, ending: &Ending) -> bool {
    let marker = TxnMarker {
        producer_id: ending.producer_id,
        producer_epoch: ending.producer_epoch,
        commit: ending.commit,
        coordinator_epoch: COORDINATOR_EPOCH,
        transaction_version: ending.transaction_version,
    };
    let markers: Vec<(String, i32, TxnMarker)> = ending
        .partitions
        .iter()
        .map(|(topic, partition)| (topic.clone(), *partition, marker))
        .collect();
    let write = broker.write_markers(markers);
    let answer = glommio::timer::timeout(Duration::from_millis(TXN_MARKER_TIMEOUT_MS), async {
        Ok(write.await)
    })
    .await;
    let Ok(codes) = answer else {
        tracing::warn!(
            producer_id = marker.producer_id,
            "transaction markers timed out; retrying"
        );
        return false;
    };
    let mut done = true;
    for ((topic, partition), error_code) in ending.partitions.iter().zip(codes) {
        match error_code {
            // The partition's leader has told its group coordinator, if it
            // is an offsets partition (Broker::write_markers_local).
            code::NONE | code::UNKNOWN_TOPIC_OR_PARTITION => {}
            // INVALID_PRODUCER_EPOCH as Kafka's leaders answer it; brokers
            // before WriteTxnMarkers v2 answered PRODUCER_FENCED.
            code::PRODUCER_FENCED | code::INVALID_PRODUCER_EPOCH => {
                // The partition has seen a newer epoch of this producer id:
                // this transaction was superseded there, and retrying would
                // only wedge the id in Prepare* (Kafka gives up on such a
                // marker too).
                tracing::warn!(%topic, partition, producer_id = marker.producer_id, "transaction marker refused for an older epoch; skipped");
            }
            other => {
                tracing::warn!(%topic, partition, error_code = other, "writing a transaction marker failed; retrying");
                done = false;
            }
        }
    }
    done
}
