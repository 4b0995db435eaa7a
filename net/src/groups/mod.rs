//! Consumer groups and committed offsets: the group coordinator.
//!
//! A group lives on one shard: the owner of the `__consumer_offsets`
//! partition its id hashes to (`coordinator_partition`). Every shard runs a
//! [`GroupCoordinator`] for the groups of the offsets partitions it owns;
//! connection shards route group requests to it over the mesh
//! ([`GroupRequest`] in a `ShardRequest::Group`), one message per
//! coordinator shard.
//!
//! State is kept in memory and every change that must outlive a restart is
//! first appended to the group's offsets partition as records in Kafka's own
//! schemas (`records`): committed offsets, group metadata with members and
//! assignments, tombstones. Answers that depend on such a write wait until it
//! is durable (the log's group-commit fdatasync). When a shard opens an
//! offsets partition it replays it from the log start and rebuilds the
//! groups; until then requests for those groups get
//! COORDINATOR_LOAD_IN_PROGRESS.
//!
//! State changes and the append that records them happen without an await
//! in between, so the log's order is the order the coordinator decided in;
//! only waits (for a rebalance, for durability) are awaited, and whatever
//! runs after one re-checks the group.
//!
//! Replay cost is bounded by the log cleaner: `__consumer_offsets` is a
//! compacted topic, so a replay reads the latest record of each key in the
//! cleaned segments and whatever the uncleaned ones hold, as in Kafka.

mod assignor;
mod classic;
mod consumer;
pub mod consumer_records;
mod group;
mod offsets;
pub mod records;
mod txn_offsets;

#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    OffsetCommitRequest, OffsetDeleteRequest, SyncGroupRequest, TxnOffsetCommitRequest,
};
use sluice_engine::batch;
use sluice_engine::{AppendError, ClusterMetadata, ShardId};

use crate::broker::{AckError, Broker, ShardRequest, ShardResponse};
use crate::config::GroupConfig;
use crate::constants::{OFFSETS_LOAD_READ_BYTES, OFFSETS_LOAD_RETRY_MS, OFFSETS_WRITE_TIMEOUT_MS};
use crate::errors::code;
pub use consumer::{
    DescribedConsumerGroup, DescribedConsumerMember, HeartbeatOutcome, CONSUMER_PROTOCOL_TYPE,
};
use group::Group;
pub use group::{GroupState, JoinOutcome, JoinedMember, SyncOutcome};
pub use offsets::{
    CommitOutcome, DescribedGroupOutcome, DescribedMember, FetchGroup, FetchedGroup,
    FetchedPartition, LeaveOutcome, ListOutcome, ListedGroupOutcome, OffsetDeleteOutcome,
};
use records::KeyedRecord;

/// The internal topic holding offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// A group request, sent whole to the group's coordinator shard.
#[derive(Debug)]
pub enum GroupRequest {
    Join {
        request: JoinGroupRequest,
        version: i16,
        client_id: String,
    },
    Sync {
        request: SyncGroupRequest,
        version: i16,
    },
    Heartbeat {
        request: HeartbeatRequest,
    },
    Leave {
        request: LeaveGroupRequest,
        version: i16,
    },
    OffsetCommit {
        request: OffsetCommitRequest,
        version: i16,
    },
    /// The groups of an OffsetFetch that this shard coordinates.
    OffsetFetch {
        groups: Vec<FetchGroup>,
    },
    OffsetDelete {
        request: OffsetDeleteRequest,
    },
    Describe {
        groups: Vec<String>,
    },
    /// Every group of this shard.
    List,
    Delete {
        groups: Vec<String>,
    },
    /// KIP-848 ConsumerGroupHeartbeat.
    ConsumerHeartbeat {
        request: Box<ConsumerGroupHeartbeatRequest>,
        version: i16,
        client_id: String,
    },
    /// KIP-848 ConsumerGroupDescribe of the groups this shard coordinates.
    ConsumerDescribe {
        groups: Vec<String>,
    },
    /// Offsets committed inside a transaction: pending until its marker.
    TxnOffsetCommit {
        request: TxnOffsetCommitRequest,
        version: i16,
    },
    /// A transaction marker was written to an offsets partition of this
    /// shard: its pending offsets become visible (commit) or are dropped.
    TxnMarker {
        partition: i32,
        producer_id: i64,
        commit: bool,
    },
}

