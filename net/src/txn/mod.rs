//! Transactions: the transaction coordinator.
//!
//! A transactional id lives on one shard: the owner of the
//! `__transaction_state` partition the id hashes to (`coordinator_partition`,
//! as groups do with `__consumer_offsets`). Every shard runs a
//! [`TxnCoordinator`] for the ids of the state partitions it owns;
//! connection shards route [`TxnRequest`]s to it over the mesh
//! (`ShardRequest::Txn`).
//!
//! Each id's state is one record in Kafka's TransactionLog schemas
//! (`records`), appended whenever it changes. A change is computed from the
//! installed state, appended with the id marked pending, and installed only
//! once durable (`coordinator::transit`); while pending, other requests for
//! the id see the old state or CONCURRENT_TRANSACTIONS, and a failed write
//! leaves the old state installed. When a shard opens a state partition it replays
//! it (the last record per id wins) and until then answers
//! COORDINATOR_LOAD_IN_PROGRESS.
//!
//! Ending a transaction: Ongoing → PrepareCommit/PrepareAbort (durable:
//! the decision) → a commit or abort marker in every partition of the
//! transaction (`ShardRequest::WriteTxnMarkers` to each owner shard;
//! `__consumer_offsets` partitions also tell their group coordinator) →
//! CompleteCommit/CompleteAbort. A shard that finds a Prepare* state on load
//! finishes it. Markers are retried until written, so a decided transaction
//! always ends.
//!
//! Transactions Ongoing longer than their timeout are aborted by a periodic
//! task with the producer epoch bumped (the old producer is fenced, as Kafka
//! does); ids idle past `transactional.id.expiration.ms` are removed with a
//! tombstone. Replay cost is bounded as for groups: when a partition's log
//! holds far more records than live ids, the live state is appended again
//! and the log start moved past the rest.

mod coordinator;
pub mod records;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod transition_tests;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

use sluice_engine::{batch, AppendError, ClusterMetadata, ShardId};

use crate::broker::{AckError, Broker, ShardRequest, ShardResponse};
use crate::config::TxnConfig;
use crate::constants::{OFFSETS_LOAD_RETRY_MS, OFFSETS_WRITE_TIMEOUT_MS, TXN_LOAD_READ_BYTES};
use crate::errors::code;
use crate::groups::records::{self as group_records, KeyedRecord};
pub use coordinator::TxnMeta;
pub use records::TxnStatus;

/// The internal topic holding transaction state.
pub const TXN_TOPIC: &str = "__transaction_state";

/// A transaction request, sent whole to the id's coordinator shard.
#[derive(Clone, Debug)]
pub enum TxnRequest {
    InitProducerId {
        transactional_id: String,
        timeout_ms: i32,
        /// -1 / -1 unless the client recovers (KIP-360, v3+).
        producer_id: i64,
        producer_epoch: i16,
    },
    /// AddPartitionsToTxn and AddOffsetsToTxn (the offsets partition).
    AddPartitions {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
        /// KIP-890: only answer whether the partitions are in the
        /// transaction.
        verify_only: bool,
    },
    EndTxn {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        /// Transaction version 2 (EndTxn v5): the epoch is bumped at every
        /// transaction end and returned.
        bump_epoch: bool,
    },
    Describe(Vec<String>),
    /// The transactions of this shard matching the filters.
    List {
        states: Vec<TxnStatus>,
        producer_ids: Vec<i64>,
        /// Only transactions running at least this long (-1: any).
        min_duration_ms: i64,
    },
}

/// A described transaction (DescribeTransactions).
#[derive(Clone, Debug)]
pub struct DescribedTxn {
    pub transactional_id: String,
    pub error_code: i16,
    pub state: &'static str,
    pub timeout_ms: i32,
    pub start_ms: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<(String, Vec<i32>)>,
}

/// A listed transaction (ListTransactions).
#[derive(Clone, Debug)]
pub struct ListedTxn {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: &'static str,
}

/// The coordinator's answer.
#[derive(Debug)]
pub enum TxnResponse {
    /// InitProducerId and EndTxn: error, producer id, epoch.
    Producer {
        error_code: i16,
        producer_id: i64,
        producer_epoch: i16,
    },
    /// One error per partition, in request order; or one error for all.
    AddPartitions(Result<Vec<i16>, i16>),
    Describe(Vec<DescribedTxn>),
    /// An error (a state partition still loading) or the transactions.
    List(Result<Vec<ListedTxn>, i16>),
}

/// Whether a state partition's ids are in memory yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Load {
    Loading,
    Loaded,
}

