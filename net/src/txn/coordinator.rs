//! The transaction state machine: what each request does to an id's state,
//! with Kafka's error rules, and the marker writes that end a transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use sluice_engine::txn::TxnMarker;

use super::records::{self, TxnStatus, TxnValue};
use super::{now_ms, write_error_code, DescribedTxn, ListedTxn, TxnCoordinator};
use crate::broker::{Broker, ControllerRequest, ShardResponse};
use crate::constants::{
    TXN_END_WAIT_MS, TXN_MARKER_RETRY_MS, TXN_MARKER_TIMEOUT_MS, TXN_PARTITIONS_MAX,
};
use crate::errors::code;
use crate::groups::records::KeyedRecord;
use crate::groups::{self, GroupRequest, OFFSETS_TOPIC};

/// The highest epoch handed out; at it, the next bump allocates a new
/// producer id (Kafka keeps `Short.MAX_VALUE` free for fencing).
const EPOCH_LAST_USABLE: i16 = i16::MAX - 1;

/// The coordinator epoch written in markers: one broker, never re-elected.
const COORDINATOR_EPOCH: i32 = 0;

/// One transactional id's state.
#[derive(Clone, Debug)]
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
        for _ in 0..4 {
            let partition = match self.check_partition(broker, transactional_id) {
                Ok(partition) => partition,
                Err(error_code) => return failed(error_code),
            };
            self.wait_for_room(broker, partition).await;
            let exists = self.txns.borrow().contains_key(transactional_id);
            if !exists {
                let producer_id = match self.allocate_producer_id(broker).await {
                    Ok(id) => id,
                    Err(error_code) => return failed(error_code),
                };
                if self.txns.borrow().contains_key(transactional_id) {
                    continue;
                }
                let now = now_ms();
                let meta = TxnMeta {
                    id: transactional_id.to_string(),
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
                };
                let end = match self.persist_now(broker, &meta) {
                    Ok(end) => end,
                    Err(error) => return failed(write_error_code(&error)),
                };
                self.txns
                    .borrow_mut()
                    .insert(transactional_id.to_string(), meta);
                return match self.wait_written(broker, partition, end).await {
                    Ok(()) => (code::NONE, producer_id, 0),
                    Err(error) => failed(write_error_code(&error)),
                };
            }
            let (status, needs_new_id) = {
                let txns = self.txns.borrow();
                let Some(meta) = txns.get(transactional_id) else {
                    continue;
                };
                if expected_id >= 0 || expected_epoch >= 0 {
                    // KIP-360: the client names the id and epoch it had. A
                    // retry of the last bump gets the current pair again.
                    let current =
                        expected_id == meta.producer_id && expected_epoch == meta.producer_epoch;
                    let retried = expected_id == meta.producer_id
                        && meta.last_producer_epoch >= 0
                        && expected_epoch == meta.last_producer_epoch
                        && !matches!(meta.status, TxnStatus::Ongoing);
                    // A retry of a bump that moved to a new producer id
                    // (the old epoch was exhausted).
                    let retried_new_id = expected_id >= 0
                        && expected_id == meta.previous_producer_id
                        && expected_epoch >= EPOCH_LAST_USABLE
                        && !matches!(meta.status, TxnStatus::Ongoing);
                    if retried || retried_new_id {
                        return (code::NONE, meta.producer_id, meta.producer_epoch);
                    }
                    if !current {
                        return failed(code::PRODUCER_FENCED);
                    }
                }
                (meta.status, meta.producer_epoch >= EPOCH_LAST_USABLE)
            };
            match status {
                TxnStatus::PrepareCommit
                | TxnStatus::PrepareAbort
                | TxnStatus::PrepareEpochFence => return failed(code::CONCURRENT_TRANSACTIONS),
                TxnStatus::Ongoing => {
                    // Fence the running producer and abort its transaction,
                    // then bump again for the new one (Kafka's order).
                    match self.end_now(broker, transactional_id, false, true, None) {
                        Ok((end, token)) => {
                            if let Err(error) = self.wait_written(broker, partition, end).await {
                                return failed(write_error_code(&error));
                            }
                            self.run_completion(broker, transactional_id, token).await;
                        }
                        Err(error_code) => return failed(error_code),
                    }
                    continue;
                }
                TxnStatus::Dead => return failed(code::CONCURRENT_TRANSACTIONS),
                TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => {}
            }
            let new_id = if needs_new_id {
                match self.allocate_producer_id(broker).await {
                    Ok(id) => Some(id),
                    Err(error_code) => return failed(error_code),
                }
            } else {
                None
            };
            let now = now_ms();
            let end = {
                let mut txns = self.txns.borrow_mut();
                let Some(meta) = txns.get_mut(transactional_id) else {
                    continue;
                };
                if !matches!(
                    meta.status,
                    TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort
                ) {
                    continue;
                }
                match new_id {
                    Some(id) => {
                        meta.previous_producer_id = meta.producer_id;
                        meta.producer_id = id;
                        meta.producer_epoch = 0;
                        meta.last_producer_epoch = -1;
                    }
                    None => {
                        meta.last_producer_epoch = meta.producer_epoch;
                        meta.producer_epoch += 1;
                    }
                }
                meta.timeout_ms = timeout_ms;
                meta.status = TxnStatus::Empty;
                meta.partitions.clear();
                meta.start_ms = -1;
                meta.last_update_ms = now;
                match self.persist_now(broker, meta) {
                    Ok(end) => (end, meta.producer_id, meta.producer_epoch),
                    Err(error) => return failed(write_error_code(&error)),
                }
            };
            return match self.wait_written(broker, partition, end.0).await {
                Ok(()) => (code::NONE, end.1, end.2),
                Err(error) => failed(write_error_code(&error)),
            };
        }
        failed(code::CONCURRENT_TRANSACTIONS)
    }

    /// The checks every request of a running producer passes: the id is
    /// known, the producer id is its current one, the epoch is current.
    fn check_producer(meta: &TxnMeta, producer_id: i64, producer_epoch: i16) -> Result<(), i16> {
        if meta.producer_id != producer_id {
            return Err(code::INVALID_PRODUCER_ID_MAPPING);
        }
        if meta.producer_epoch != producer_epoch {
            return Err(code::PRODUCER_FENCED);
        }
        Ok(())
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
        if !verify_only {
            self.wait_for_room(broker, partition).await;
        }
        let end = {
            let mut txns = self.txns.borrow_mut();
            let meta = txns
                .get_mut(transactional_id)
                .ok_or(code::INVALID_PRODUCER_ID_MAPPING)?;
            Self::check_producer(meta, producer_id, producer_epoch)?;
            if verify_only {
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
            match meta.status {
                TxnStatus::PrepareCommit
                | TxnStatus::PrepareAbort
                | TxnStatus::PrepareEpochFence
                | TxnStatus::Dead => return Err(code::CONCURRENT_TRANSACTIONS),
                TxnStatus::Ongoing
                    if partitions.iter().all(|key| meta.partitions.contains(key)) =>
                {
                    return Ok(vec![code::NONE; partitions.len()]);
                }
                _ => {}
            }
            let fresh = partitions
                .iter()
                .filter(|key| !meta.partitions.contains(*key))
                .count();
            if meta.status == TxnStatus::Ongoing
                && meta.partitions.len() + fresh > TXN_PARTITIONS_MAX
                || meta.status != TxnStatus::Ongoing && fresh > TXN_PARTITIONS_MAX
            {
                return Err(code::INVALID_REQUEST);
            }
            let now = now_ms();
            if meta.status != TxnStatus::Ongoing {
                meta.partitions.clear();
                meta.start_ms = now;
                meta.status = TxnStatus::Ongoing;
            }
            meta.partitions.extend(partitions.iter().cloned());
            meta.last_update_ms = now;
            self.persist_now(broker, meta)
                .map_err(|error| write_error_code(&error))?
        };
        self.wait_written(broker, partition, end)
            .await
            .map_err(|error| write_error_code(&error))?;
        Ok(vec![code::NONE; partitions.len()])
    }

    /// Decides the end of an Ongoing transaction now (no await): the
    /// Prepare* state is appended and the completion token set. With
    /// `fence`, the epoch is bumped first (timeout or a new producer's
    /// InitProducerId). `bump_to`: transaction version 2's end-of-transaction
    /// epoch. Returns the end offset to wait for and the token.
    pub(super) fn end_now(
        &self,
        broker: &Rc<Broker>,
        transactional_id: &str,
        commit: bool,
        fence: bool,
        bump_to: Option<(i64, i16)>,
    ) -> Result<(i64, u64), i16> {
        let token = self.token();
        let mut txns = self.txns.borrow_mut();
        let meta = txns
            .get_mut(transactional_id)
            .ok_or(code::INVALID_PRODUCER_ID_MAPPING)?;
        if meta.status != TxnStatus::Ongoing {
            return Err(code::INVALID_TXN_STATE);
        }
        if fence && meta.producer_epoch < i16::MAX {
            meta.last_producer_epoch = meta.producer_epoch;
            meta.producer_epoch += 1;
        }
        if let Some((id, epoch)) = bump_to {
            if id != meta.producer_id {
                meta.next_producer_id = id;
            }
            meta.last_producer_epoch = meta.producer_epoch;
            meta.producer_epoch = epoch;
        }
        meta.status = if commit {
            TxnStatus::PrepareCommit
        } else {
            TxnStatus::PrepareAbort
        };
        meta.last_update_ms = now_ms();
        meta.completion = token;
        let end = self
            .persist_now(broker, meta)
            .map_err(|error| write_error_code(&error))?;
        Ok((end, token))
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
        self.wait_for_room(broker, partition).await;
        let (status, current_id, current_epoch, last_epoch, exhausted) = {
            let txns = self.txns.borrow();
            let Some(meta) = txns.get(transactional_id) else {
                return failed(code::INVALID_PRODUCER_ID_MAPPING);
            };
            (
                meta.status,
                meta.producer_id,
                meta.producer_epoch,
                meta.last_producer_epoch,
                meta.producer_epoch >= EPOCH_LAST_USABLE,
            )
        };
        let succeeded = (code::NONE, current_id, current_epoch);
        if current_id != producer_id && !(bump_epoch && status != TxnStatus::Ongoing) {
            return failed(code::INVALID_PRODUCER_ID_MAPPING);
        }
        // Transaction version 2 bumps the epoch at every end: a retry of an
        // end that completed carries the epoch before the bump.
        let retry_v2 = bump_epoch
            && matches!(
                status,
                TxnStatus::CompleteCommit
                    | TxnStatus::CompleteAbort
                    | TxnStatus::PrepareCommit
                    | TxnStatus::PrepareAbort
            )
            && producer_epoch == last_epoch;
        if producer_epoch != current_epoch && !retry_v2 {
            return failed(code::PRODUCER_FENCED);
        }
        match status {
            TxnStatus::Ongoing => {}
            TxnStatus::CompleteCommit if commit => return succeeded,
            TxnStatus::CompleteAbort if !commit => return succeeded,
            TxnStatus::PrepareCommit if commit => return failed(code::CONCURRENT_TRANSACTIONS),
            TxnStatus::PrepareAbort if !commit => return failed(code::CONCURRENT_TRANSACTIONS),
            TxnStatus::Empty if bump_epoch && !commit => {
                // Transaction version 2 lets a producer abort with nothing
                // added (it may have produced before learning of an error).
                return succeeded;
            }
            TxnStatus::PrepareEpochFence | TxnStatus::Dead => {
                return failed(code::CONCURRENT_TRANSACTIONS)
            }
            _ => return failed(code::INVALID_TXN_STATE),
        }
        let bump_to = if bump_epoch {
            if exhausted {
                match self.allocate_producer_id(broker).await {
                    Ok(id) => Some((id, 0)),
                    Err(error_code) => return failed(error_code),
                }
            } else {
                Some((current_id, current_epoch + 1))
            }
        } else {
            None
        };
        // The allocation may have awaited: the state must still be the one
        // checked.
        let unchanged = self
            .txns
            .borrow()
            .get(transactional_id)
            .is_some_and(|meta| {
                meta.status == TxnStatus::Ongoing
                    && meta.producer_id == current_id
                    && meta.producer_epoch == current_epoch
            });
        if !unchanged {
            return failed(code::CONCURRENT_TRANSACTIONS);
        }
        let (end, token) = match self.end_now(broker, transactional_id, commit, false, bump_to) {
            Ok(result) => result,
            Err(error_code) => return failed(error_code),
        };
        if let Err(error) = self.wait_written(broker, partition, end).await {
            return failed(write_error_code(&error));
        }
        self.run_completion(broker, transactional_id, token).await;
        match bump_to {
            // The markers carry the bumped epoch; with a new producer id
            // the client continues with that id at epoch 0.
            Some((id, epoch)) => (code::NONE, id, epoch),
            None => (code::NONE, current_id, current_epoch),
        }
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
            }
        };
        loop {
            if broker.shutting_down.get() {
                return;
            }
            if write_markers(broker, &ending).await {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(TXN_MARKER_RETRY_MS)).await;
            let owned = self
                .txns
                .borrow()
                .get(transactional_id)
                .is_some_and(|meta| meta.completion == token);
            if !owned {
                return;
            }
        }
        // Markers are durable; record the completion (a crash before this
        // rewrites the markers on load, which partitions treat as no-ops).
        let written = {
            let mut txns = self.txns.borrow_mut();
            let Some(meta) = txns.get_mut(transactional_id) else {
                return;
            };
            if meta.completion != token {
                return;
            }
            meta.status = if ending.commit {
                TxnStatus::CompleteCommit
            } else {
                TxnStatus::CompleteAbort
            };
            if meta.next_producer_id >= 0 {
                // Transaction version 2 moved to a new producer id.
                meta.previous_producer_id = meta.producer_id;
                meta.producer_id = meta.next_producer_id;
                meta.next_producer_id = -1;
                meta.producer_epoch = 0;
                meta.last_producer_epoch = -1;
            }
            meta.partitions.clear();
            meta.last_update_ms = now_ms();
            meta.completion = 0;
            self.persist_now(broker, meta)
                .map(|end| (meta.partition, end))
        };
        match written {
            Ok((partition, end)) => {
                if let Err(error) = self.wait_written(broker, partition, end).await {
                    tracing::warn!(id = %transactional_id, %error, "recording a completed transaction failed");
                }
            }
            Err(error) => {
                tracing::warn!(id = %transactional_id, %error, "recording a completed transaction failed")
            }
        }
    }

    /// Aborts transactions Ongoing longer than their timeout, fencing their
    /// producer.
    pub(super) async fn abort_timed_out(&self, broker: &Rc<Broker>) {
        let now = now_ms();
        let expired: Vec<String> = self
            .txns
            .borrow()
            .values()
            .filter(|meta| {
                meta.status == TxnStatus::Ongoing
                    && meta.start_ms >= 0
                    && now.saturating_sub(meta.start_ms) > i64::from(meta.timeout_ms)
            })
            .map(|meta| meta.id.clone())
            .collect();
        for id in expired {
            let Some(partition) = self.txns.borrow().get(&id).map(|meta| meta.partition) else {
                continue;
            };
            self.wait_for_room(broker, partition).await;
            let (end, token) = match self.end_now(broker, &id, false, true, None) {
                Ok(result) => result,
                Err(_) => continue,
            };
            tracing::info!(id = %id, "aborting a transaction that passed its timeout");
            if let Err(error) = self.wait_written(broker, partition, end).await {
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
    /// them too).
    pub(super) async fn expire_ids(&self, broker: &Rc<Broker>) {
        let now = now_ms();
        let expiration = self.config.id_expiration_ms;
        let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
        {
            let mut txns = self.txns.borrow_mut();
            let idle: Vec<String> = txns
                .values()
                .filter(|meta| {
                    matches!(
                        meta.status,
                        TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort
                    ) && now.saturating_sub(meta.last_update_ms) > expiration
                })
                .map(|meta| meta.id.clone())
                .collect();
            for id in idle {
                let Some(partition) = txns.get(&id).map(|meta| meta.partition) else {
                    continue;
                };
                let tombstone = KeyedRecord {
                    key: records::encode_key(&id),
                    value: None,
                };
                match self.append_now(broker, partition, &[tombstone]) {
                    Ok(end) => {
                        txns.remove(&id);
                        ends.insert(partition, end);
                        tracing::info!(id = %id, "transactional id expired");
                    }
                    Err(error) => {
                        tracing::warn!(id = %id, %error, "expiring a transactional id failed")
                    }
                }
            }
        }
        for (partition, end) in ends {
            if let Err(error) = self.wait_written(broker, partition, end).await {
                tracing::warn!(partition, %error, "expiry tombstones not durable");
            }
        }
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

/// Writes a transaction's markers to every partition (the partitions' owner
/// shards append and sync them) and tells the group coordinators of
/// `__consumer_offsets` partitions. True when every partition has its
/// marker (or no longer exists: Kafka skips deleted partitions).
async fn write_markers(broker: &Rc<Broker>, ending: &Ending) -> bool {
    let marker = TxnMarker {
        producer_id: ending.producer_id,
        producer_epoch: ending.producer_epoch,
        commit: ending.commit,
        coordinator_epoch: COORDINATOR_EPOCH,
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
            code::NONE => {
                if topic == OFFSETS_TOPIC {
                    let shard = broker.owner(topic, *partition);
                    groups::call(
                        broker,
                        shard,
                        GroupRequest::TxnMarker {
                            partition: *partition,
                            producer_id: marker.producer_id,
                            commit: marker.commit,
                        },
                    )
                    .await;
                }
            }
            code::UNKNOWN_TOPIC_OR_PARTITION => {}
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