/// The coordinator's answer.
#[derive(Debug)]
pub enum GroupResponse {
    Join(JoinOutcome),
    Sync(SyncOutcome),
    Heartbeat(i16),
    Leave(LeaveOutcome),
    OffsetCommit(CommitOutcome),
    OffsetFetch(Vec<FetchedGroup>),
    OffsetDelete(OffsetDeleteOutcome),
    Describe(Vec<DescribedGroupOutcome>),
    List(ListOutcome),
    Delete(Vec<i16>),
    ConsumerHeartbeat(HeartbeatOutcome),
    ConsumerDescribe(Vec<DescribedConsumerGroup>),
    Done,
}

/// Whether an offsets partition's groups are in memory yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Load {
    Loading,
    Loaded,
}

/// Why a coordinator write failed.
#[derive(Debug)]
enum WriteError {
    /// The partition's log is not on this shard (any more).
    NotCoordinator,
    /// The records do not fit `max.message.bytes` of the offsets topic.
    TooLarge,
    Append(AppendError),
    /// fdatasync failed.
    Storage(String),
    /// Not durable and replicated within `OFFSETS_WRITE_TIMEOUT_MS`.
    TimedOut,
    /// Replicated, but the offsets partition's ISR shrank below its
    /// minimum meanwhile.
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
            WriteError::NotCoordinator => write!(f, "the offsets partition is not on this shard"),
            WriteError::TooLarge => {
                write!(f, "the records exceed max.message.bytes of {OFFSETS_TOPIC}")
            }
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

/// What was being written, because Kafka maps write failures differently
/// for offset commits and for group metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Written {
    Offsets,
    Group,
}

/// The Kafka error code for a failed coordinator write (Kafka's
/// GroupMetadataManager mapping): a broken or missing log sends the client
/// back to FindCoordinator, an oversized commit is INVALID_COMMIT_OFFSET_SIZE.
fn write_error_code(error: &WriteError, written: Written) -> i16 {
    match (error, written) {
        (WriteError::NotCoordinator, _) => code::NOT_COORDINATOR,
        (WriteError::Append(AppendError::Closed | AppendError::Truncating), _) => {
            code::NOT_COORDINATOR
        }
        (WriteError::Append(AppendError::Storage(_)) | WriteError::Storage(_), _) => {
            code::NOT_COORDINATOR
        }
        (WriteError::TooLarge | WriteError::Append(AppendError::Batch(_)), Written::Offsets) => {
            code::INVALID_COMMIT_OFFSET_SIZE
        }
        (WriteError::TooLarge | WriteError::Append(_), Written::Group) => {
            code::UNKNOWN_SERVER_ERROR
        }
        (
            WriteError::Append(AppendError::Producer(_) | AppendError::NotContiguous { .. }),
            Written::Offsets,
        ) => code::UNKNOWN_SERVER_ERROR,
        (WriteError::NotEnoughReplicas, _) => code::COORDINATOR_NOT_AVAILABLE,
        (WriteError::TimedOut, Written::Offsets) => code::REQUEST_TIMED_OUT,
        (WriteError::TimedOut, Written::Group) => code::REBALANCE_IN_PROGRESS,
    }
}

/// A shard's group coordinator.
pub struct GroupCoordinator {
    config: GroupConfig,
    broker: RefCell<Weak<Broker>>,
    /// Offsets partitions this shard owns.
    partitions: RefCell<HashMap<i32, Load>>,
    /// Groups of the loaded partitions, by id.
    groups: RefCell<HashMap<String, Group>>,
    next_token: Cell<u64>,
    /// Offsets committed in transactions not ended yet, by offsets
    /// partition and producer id.
    pending_txn: RefCell<HashMap<(i32, i64), Vec<txn_offsets::PendingOffset>>>,
}

/// Milliseconds since the epoch.
fn now_ms() -> i64 {
    sluice_engine::types::now_ms()
}