/// Why a state write failed.
#[derive(Debug)]
enum WriteError {
    NotCoordinator,
    Append(AppendError),
    Storage(String),
    TimedOut,
    /// Replicated, but the state partition's ISR shrank below its minimum.
    NotEnoughReplicas,
}

impl From<AckError> for WriteError {
    fn from(error: AckError) -> Self {
        match error {
            AckError::NotLeader => WriteError::NotCoordinator,
            AckError::Storage(error) => WriteError::Storage(error),
            AckError::TimedOut(_) => WriteError::TimedOut,
            AckError::NotEnoughReplicas { .. } => WriteError::NotEnoughReplicas,
        }
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::NotCoordinator => write!(f, "the state partition is not on this shard"),
            WriteError::Append(error) => write!(f, "append failed: {error}"),
            WriteError::Storage(error) => write!(f, "sync failed: {error}"),
            WriteError::TimedOut => write!(
                f,
                "not durable and replicated within {OFFSETS_WRITE_TIMEOUT_MS} ms"
            ),
            WriteError::NotEnoughReplicas => write!(f, "too few in-sync replicas"),
        }
    }
}

/// The error a client gets for a failed state write, as Kafka maps its
/// append errors: the partition not led here or its storage failing →
/// NOT_COORDINATOR (the client looks the coordinator up again), a write not
/// durable and replicated in time, or left with too few in-sync replicas →
/// COORDINATOR_NOT_AVAILABLE (retried), a record the log
/// refuses (too large) → UNKNOWN_SERVER_ERROR.
fn write_error_code(error: &WriteError) -> i16 {
    match error {
        WriteError::TimedOut | WriteError::NotEnoughReplicas => code::COORDINATOR_NOT_AVAILABLE,
        WriteError::NotCoordinator
        | WriteError::Storage(_)
        | WriteError::Append(AppendError::Storage(_))
        | WriteError::Append(AppendError::Closed | AppendError::Truncating) => {
            code::NOT_COORDINATOR
        }
        WriteError::Append(AppendError::Batch(_))
        | WriteError::Append(AppendError::Producer(_))
        | WriteError::Append(AppendError::NotContiguous { .. }) => code::UNKNOWN_SERVER_ERROR,
    }
}

/// A shard's transaction coordinator.
pub struct TxnCoordinator {
    config: TxnConfig,
    broker: RefCell<Weak<Broker>>,
    partitions: RefCell<HashMap<i32, Load>>,
    /// The installed state: only what is durable in the log.
    txns: RefCell<HashMap<String, TxnMeta>>,
    /// Ids with a transition appended but not yet durable.
    pending: RefCell<HashMap<String, coordinator::Pending>>,
    /// Serial number of completion tasks, so a later end of the same id is
    /// not mistaken for an earlier one.
    next_token: Cell<u64>,
}

fn now_ms() -> i64 {
    sluice_engine::types::now_ms()
}

/// Spawns a detached task that starts by yielding (see the groups module:
/// the spawner may hold borrows until it returns to the executor).
fn spawn_detached(future: impl std::future::Future<Output = ()> + 'static) {
    glommio::spawn_local(async move {
        futures_lite::future::yield_now().await;
        future.await
    })
    .detach();
}

/// The shard coordinating `transactional_id`, or NOT_COORDINATOR while the
/// state topic does not exist (FindCoordinator creates it).
pub fn coordinator_shard(broker: &Broker, transactional_id: &str) -> Result<ShardId, i16> {
    let metadata = broker.metadata();
    let Some(topic) = metadata.topics.get(TXN_TOPIC) else {
        return Err(code::NOT_COORDINATOR);
    };
    let partition = sluice_engine::shard::coordinator_partition(transactional_id, topic.partitions);
    Ok(broker.owner(TXN_TOPIC, partition))
}

/// Where the coordinator of a transactional id runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordinatorAt {
    /// On this broker (it leads the id's state partition), on this shard.
    Shard(ShardId),
    /// On another broker, the leader of the id's state partition.
    Broker(i32),
}

/// The coordinator of `transactional_id` as the metadata says: the leader
/// of its `__transaction_state` partition. TRANSACTION_ABORTABLE while the
/// state topic does not exist (no transaction can hold a partition yet),
/// COORDINATOR_NOT_AVAILABLE while the partition has no leader.
pub fn coordinator_location(broker: &Broker, transactional_id: &str) -> Result<CoordinatorAt, i16> {
    let metadata = broker.metadata();
    let Some(topic) = metadata.topics.get(TXN_TOPIC) else {
        return Err(code::TRANSACTION_ABORTABLE);
    };
    let partition = sluice_engine::shard::coordinator_partition(transactional_id, topic.partitions);
    // A partition without a placement is this node's own (as `leads`).
    match metadata
        .partition(TXN_TOPIC, partition)
        .map(|state| state.leader)
    {
        Some(leader) if leader != broker.config.node_id => {
            if leader < 0 {
                Err(code::COORDINATOR_NOT_AVAILABLE)
            } else {
                Ok(CoordinatorAt::Broker(leader))
            }
        }
        _ => Ok(CoordinatorAt::Shard(broker.owner(TXN_TOPIC, partition))),
    }
}