/// A fresh member id: Kafka's `<client id or instance id>-<uuid>`.
fn new_member_id(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer.
    let filled = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if filled != bytes.len() as isize {
        // Uniqueness within the group is all that matters; time and a
        // per-thread counter give it.
        thread_local!(static COUNTER: Cell<u64> = const { Cell::new(0) });
        let count = COUNTER.with(|counter| {
            counter.set(counter.get() + 1);
            counter.get()
        });
        bytes[..8].copy_from_slice(&(now_ms() as u64).to_be_bytes());
        bytes[8..].copy_from_slice(&count.to_be_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let uuid = uuid::Uuid::from_bytes(bytes);
    let mut end = prefix
        .len()
        .min(crate::constants::MEMBER_ID_PREFIX_BYTES_MAX);
    while !prefix.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{}", &prefix[..end], uuid.hyphenated())
}

/// Spawns a detached task that starts by yielding. glommio may run a newly
/// spawned task inline, up to its first await; the coordinator spawns timers
/// while it holds the group map, and the yield makes the task touch that map
/// only after the spawner has returned to the executor.
fn spawn_detached(future: impl std::future::Future<Output = ()> + 'static) {
    glommio::spawn_local(async move {
        futures_lite::future::yield_now().await;
        future.await
    })
    .detach();
}

/// The shard coordinating `group_id`, or NOT_COORDINATOR while the offsets
/// topic does not exist (the client's FindCoordinator creates it).
pub fn coordinator_shard(broker: &Broker, group_id: &str) -> Result<ShardId, i16> {
    let metadata = broker.metadata();
    let Some(topic) = metadata.topics.get(OFFSETS_TOPIC) else {
        return Err(code::NOT_COORDINATOR);
    };
    let partition = sluice_engine::shard::coordinator_partition(group_id, topic.partitions);
    Ok(broker.owner(OFFSETS_TOPIC, partition))
}

/// Sends a group request to `shard`; `None` if the shard is gone.
pub async fn call(
    broker: &Rc<Broker>,
    shard: ShardId,
    request: GroupRequest,
) -> Option<GroupResponse> {
    match broker.mesh.call(shard, ShardRequest::Group(request)).await {
        Some(ShardResponse::Group(response)) => Some(response),
        _ => None,
    }
}

/// Sends a request to the coordinator of `group_id`: the answer, or the
/// error code for every part of the request.
pub async fn route(
    broker: &Rc<Broker>,
    group_id: &str,
    request: GroupRequest,
) -> Result<GroupResponse, i16> {
    let shard = coordinator_shard(broker, group_id)?;
    call(broker, shard, request)
        .await
        .ok_or(code::COORDINATOR_NOT_AVAILABLE)
}

/// Positions (in a request) of groups, by coordinator shard.
pub type PerShard = BTreeMap<ShardId, Vec<usize>>;

/// Groups the request's positions by coordinator shard; groups that have no
/// coordinator (no offsets topic yet) come back with their error.
/// A group `allowed` refuses fails with GROUP_AUTHORIZATION_FAILED before
/// its coordinator is looked for.
pub fn split_by_shard(
    broker: &Broker,
    group_ids: &[String],
    allowed: impl Fn(&str) -> bool,
) -> (PerShard, Vec<(usize, i16)>) {
    let mut per_shard = PerShard::new();
    let mut failed = Vec::new();
    for (index, group_id) in group_ids.iter().enumerate() {
        if !allowed(group_id) {
            failed.push((index, code::GROUP_AUTHORIZATION_FAILED));
            continue;
        }
        match coordinator_shard(broker, group_id) {
            Ok(shard) => per_shard.entry(shard).or_default().push(index),
            Err(error_code) => failed.push((index, error_code)),
        }
    }
    (per_shard, failed)
}

/// Creates `__consumer_offsets` if it does not exist yet (through the
/// controller, like any topic) and returns its partition count.
pub async fn ensure_offsets_topic(broker: &Rc<Broker>) -> Result<i32, i16> {
    let groups = &broker.config.groups;
    broker
        .ensure_internal_topic(
            OFFSETS_TOPIC,
            groups.offsets_topic_partitions,
            groups.offsets_topic_replication_factor,
            None,
        )
        .await
}

/// Serves a group request on its coordinator shard.
pub async fn serve(broker: &Rc<Broker>, request: GroupRequest) -> GroupResponse {
    let groups = &broker.groups;
    match request {
        GroupRequest::Join {
            request,
            version,
            client_id,
        } => GroupResponse::Join(groups.join(broker, request, version, client_id).await),
        GroupRequest::Sync { request, version } => {
            GroupResponse::Sync(groups.sync(broker, request, version).await)
        }
        GroupRequest::Heartbeat { request } => {
            GroupResponse::Heartbeat(groups.heartbeat(broker, &request))
        }
        GroupRequest::Leave { request, version } => {
            GroupResponse::Leave(groups.leave(broker, request, version).await)
        }
        GroupRequest::OffsetCommit { request, version } => {
            GroupResponse::OffsetCommit(groups.commit(broker, request, version).await)
        }
        GroupRequest::OffsetFetch { groups: wanted } => {
            GroupResponse::OffsetFetch(groups.fetch(broker, wanted))
        }
        GroupRequest::OffsetDelete { request } => {
            GroupResponse::OffsetDelete(groups.delete_offsets(broker, request).await)
        }
        GroupRequest::Describe { groups: wanted } => {
            GroupResponse::Describe(groups.describe(broker, wanted))
        }
        GroupRequest::List => GroupResponse::List(groups.list()),
        GroupRequest::Delete { groups: wanted } => {
            GroupResponse::Delete(groups.delete_groups(broker, wanted).await)
        }
        GroupRequest::ConsumerHeartbeat {
            request,
            version,
            client_id,
        } => GroupResponse::ConsumerHeartbeat(
            groups
                .consumer_heartbeat(broker, *request, version, client_id)
                .await,
        ),
        GroupRequest::ConsumerDescribe { groups: wanted } => {
            GroupResponse::ConsumerDescribe(groups.consumer_describe(broker, wanted))
        }
        GroupRequest::TxnOffsetCommit { request, version } => {
            GroupResponse::OffsetCommit(groups.txn_commit(broker, request, version).await)
        }
        GroupRequest::TxnMarker {
            partition,
            producer_id,
            commit,
        } => {
            groups.txn_marker(partition, producer_id, commit);
            GroupResponse::Done
        }
    }
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            broker: RefCell::new(Weak::new()),
            partitions: RefCell::new(HashMap::new()),
            groups: RefCell::new(HashMap::new()),
            next_token: Cell::new(0),
            pending_txn: RefCell::new(HashMap::new()),
        }
    }

    /// The committed offsets of this shard's groups, for the consumer lag
    /// gauges: at most `limit` of them, and whether some were left out.
    pub fn committed_offsets(&self, limit: usize) -> (Vec<crate::metrics::CommittedOffset>, bool) {
        let groups = self.groups.borrow();
        let mut committed = Vec::new();
        for group in groups.values() {
            for ((topic, partition), value) in &group.offsets {
                if committed.len() == limit {
                    return (committed, true);
                }
                committed.push(crate::metrics::CommittedOffset {
                    group: group.id.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    offset: value.offset,
                });
            }
        }
        (committed, false)
    }

    /// Connects the coordinator to its broker and starts the periodic
    /// maintenance (offset expiry). Called once, by
    /// `Broker::new`.
    pub fn attach(&self, broker: Weak<Broker>) {
        *self.broker.borrow_mut() = broker.clone();
        let interval =
            Duration::from_millis(self.config.offsets_retention_check_interval_ms.max(1));
        spawn_detached(async move {
            loop {
                glommio::timer::sleep(interval).await;
                let Some(broker) = broker.upgrade() else {
                    return;
                };
                if broker.shutting_down.get() {
                    return;
                }
                broker.groups.expire_offsets(&broker).await;
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

    /// Follows a metadata change: starts loading offsets partitions this
    /// shard now owns, forgets those it no longer has.
    pub fn on_metadata(&self, metadata: &ClusterMetadata) {
        let Some(broker) = self.broker.borrow().upgrade() else {
            return;
        };
        let owned = broker.local_partitions(metadata, OFFSETS_TOPIC);
        let gone: Vec<i32> = self
            .partitions
            .borrow()
            .keys()
            .filter(|partition| !owned.contains(partition))
            .copied()
            .collect();
        for partition in gone {
            self.partitions.borrow_mut().remove(&partition);
            self.pending_txn
                .borrow_mut()
                .retain(|(pending_partition, _), _| *pending_partition != partition);
            // Dropping a group drops its waiters' senders: their requests
            // answer NOT_COORDINATOR.
            let dropped: Vec<Group> = {
                let mut groups = self.groups.borrow_mut();
                let ids: Vec<String> = groups
                    .values()
                    .filter(|group| group.partition == partition)
                    .map(|group| group.id.clone())
                    .collect();
                ids.iter().filter_map(|id| groups.remove(id)).collect()
            };
            drop(dropped);
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
                broker.groups.load_partition(&broker, partition).await;
            }
        });
    }

    /// The offsets partition of `group_id` if this shard coordinates it and
    /// has loaded it; else the error the client gets.
    fn check_partition(&self, broker: &Broker, group_id: &str) -> Result<i32, i16> {
        let metadata = broker.metadata();
        let Some(topic) = metadata.topics.get(OFFSETS_TOPIC) else {
            return Err(code::NOT_COORDINATOR);
        };
        let partition = sluice_engine::shard::coordinator_partition(group_id, topic.partitions);
        if broker.owner(OFFSETS_TOPIC, partition) != broker.shard {
            return Err(code::NOT_COORDINATOR);
        }
        let state = self.partitions.borrow().get(&partition).copied();
        match state {
            Some(Load::Loaded) => Ok(partition),
            Some(Load::Loading) => Err(code::COORDINATOR_LOAD_IN_PROGRESS),
            None if broker.log(OFFSETS_TOPIC, partition).is_some() => {
                // Opened but not noticed yet (metadata raced this request).
                self.start_load(partition);
                Err(code::COORDINATOR_LOAD_IN_PROGRESS)
            }
            None => Err(code::NOT_COORDINATOR),
        }
    }

    /// Replays an offsets partition from its log start and installs its
    /// groups. A read error is retried (the partition stays loading) rather
    /// than serving groups with offsets missing.
    async fn load_partition(&self, broker: &Rc<Broker>, partition: i32) {
        let started = Instant::now();
        loop {
            if broker.shutting_down.get()
                || self.partitions.borrow().get(&partition) != Some(&Load::Loading)
            {
                return;
            }
            match self.replay(broker, partition).await {
                Ok(replayed) => {
                    let (groups, records, pending) = replayed;
                    {
                        let mut pending_txn = self.pending_txn.borrow_mut();
                        for (producer_id, offsets) in pending {
                            pending_txn.insert((partition, producer_id), offsets);
                        }
                    }
                    let now = Instant::now();
                    let now_ms = now_ms();
                    let count = groups.len();
                    let mut installed = Vec::new();
                    let mut consumer_installed = Vec::new();
                    {
                        let mut map = self.groups.borrow_mut();
                        for (id, replayed) in groups {
                            // A group runs one protocol: when both kinds of
                            // records survived, the consumer ones are newer
                            // (conversion tombstones the classic record).
                            let classic = if replayed.consumer.is_some() {
                                None
                            } else {
                                replayed.classic
                            };
                            let mut group = Group::from_records(
                                id.clone(),
                                partition,
                                classic,
                                replayed.offsets,
                                now,
                                now_ms,
                                || self.token(),
                            );
                            for member in group.members.values() {
                                installed.push((id.clone(), member.id.clone(), member.timer));
                            }
                            if let Some(consumer) = replayed.consumer {
                                let consumer =
                                    consumer::ConsumerGroup::from_replay(consumer, now, || {
                                        self.token()
                                    });
                                for member in consumer.members.values() {
                                    consumer_installed.push((
                                        id.clone(),
                                        member.id.clone(),
                                        member.timer,
                                    ));
                                }
                                group.consumer = Some(consumer);
                                group.protocol_type = Some(CONSUMER_PROTOCOL_TYPE.to_string());
                                consumer::refresh_state(&mut group);
                            }
                            map.insert(id, group);
                        }
                    }
                    for (group_id, member_id, token) in installed {
                        self.schedule_session_timer(&group_id, &member_id, token);
                    }
                    for (group_id, member_id, token) in consumer_installed {
                        self.schedule_consumer_timer(&group_id, &member_id, token);
                    }
                    self.partitions.borrow_mut().insert(partition, Load::Loaded);
                    let elapsed_ms = started.elapsed().as_millis() as u64;
                    if records > 0 {
                        tracing::info!(
                            partition,
                            groups = count,
                            records,
                            elapsed_ms,
                            "loaded {OFFSETS_TOPIC} partition"
                        );
                    } else {
                        tracing::debug!(
                            partition,
                            elapsed_ms,
                            "loaded empty {OFFSETS_TOPIC} partition"
                        );
                    }
                    return;
                }
                Err(error) => {
                    tracing::error!(partition, %error, "replaying {OFFSETS_TOPIC} failed; retrying");
                    glommio::timer::sleep(Duration::from_millis(OFFSETS_LOAD_RETRY_MS)).await;
                }
            }
        }
    }

    /// Reads an offsets partition from its log start to its log end (see
    /// [`Broker::scan_batches`]) and folds its records into per-group state. Returns the groups and
    /// the number of records read.
    #[allow(clippy::type_complexity)]
    async fn replay(
        &self,
        broker: &Broker,
        partition: i32,
    ) -> Result<
        (
            HashMap<String, replay::Replayed>,
            u64,
            HashMap<i64, Vec<txn_offsets::PendingOffset>>,
        ),
        String,
    > {
        let mut state = replay::State::default();
        broker
            .scan_batches(OFFSETS_TOPIC, partition, OFFSETS_LOAD_READ_BYTES, |batch, position| {
                // Transaction markers: the pending offsets of the producer
                // are applied on commit and dropped on abort.
                if let Some(control) = sluice_engine::txn::parse_control_batch(&batch) {
                    let header = batch::BatchHeader::parse(&batch).ok();
                    if let Some(header) = header.filter(|header| header.base_offset >= position) {
                        state.end_txn(
                            header.producer_id,
                            control.control_type == sluice_engine::txn::ControlType::Commit,
                        );
                    }
                    return;
                }
                match records::parse_batch(batch) {
                    Ok((header, parsed)) => {
                        let producer = (header.is_transactional() && !header.is_control())
                            .then_some(header.producer_id);
                        for record in parsed
                            .into_iter()
                            .filter(|record| record.offset >= position)
                        {
                            match producer {
                                Some(producer_id) => state.hold(partition, producer_id, record),
                                None => state.apply(partition, record),
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(partition, %error, "skipping an unreadable {OFFSETS_TOPIC} batch")
                    }
                }
            })
            .await?;
        let pending = state.pending_offsets(partition);
        Ok((state.groups, state.records, pending))
    }

    /// Waits (bounded) while the group's offsets partition's write-behind
    /// is full, before a state change that will append; after a wait,
    /// checks again that this shard still coordinates the group, so that
    /// a request that waited through a resignation answers
    /// NOT_COORDINATOR instead of appending to a log it no longer leads.
    async fn wait_for_room(
        &self,
        broker: &Broker,
        group_id: &str,
        partition: i32,
    ) -> Result<(), i16> {
        if !broker
            .wait_for_coordinator_room(OFFSETS_TOPIC, partition)
            .await?
        {
            return Ok(());
        }
        match self.check_partition(broker, group_id)? {
            now if now == partition => Ok(()),
            _ => Err(code::NOT_COORDINATOR),
        }
    }

    /// Appends records to an offsets partition now (no await), returning
    /// the offset after the last one, for [`Self::wait_written`].
    fn append_now(
        &self,
        broker: &Broker,
        partition: i32,
        records: &[KeyedRecord],
    ) -> Result<i64, WriteError> {
        let log = broker
            .log(OFFSETS_TOPIC, partition)
            .ok_or(WriteError::NotCoordinator)?;
        let limit = log.config().max_message_bytes as usize;
        if records::batch_bytes_bound(records) > limit.max(batch::BATCH_HEADER_BYTES) {
            return Err(WriteError::TooLarge);
        }
        let bytes = records::build_batch(records, now_ms());
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
            .wait_internal_write(OFFSETS_TOPIC, partition, end, timeout)
            .await
            .map_err(WriteError::from)
    }

    /// Writes a group's metadata record as it is now and remembers it as
    /// what a restart will see. Returns the end offset to wait for.
    fn persist_group(&self, broker: &Broker, group: &mut Group) -> Result<i64, WriteError> {
        let value = group.to_value();
        let record = KeyedRecord {
            key: records::group_key(&group.id),
            value: Some(records::encode_group_value(&value)),
        };
        let end = self.append_now(broker, group.partition, &[record])?;
        group.persisted = Some(value);
        Ok(end)
    }

    // ---- timers ------------------------------------------------------

    /// Expires a member that has not been heard from within its session
    /// timeout. One task per member, sleeping until the deadline; a
    /// heartbeat just moves the deadline, which the task finds on waking.
    fn schedule_session_timer(&self, group_id: &str, member_id: &str, token: u64) {
        let weak = self.weak_broker();
        let group_id = group_id.to_string();
        let member_id = member_id.to_string();
        spawn_detached(async move {
            loop {
                let wait = {
                    let Some(broker) = weak.upgrade() else { return };
                    if broker.shutting_down.get() {
                        return;
                    }
                    let groups = broker.groups.groups.borrow();
                    let Some(member) = groups
                        .get(&group_id)
                        .and_then(|group| group.members.get(&member_id))
                    else {
                        return;
                    };
                    if member.timer != token {
                        return;
                    }
                    let session = Duration::from_millis(member.session_timeout_ms.max(0) as u64);
                    if member.is_waiting() {
                        Some(session)
                    } else {
                        (member.last_heartbeat + session).checked_duration_since(Instant::now())
                    }
                };
                match wait {
                    Some(wait) if !wait.is_zero() => glommio::timer::sleep(wait).await,
                    _ => {
                        let Some(broker) = weak.upgrade() else { return };
                        broker
                            .groups
                            .expire_member(&broker, &group_id, &member_id, token);
                        return;
                    }
                }
            }
        });
    }

    /// Forgets a KIP-394 pending member that did not join within its
    /// session timeout.
    fn schedule_pending_timer(
        &self,
        group_id: &str,
        member_id: &str,
        token: u64,
        session: Duration,
    ) {
        let weak = self.weak_broker();
        let group_id = group_id.to_string();
        let member_id = member_id.to_string();
        spawn_detached(async move {
            glommio::timer::sleep(session).await;
            let Some(broker) = weak.upgrade() else { return };
            broker
                .groups
                .expire_pending_member(&broker, &group_id, &member_id, token);
        });
    }

    /// Completes a rebalance at its deadline (`rebalance` names it, so a
    /// later rebalance's state is left alone).
    fn schedule_join_timer(
        &self,
        group_id: &str,
        rebalance: u64,
        delay: Duration,
        initial_remaining: Option<Duration>,
    ) {
        let weak = self.weak_broker();
        let group_id = group_id.to_string();
        spawn_detached(async move {
            glommio::timer::sleep(delay).await;
            let Some(broker) = weak.upgrade() else { return };
            broker
                .groups
                .on_join_deadline(&broker, &group_id, rebalance, initial_remaining);
        });
    }

    /// Removes members that got a join response but never synced, once the
    /// rebalance timeout has passed.
    fn schedule_sync_timer(&self, group_id: &str, generation: i32, delay: Duration) {
        let weak = self.weak_broker();
        let group_id = group_id.to_string();
        spawn_detached(async move {
            glommio::timer::sleep(delay).await;
            let Some(broker) = weak.upgrade() else { return };
            broker
                .groups
                .on_sync_deadline(&broker, &group_id, generation);
        });
    }
}

/// Folding replayed records into group state.
mod replay {
    use std::collections::{BTreeMap, HashMap};

    use super::consumer::ConsumerReplay;
    use super::consumer_records::{self as crecords, ConsumerKey};
    use super::records::{self, GroupValue, OffsetValue, ParsedRecord, RecordKey};

    /// A group as its records describe it: classic metadata, consumer-group
    /// records, offsets.
    #[derive(Default)]
    pub struct Replayed {
        pub classic: Option<GroupValue>,
        pub offsets: BTreeMap<(String, i32), OffsetValue>,
        pub consumer: Option<ConsumerReplay>,
    }

    impl Replayed {
        fn is_empty(&self) -> bool {
            self.classic.is_none() && self.offsets.is_empty() && self.consumer.is_none()
        }
    }

    #[derive(Default)]
    pub struct State {
        pub groups: HashMap<String, Replayed>,
        pub records: u64,
        /// Records of transactional batches by producer, until a marker.
        pub pending: HashMap<i64, Vec<(i32, ParsedRecord)>>,
    }

    impl State {
        /// Drops a group whose records are all gone.
        fn forget_if_empty(&mut self, group: &str) {
            if self.groups.get(group).is_some_and(Replayed::is_empty) {
                self.groups.remove(group);
            }
        }

        /// Holds a record of a transactional batch until its marker.
        pub fn hold(&mut self, partition: i32, producer_id: i64, record: ParsedRecord) {
            self.pending
                .entry(producer_id)
                .or_default()
                .push((partition, record));
        }

        /// A marker of `producer_id`: its held records apply or vanish.
        pub fn end_txn(&mut self, producer_id: i64, commit: bool) {
            self.records += 1;
            if let Some(held) = self.pending.remove(&producer_id) {
                if commit {
                    for (partition, record) in held {
                        self.apply(partition, record);
                    }
                }
            }
        }

        /// The offsets of transactions the log leaves unfinished.
        pub fn pending_offsets(
            &mut self,
            partition: i32,
        ) -> HashMap<i64, Vec<super::txn_offsets::PendingOffset>> {
            let mut out: HashMap<i64, Vec<super::txn_offsets::PendingOffset>> = HashMap::new();
            for (producer_id, held) in self.pending.drain() {
                for (_, record) in held {
                    self.records += 1;
                    let (Some(key), Some(value)) = (record.key, record.value) else {
                        continue;
                    };
                    let Ok(Some(RecordKey::Offset {
                        group,
                        topic,
                        partition: topic_partition,
                    })) = records::decode_key(key)
                    else {
                        continue;
                    };
                    match records::decode_offset_value(value) {
                        Ok(value) => out.entry(producer_id).or_default().push(
                            super::txn_offsets::PendingOffset {
                                group,
                                topic,
                                partition: topic_partition,
                                value,
                            },
                        ),
                        Err(error) => {
                            tracing::warn!(partition, %error, "skipping an unreadable transactional offset commit")
                        }
                    }
                }
            }
            out
        }

        /// Applies one record: later records win, tombstones delete.
        pub fn apply(&mut self, partition: i32, record: ParsedRecord) {
            self.records += 1;
            let Some(key) = record.key else {
                return;
            };
            let key = match records::decode_key(key) {
                Ok(Some(key)) => key,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(partition, offset = record.offset, %error, "skipping a record with an unreadable key");
                    return;
                }
            };
            match key {
                RecordKey::Offset {
                    group,
                    topic,
                    partition: topic_partition,
                } => match record.value {
                    Some(value) => match records::decode_offset_value(value) {
                        Ok(value) => {
                            self.groups
                                .entry(group)
                                .or_default()
                                .offsets
                                .insert((topic, topic_partition), value);
                        }
                        Err(error) => {
                            tracing::warn!(partition, offset = record.offset, %error, "skipping an unreadable offset commit")
                        }
                    },
                    None => {
                        if let Some(entry) = self.groups.get_mut(&group) {
                            entry.offsets.remove(&(topic, topic_partition));
                        }
                        self.forget_if_empty(&group);
                    }
                },
                RecordKey::Group { group } => match record.value {
                    Some(value) => match records::decode_group_value(value) {
                        Ok(value) => self.groups.entry(group).or_default().classic = Some(value),
                        Err(error) => {
                            tracing::warn!(partition, offset = record.offset, %error, "skipping unreadable group metadata")
                        }
                    },
                    None => {
                        if let Some(entry) = self.groups.get_mut(&group) {
                            entry.classic = None;
                        }
                        self.forget_if_empty(&group);
                    }
                },
                RecordKey::Consumer { group, key } => {
                    if let Err(error) = self.apply_consumer(&group, key, record.value) {
                        tracing::warn!(partition, offset = record.offset, %error, "skipping an unreadable consumer group record");
                    }
                    self.forget_if_empty(&group);
                }
            }
        }

        fn apply_consumer(
            &mut self,
            group: &str,
            key: ConsumerKey,
            value: Option<bytes::Bytes>,
        ) -> Result<(), records::RecordError> {
            let entry = self.groups.entry(group.to_string()).or_default();
            let Some(value) = value else {
                // The group epoch record's tombstone ends the group (Kafka
                // writes it last on deletion).
                let Some(consumer) = entry.consumer.as_mut() else {
                    return Ok(());
                };
                match key {
                    ConsumerKey::Metadata => entry.consumer = None,
                    ConsumerKey::PartitionMetadata => consumer.topics.clear(),
                    ConsumerKey::Member(member) => {
                        consumer.members.remove(&member);
                    }
                    ConsumerKey::TargetMetadata => {}
                    ConsumerKey::TargetMember(member) => {
                        consumer.target.remove(&member);
                    }
                    ConsumerKey::CurrentAssignment(member) => {
                        consumer.current.remove(&member);
                    }
                }
                return Ok(());
            };
            let consumer = entry.consumer.get_or_insert_with(ConsumerReplay::default);
            match key {
                ConsumerKey::Metadata => consumer.epoch = crecords::decode_metadata(value)?,
                ConsumerKey::PartitionMetadata => {
                    consumer.topics = crecords::decode_partition_metadata(value)?
                }
                ConsumerKey::Member(member) => {
                    consumer
                        .members
                        .insert(member, crecords::decode_member(value)?);
                }
                ConsumerKey::TargetMetadata => {
                    consumer.assignment_epoch = crecords::decode_target_metadata(value)?
                }
                ConsumerKey::TargetMember(member) => {
                    consumer
                        .target
                        .insert(member, crecords::decode_target_member(value)?);
                }
                ConsumerKey::CurrentAssignment(member) => {
                    consumer
                        .current
                        .insert(member, crecords::decode_current(value)?);
                }
            }
            Ok(())
        }
    }
}