/// Sends a request to `shard`; `None` if the shard is gone.
pub async fn call(broker: &Rc<Broker>, shard: ShardId, request: TxnRequest) -> Option<TxnResponse> {
    match broker.mesh.call(shard, ShardRequest::Txn(request)).await {
        Some(ShardResponse::Txn(response)) => Some(response),
        _ => None,
    }
}

/// Sends a request to the coordinator of `transactional_id`.
pub async fn route(
    broker: &Rc<Broker>,
    transactional_id: &str,
    request: TxnRequest,
) -> Result<TxnResponse, i16> {
    let shard = coordinator_shard(broker, transactional_id)?;
    call(broker, shard, request)
        .await
        .ok_or(code::COORDINATOR_NOT_AVAILABLE)
}

/// Creates `__transaction_state` if it does not exist yet and returns its
/// partition count.
pub async fn ensure_txn_topic(broker: &Rc<Broker>) -> Result<i32, i16> {
    let txn = &broker.config.txn;
    broker
        .ensure_internal_topic(
            TXN_TOPIC,
            txn.state_partitions,
            txn.state_replication_factor,
            Some(txn.state_min_isr),
        )
        .await
}

/// Serves a transaction request on its coordinator shard.
pub async fn serve(broker: &Rc<Broker>, request: TxnRequest) -> TxnResponse {
    let txns = &broker.txns;
    let started = std::time::Instant::now();
    let id = match &request {
        TxnRequest::InitProducerId {
            transactional_id, ..
        }
        | TxnRequest::AddPartitions {
            transactional_id, ..
        }
        | TxnRequest::EndTxn {
            transactional_id, ..
        } => Some(transactional_id.clone()),
        TxnRequest::Describe(_) | TxnRequest::List { .. } => None,
    };
    let response = serve_request(broker, txns, request).await;
    // Each request's outcome and the id's state after it
    // (`SLUICE_LOG=sluice_net::txn=debug`): a transaction that stops
    // moving shows which answer it keeps getting.
    if let Some(id) = id {
        let outcome = match &response {
            TxnResponse::Producer { error_code, .. } => format!("error {error_code}"),
            TxnResponse::AddPartitions(Ok(codes)) => format!("partitions {codes:?}"),
            TxnResponse::AddPartitions(Err(error_code)) => format!("error {error_code}"),
            _ => String::new(),
        };
        let state = txns
            .txns
            .borrow()
            .get(&id)
            .map(|meta| meta.status.name())
            .unwrap_or("none");
        let pending = txns.pending.borrow().contains_key(&id);
        tracing::debug!(%id, %outcome, state, pending, took_ms = started.elapsed().as_millis() as u64, "transaction request answered");
    }
    response
}

async fn serve_request(
    broker: &Rc<Broker>,
    txns: &TxnCoordinator,
    request: TxnRequest,
) -> TxnResponse {
    match request {
        TxnRequest::InitProducerId {
            transactional_id,
            timeout_ms,
            producer_id,
            producer_epoch,
        } => {
            let (error_code, producer_id, producer_epoch) = txns
                .init_producer_id(
                    broker,
                    &transactional_id,
                    timeout_ms,
                    producer_id,
                    producer_epoch,
                )
                .await;
            TxnResponse::Producer {
                error_code,
                producer_id,
                producer_epoch,
            }
        }
        TxnRequest::AddPartitions {
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
            verify_only,
        } => TxnResponse::AddPartitions(
            txns.add_partitions(
                broker,
                &transactional_id,
                producer_id,
                producer_epoch,
                partitions,
                verify_only,
            )
            .await,
        ),
        TxnRequest::EndTxn {
            transactional_id,
            producer_id,
            producer_epoch,
            commit,
            bump_epoch,
        } => {
            let (error_code, producer_id, producer_epoch) = txns
                .end_txn(
                    broker,
                    &transactional_id,
                    producer_id,
                    producer_epoch,
                    commit,
                    bump_epoch,
                )
                .await;
            TxnResponse::Producer {
                error_code,
                producer_id,
                producer_epoch,
            }
        }
        TxnRequest::Describe(ids) => TxnResponse::Describe(txns.describe(broker, ids)),
        TxnRequest::List {
            states,
            producer_ids,
            min_duration_ms,
        } => TxnResponse::List(txns.list(&states, &producer_ids, min_duration_ms)),
    }
}

impl TxnCoordinator {
    pub fn new(config: TxnConfig) -> TxnCoordinator {
        TxnCoordinator {
            config,
            broker: RefCell::new(Weak::new()),
            partitions: RefCell::new(HashMap::new()),
            txns: RefCell::new(HashMap::new()),
            pending: RefCell::new(HashMap::new()),
            next_token: Cell::new(0),
        }
    }

    /// Connects the coordinator to its broker and starts the periodic work:
    /// aborting timed-out transactions and expiring idle ids (the log
    /// cleaner bounds the log: `__transaction_state` is compacted).
    pub fn attach(&self, broker: Weak<Broker>) {
        *self.broker.borrow_mut() = broker.clone();
        let interval = Duration::from_millis(self.config.abort_check_interval_ms.max(1));
        spawn_detached(async move {
            loop {
                glommio::timer::sleep(interval).await;
                let Some(broker) = broker.upgrade() else {
                    return;
                };
                if broker.shutting_down.get() {
                    return;
                }
                broker.txns.abort_timed_out(&broker).await;
                broker.txns.expire_ids(&broker).await;
            }
        });
    }

    fn token(&self) -> u64 {
        let token = self.next_token.get() + 1;
        self.next_token.set(token);
        token
    }

    fn weak_broker(&self) -> Weak<Broker> {
        self.broker.borrow().clone()
    }

    /// Follows a metadata change: loads the state partitions this shard now
    /// owns, forgets those it no longer has.
    pub fn on_metadata(&self, metadata: &ClusterMetadata) {
        let Some(broker) = self.broker.borrow().upgrade() else {
            return;
        };
        let owned = broker.local_partitions(metadata, TXN_TOPIC);
        let gone: Vec<i32> = self
            .partitions
            .borrow()
            .keys()
            .filter(|partition| !owned.contains(partition))
            .copied()
            .collect();
        for partition in gone {
            self.partitions.borrow_mut().remove(&partition);
            self.txns
                .borrow_mut()
                .retain(|_, meta| meta.partition != partition);
            // Transitions in flight there will not install (they find their
            // mark gone).
            self.pending
                .borrow_mut()
                .retain(|_, pending| pending.partition != partition);
        }
        for partition in owned {
            if self.partitions.borrow().contains_key(&partition) {
                continue;
            }
            self.start_load(partition);
        }
    }

    fn start_load(&self, partition: i32) {
        self.partitions
            .borrow_mut()
            .insert(partition, Load::Loading);
        let weak = self.weak_broker();
        spawn_detached(async move {
            if let Some(broker) = weak.upgrade() {
                broker.txns.load_partition(&broker, partition).await;
            }
        });
    }

    /// The state partition of `transactional_id` if this shard coordinates
    /// it and has loaded it; else the error the client gets.
    fn check_partition(&self, broker: &Broker, transactional_id: &str) -> Result<i32, i16> {
        let metadata = broker.metadata();
        let Some(topic) = metadata.topics.get(TXN_TOPIC) else {
            return Err(code::NOT_COORDINATOR);
        };
        let partition =
            sluice_engine::shard::coordinator_partition(transactional_id, topic.partitions);
        if broker.owner(TXN_TOPIC, partition) != broker.shard {
            return Err(code::NOT_COORDINATOR);
        }
        let state = self.partitions.borrow().get(&partition).copied();
        match state {
            Some(Load::Loaded) => Ok(partition),
            Some(Load::Loading) => Err(code::COORDINATOR_LOAD_IN_PROGRESS),
            None if broker.log(TXN_TOPIC, partition).is_some() => {
                self.start_load(partition);
                Err(code::COORDINATOR_LOAD_IN_PROGRESS)
            }
            None => Err(code::NOT_COORDINATOR),
        }
    }

    /// Replays a state partition and installs its ids; transactions found
    /// in PrepareCommit/PrepareAbort are completed.
    async fn load_partition(&self, broker: &Rc<Broker>, partition: i32) {
        loop {
            if broker.shutting_down.get()
                || self.partitions.borrow().get(&partition) != Some(&Load::Loading)
            {
                return;
            }
            match self.replay(broker, partition).await {
                Ok((values, records)) => {
                    let mut to_complete = Vec::new();
                    {
                        let mut txns = self.txns.borrow_mut();
                        for (id, value) in values {
                            let meta = TxnMeta::from_value(id.clone(), partition, value);
                            if matches!(
                                meta.status,
                                TxnStatus::PrepareCommit | TxnStatus::PrepareAbort
                            ) {
                                to_complete.push(id.clone());
                            }
                            txns.insert(id, meta);
                        }
                    }
                    self.partitions.borrow_mut().insert(partition, Load::Loaded);
                    if records > 0 {
                        tracing::info!(
                            partition,
                            records,
                            unfinished = to_complete.len(),
                            "loaded {TXN_TOPIC} partition"
                        );
                    }
                    for id in to_complete {
                        let token = self.token();
                        if let Some(meta) = self.txns.borrow_mut().get_mut(&id) {
                            meta.completion = token;
                        }
                        let weak = Rc::downgrade(broker);
                        spawn_detached(async move {
                            if let Some(broker) = weak.upgrade() {
                                broker.txns.complete(&broker, &id, token).await;
                            }
                        });
                    }
                    return;
                }
                Err(error) => {
                    tracing::error!(partition, %error, "replaying {TXN_TOPIC} failed; retrying");
                    glommio::timer::sleep(Duration::from_millis(OFFSETS_LOAD_RETRY_MS)).await;
                }
            }
        }
    }

    /// Reads a state partition from its log start: the last value per id
    /// (tombstones remove), and the number of records read.
    async fn replay(
        &self,
        broker: &Broker,
        partition: i32,
    ) -> Result<(HashMap<String, records::TxnValue>, u64), String> {
        let mut values = HashMap::new();
        let mut count = 0u64;
        broker
            .scan_batches(TXN_TOPIC, partition, TXN_LOAD_READ_BYTES, |batch, position| {
                let parsed = match group_records::parse_batch(batch) {
                    Ok((_, parsed)) => parsed,
                    Err(error) => {
                        tracing::warn!(partition, %error, "skipping an unreadable {TXN_TOPIC} batch");
                        return;
                    }
                };
                for record in parsed
                    .into_iter()
                    .filter(|record| record.offset >= position)
                {
                    count += 1;
                    let Some(key) = record.key else { continue };
                    let id = match records::decode_key(key) {
                        Ok(Some(id)) => id,
                        Ok(None) => continue,
                        Err(error) => {
                            tracing::warn!(partition, offset = record.offset, %error, "skipping a record with an unreadable key");
                            continue;
                        }
                    };
                    match record.value {
                        None => {
                            values.remove(&id);
                        }
                        Some(value) => match records::decode_value(value) {
                            Ok(value) => {
                                values.insert(id, value);
                            }
                            Err(error) => {
                                tracing::warn!(partition, offset = record.offset, %error, "skipping an unreadable transaction state")
                            }
                        },
                    }
                }
            })
            .await?;
        Ok((values, count))
    }

    /// Appends records to a state partition now (no await); returns the
    /// offset after the last one.
    fn append_now(
        &self,
        broker: &Broker,
        partition: i32,
        records: &[KeyedRecord],
    ) -> Result<i64, WriteError> {
        let log = broker
            .log(TXN_TOPIC, partition)
            .ok_or(WriteError::NotCoordinator)?;
        let bytes = group_records::build_batch(records, now_ms());
        let header = batch::validate(&bytes, usize::MAX)
            .map_err(|error| WriteError::Append(AppendError::Batch(error)))?;
        let appended = log.append(&[(header, bytes)]).map_err(WriteError::Append)?;
        Ok(appended.last_offset.0 + 1)
    }

    /// Waits until everything before `end` in the partition is durable and
    /// held by every in-sync replica (Kafka appends coordinator state with
    /// acks=all), so that a new leader's coordinator finds it.
    async fn wait_written(
        &self,
        broker: &Broker,
        partition: i32,
        end: i64,
    ) -> Result<(), WriteError> {
        let timeout = Duration::from_millis(OFFSETS_WRITE_TIMEOUT_MS);
        broker
            .wait_internal_write(TXN_TOPIC, partition, end, timeout)
            .await
            .map_err(WriteError::from)
    }

    /// Waits (bounded) while the id's state partition's write-behind is
    /// full; after a wait, checks again that this shard still coordinates
    /// the id (see the group coordinator's `wait_for_room`).
    async fn wait_for_room(
        &self,
        broker: &Broker,
        transactional_id: &str,
        partition: i32,
    ) -> Result<(), i16> {
        if !broker
            .wait_for_coordinator_room(TXN_TOPIC, partition)
            .await?
        {
            return Ok(());
        }
        match self.check_partition(broker, transactional_id)? {
            now if now == partition => Ok(()),
            _ => Err(code::NOT_COORDINATOR),
        }
    }
}
