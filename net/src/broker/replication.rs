//! Partition replication, as Kafka does it: followers pull the leader's
//! batches with Fetch (replica id set) and append them verbatim; the leader
//! tracks each follower's log end from its fetches, advances the high
//! watermark to the smallest log end in the ISR, and asks the controller
//! (AlterPartition, epoch-checked) to take out followers that fall behind
//! for `replica.lag.time.max.ms` and to take back those that caught up.
//!
//! Everything here runs on the shard that owns the partition. A shard runs
//! one fetcher task per remote leader: the partitions it follows from that
//! leader are fetched together, one request at a time, over one connection.
//! Before a follower fetches from a leader at a new leader epoch it asks the
//! leader where its own last epoch ends (OffsetForLeaderEpoch) and cuts off
//! whatever its log holds beyond that: a suffix the old leader wrote but
//! never committed.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::batch::{self, BatchHeader};
use sluice_engine::{ClusterMetadata, PartitionState};

use super::{Broker, ControllerRequest, IsrChange, Log, PartitionKey, ShardResponse};
use crate::constants::{
    ISR_CHANGES_PER_REQUEST_MAX, ISR_CHECK_INTERVAL, REPLICA_FETCH_BACKOFF,
    REPLICA_FETCH_PARTITION_BYTES, REPLICA_FETCH_RESPONSE_BYTES, REPLICA_FETCH_WAIT_MS,
};
use crate::errors::code;
use crate::glommio_client::connection::Connection;
use crate::glommio_client::protocol::{
    decode_fetch, decode_offset_for_leader_epoch, FetchPartitionData,
};

/// A write to be acknowledged once durable here and held by the in-sync
/// replicas: its partition, its log, and the offset past it.
pub(crate) struct DurableWrite {
    pub key: PartitionKey,
    pub log: Rc<Log>,
    pub end: i64,
}

/// Why an acks=all write (or a coordinator's write) was not acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AckError {
    /// This broker no longer leads the partition.
    NotLeader,
    /// The local fdatasync failed.
    Storage(String),
    /// What it was still waiting for at the deadline.
    TimedOut(&'static str),
    /// Written and replicated, but the ISR shrank below the minimum.
    NotEnoughReplicas { isr: usize, min: usize },
}

impl AckError {
    /// The Produce error code (Kafka's answers for acks=all).
    pub(crate) fn code(&self) -> i16 {
        match self {
            AckError::NotLeader => code::NOT_LEADER_OR_FOLLOWER,
            AckError::Storage(_) => code::KAFKA_STORAGE_ERROR,
            AckError::TimedOut(_) => code::REQUEST_TIMED_OUT,
            AckError::NotEnoughReplicas { .. } => code::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        }
    }
}

impl std::fmt::Display for AckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AckError::NotLeader => write!(f, "leadership moved before the write was replicated"),
            AckError::Storage(error) => write!(f, "fsync failed: {error}"),
            AckError::TimedOut(what) => write!(f, "timed out waiting for {what}"),
            AckError::NotEnoughReplicas { isr, min } => write!(
                f,
                "written, but the ISR shrank to {isr}, below min.insync.replicas={min}"
            ),
        }
    }
}

/// Bytes of a batch's base offset and length fields, which say how long
/// the batch is.
const LOG_OVERHEAD: usize = 12;
/// Requests a follower keeps in flight to one leader: one fetch at a time
/// keeps its appends in offset order.
const REPLICA_IN_FLIGHT: usize = 1;

/// What a leader knows of one follower.
#[derive(Clone, Copy, Debug)]
struct Progress {
    /// The follower's log end offset, from its last fetch (-1: not yet
    /// heard from under this leadership).
    log_end: i64,
    /// When the follower last had everything the leader had.
    caught_up: Instant,
    last_fetch: Instant,
    /// The leader's log end at the follower's last fetch.
    leader_end_at_last_fetch: i64,
}

/// A follower not yet heard from under this leadership.
fn unheard(now: Instant) -> Progress {
    Progress {
        log_end: -1,
        caught_up: now,
        last_fetch: now,
        leader_end_at_last_fetch: -1,
    }
}

/// An ISR change sent to the controller whose outcome this leader does
/// not know yet.
#[derive(Clone, Debug)]
struct PendingIsr {
    isr: Vec<i32>,
    /// The partition epoch it was sent at: a partition state with a newer
    /// one has decided it, one way or the other (the controller takes a
    /// change only at the epoch it was made against).
    partition_epoch: i32,
    /// No answer came back (or an ambiguous one): the controller may not
    /// have seen it, so it is sent again.
    resend: bool,
}

/// A partition this node leads that has other replicas.
struct Led {
    state: PartitionState,
    followers: HashMap<i32, Progress>,
    /// An AlterPartition for it is on its way to the controller.
    altering: bool,
    /// The last ISR change asked for, until its outcome is known. While it
    /// is, the high watermark counts the members of both ISRs (Kafka's
    /// "maximal ISR"): a follower being added may already be in the
    /// controller's ISR, and so electable, and must not lack anything the
    /// high watermark covers.
    pending: Option<PendingIsr>,
    /// The log end when this leadership began: until the high watermark
    /// reaches it, the high watermark this node inherited as a follower
    /// may be behind what the previous leader acknowledged.
    epoch_start: i64,
}

/// A partition this node follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Followed {
    leader: i32,
    leader_epoch: i32,
    /// Truncated to the leader's log at this leader epoch: it may fetch.
    truncated: bool,
}

/// This shard's replication state.
#[derive(Default)]
pub(super) struct Replication {
    led: std::cell::RefCell<HashMap<PartitionKey, Led>>,
    followed: std::cell::RefCell<HashMap<PartitionKey, Followed>>,
    /// Leaders a fetcher task of this shard is fetching from.
    fetchers: std::cell::RefCell<HashSet<i32>>,
    /// Led partitions whose pending ISR change waits for the next
    /// AlterPartition request.
    isr_queue: std::cell::RefCell<HashSet<PartitionKey>>,
    /// Wakes the ISR change sender.
    isr_signal: sluice_engine::notify::Signal,
}

/// How a follower's fetch went, for the leader's bookkeeping.
pub(super) enum FollowerFetch {
    Accepted,
    Refused(i16),
}

impl Broker {
    /// Brings this shard's replication roles in line with `metadata`, after
    /// its logs were opened: leaders start tracking their followers, and
    /// followers get a fetcher for their leader. Waiters on a log whose
    /// role changed are woken (an acks=all produce on a deposed leader
    /// must answer NOT_LEADER_OR_FOLLOWER, not wait for its timeout).
    pub(super) fn apply_replication(&self, metadata: &ClusterMetadata) {
        let node = self.config.node_id;
        let now = Instant::now();
        let mut led_now: HashSet<PartitionKey> = HashSet::new();
        let mut followed_now: HashSet<PartitionKey> = HashSet::new();
        let mut wanted_fetchers: HashSet<i32> = HashSet::new();
        let logs: Vec<(PartitionKey, Rc<Log>)> = self
            .logs
            .borrow()
            .iter()
            .map(|(topic, partition, log)| ((topic.to_string(), partition), Rc::clone(log)))
            .collect();
        for (key, log) in logs {
            let Some(state) = metadata.partition(&key.0, key.1) else {
                continue;
            };
            if state.leader == node {
                led_now.insert(key.clone());
                if state.replicas.len() <= 1 {
                    // Alone (perhaps since a reassignment): nothing to track.
                    self.replication.led.borrow_mut().remove(&key);
                    log.follow_log_end();
                    continue;
                }
                let became_leader = {
                    let mut led = self.replication.led.borrow_mut();
                    match led.get_mut(&key) {
                        Some(entry) if entry.state.leader_epoch == state.leader_epoch => {
                            if state.partition_epoch >= entry.state.partition_epoch {
                                entry.state = state.clone();
                                if entry.pending.as_ref().is_some_and(|pending| {
                                    pending.partition_epoch < state.partition_epoch
                                }) {
                                    entry.pending = None;
                                }
                                // A reassignment adds and removes followers
                                // under the same leadership.
                                entry.followers.retain(|id, _| state.replicas.contains(id));
                                for id in state.replicas.iter().filter(|id| **id != node) {
                                    entry.followers.entry(*id).or_insert_with(|| unheard(now));
                                }
                            }
                            false
                        }
                        _ => {
                            let followers = state
                                .replicas
                                .iter()
                                .filter(|id| **id != node)
                                .map(|id| (*id, unheard(now)))
                                .collect();
                            led.insert(
                                key.clone(),
                                Led {
                                    state: state.clone(),
                                    followers,
                                    altering: false,
                                    pending: None,
                                    epoch_start: log.offsets().leo,
                                },
                            );
                            true
                        }
                    }
                };
                if became_leader {
                    tracing::info!(topic = %key.0, partition = key.1, epoch = state.leader_epoch, "leading");
                    // The high watermark stays where it was (a follower's is
                    // at most the old leader's) until the ISR has more.
                    let hw = log.offsets().hw;
                    log.set_high_watermark(hw);
                }
                self.update_high_watermark(&key, &log);
            } else if state.replicas.contains(&node) {
                followed_now.insert(key.clone());
                let follow = Followed {
                    leader: state.leader,
                    leader_epoch: state.leader_epoch,
                    truncated: false,
                };
                let changed = {
                    let mut followed = self.replication.followed.borrow_mut();
                    match followed.get(&key) {
                        Some(known)
                            if known.leader == follow.leader
                                && known.leader_epoch == follow.leader_epoch =>
                        {
                            false
                        }
                        _ => {
                            followed.insert(key.clone(), follow);
                            true
                        }
                    }
                };
                if changed {
                    tracing::info!(topic = %key.0, partition = key.1, leader = state.leader, epoch = state.leader_epoch, "following");
                    // A follower's visible end is what its leader says.
                    let hw = log.offsets().hw;
                    log.set_high_watermark(hw);
                    log.data_signal().notify();
                }
                if state.leader >= 0 {
                    wanted_fetchers.insert(state.leader);
                }
            }
        }
        self.replication.led.borrow_mut().retain(|key, _| {
            let keep = led_now.contains(key);
            if !keep {
                if let Some(log) = self.logs.borrow().get(&key.0, key.1) {
                    log.data_signal().notify();
                }
            }
            keep
        });
        self.replication
            .followed
            .borrow_mut()
            .retain(|key, _| followed_now.contains(key));
        for leader in wanted_fetchers {
            let started = self.replication.fetchers.borrow_mut().insert(leader);
            if started {
                if let Some(broker) = self.this.upgrade() {
                    glommio::spawn_local(broker.run_fetcher(leader)).detach();
                }
            }
        }
    }

    /// Whether this node leads the partition (a partition without a
    /// recorded state is this node's alone).
    pub(super) fn leads(&self, topic: &str, partition: i32) -> bool {
        self.metadata
            .borrow()
            .partition(topic, partition)
            .is_none_or(|state| state.leader == self.config.node_id)
    }

    /// Whether this node leads the partition and its high watermark has not
    /// yet reached the log end its leadership began at (Kafka's KIP-207):
    /// the high watermark it inherited may be behind what the previous
    /// leader acknowledged, so offsets are not answered from it until the
    /// followers have fetched past that point.
    pub(super) fn high_watermark_behind_epoch_start(
        &self,
        topic: &str,
        partition: i32,
        hw: i64,
    ) -> bool {
        self.replication
            .led
            .borrow()
            .get(&(topic.to_string(), partition))
            .is_some_and(|led| hw < led.epoch_start)
    }

    /// The ISR size and the `min.insync.replicas` an acks=all write to this
    /// partition needs (the topic's setting, else the broker's).
    pub(super) fn insync_replicas(&self, topic: &str, partition: i32) -> (usize, usize) {
        let metadata = self.metadata.borrow();
        let isr = {
            let led = self.replication.led.borrow();
            match led.get(&(topic.to_string(), partition)) {
                Some(entry) => entry.state.isr.len(),
                None => metadata
                    .partition(topic, partition)
                    .map_or(1, |state| state.isr.len()),
            }
        };
        let min = metadata
            .topics
            .get(topic)
            .and_then(|meta| meta.configs.get("min.insync.replicas"))
            .and_then(|value| value.parse::<usize>().ok())
            .unwrap_or(self.config.cluster.min_insync_replicas.max(1) as usize);
        (isr, min)
    }

    /// A coordinator's write to its internal partition (offsets, group or
    /// transaction state), acknowledged as an acks=all write within
    /// `timeout`; NotLeader if this broker does not lead the partition.
    pub(crate) async fn wait_internal_write(
        &self,
        topic: &str,
        partition: i32,
        end: i64,
        timeout: Duration,
    ) -> Result<(), AckError> {
        let log = self.log(topic, partition).ok_or(AckError::NotLeader)?;
        let key = (topic.to_string(), partition);
        self.wait_acknowledged(&key, &log, end, Instant::now() + timeout)
            .await
    }

    /// acks=all after the local append is durable: waits until the high
    /// watermark passes `end` (every ISR member has the batch). Fails if
    /// leadership moves first, at `deadline`, and if the ISR shrank below
    /// `min.insync.replicas` meanwhile (Kafka's answers, see [`AckError`]).
    async fn wait_replicated(
        &self,
        key: &PartitionKey,
        log: &Rc<Log>,
        end: i64,
        deadline: Instant,
    ) -> Result<(), AckError> {
        let outcome = log.data_signal().wait_for(|| {
            if !self.leads(&key.0, key.1) {
                Some(false)
            } else {
                (log.offsets().hw >= end).then_some(true)
            }
        });
        let wait = deadline.saturating_duration_since(Instant::now());
        match glommio::timer::timeout(wait, async { Ok(outcome.await) }).await {
            Ok(true) => {
                let (isr, min) = self.insync_replicas(&key.0, key.1);
                if isr < min {
                    return Err(AckError::NotEnoughReplicas { isr, min });
                }
                Ok(())
            }
            Ok(false) => Err(AckError::NotLeader),
            Err(_) => Err(AckError::TimedOut("the in-sync replicas")),
        }
    }

    /// Waits until everything before `end` in a led partition is durable
    /// here and held by every in-sync replica: when an acks=all write may
    /// be answered, and every coordinator write too (Kafka appends offset
    /// commits, group and transaction state and markers with acks=all).
    pub(crate) async fn wait_acknowledged(
        &self,
        key: &PartitionKey,
        log: &Rc<Log>,
        end: i64,
        deadline: Instant,
    ) -> Result<(), AckError> {
        let durable = log.wait_durable(end);
        let wait = deadline.saturating_duration_since(Instant::now());
        match glommio::timer::timeout(wait, async { Ok(durable.await) }).await {
            Ok(Ok(())) => self.wait_replicated(key, log, end, deadline).await,
            Ok(Err(error)) => Err(AckError::Storage(error.to_string())),
            Err(_) => Err(AckError::TimedOut("fsync")),
        }
    }

    /// [`Broker::wait_acknowledged`] for many writes, waited for together
    /// `DURABLE_WAITS_TOGETHER_MAX` at a time; each one's result, in order.
    pub(crate) async fn wait_all_acknowledged(
        &self,
        writes: &[DurableWrite],
        deadline: Instant,
    ) -> Vec<Result<(), AckError>> {
        let mut results = Vec::with_capacity(writes.len());
        for together in writes.chunks(crate::constants::DURABLE_WAITS_TOGETHER_MAX) {
            let waits = together
                .iter()
                .map(|write| self.wait_acknowledged(&write.key, &write.log, write.end, deadline))
                .collect();
            results.extend(super::futures_lite_join_all(waits).await);
        }
        results
    }

    /// Records a follower's fetch at `fetch_offset` (its log end) on the
    /// leader, moves the high watermark, and asks for the follower's return
    /// to the ISR once it has caught up.
    pub(super) fn record_follower_fetch(
        &self,
        topic: &str,
        partition: i32,
        replica: i32,
        fetch_offset: i64,
        log: &Rc<Log>,
    ) -> FollowerFetch {
        let key = (topic.to_string(), partition);
        let now = Instant::now();
        let offsets = log.offsets();
        let expand = {
            let mut led = self.replication.led.borrow_mut();
            let Some(entry) = led.get_mut(&key) else {
                return FollowerFetch::Refused(code::NOT_LEADER_OR_FOLLOWER);
            };
            let Some(progress) = entry.followers.get_mut(&replica) else {
                return FollowerFetch::Refused(code::NOT_LEADER_OR_FOLLOWER);
            };
            if fetch_offset > offsets.leo || fetch_offset < offsets.log_start {
                return FollowerFetch::Refused(code::OFFSET_OUT_OF_RANGE);
            }
            if fetch_offset >= offsets.leo {
                progress.caught_up = now;
            } else if fetch_offset >= progress.leader_end_at_last_fetch {
                progress.caught_up = progress.caught_up.max(progress.last_fetch);
            }
            progress.log_end = fetch_offset;
            progress.last_fetch = now;
            progress.leader_end_at_last_fetch = offsets.leo;
            // Kafka's condition to rejoin: the follower holds everything
            // committed and everything of the current leader epoch.
            let epoch_start = log
                .leader_epochs()
                .last()
                .map_or(offsets.log_start, |(_, start)| *start);
            !entry.state.isr.contains(&replica)
                && !entry.altering
                && entry.pending.is_none()
                && fetch_offset >= offsets.hw
                && fetch_offset >= epoch_start
        };
        self.update_high_watermark(&key, log);
        if expand {
            self.request_isr_change(key, |isr| isr.push(replica));
        }
        FollowerFetch::Accepted
    }

    /// The high watermark of a led partition: the smallest log end in the
    /// ISR (the leader's own included), never moving back. A leader alone
    /// in its ISR lets it follow its log end.
    fn update_high_watermark(&self, key: &PartitionKey, log: &Rc<Log>) {
        let node = self.config.node_id;
        let led = self.replication.led.borrow();
        let Some(entry) = led.get(key) else {
            return;
        };
        let offsets = log.offsets();
        let pending = entry.pending.as_ref().map(|pending| pending.isr.as_slice());
        let wanted = high_watermark(node, offsets.leo, &entry.state.isr, pending, |id| {
            entry.followers.get(&id).map(|progress| progress.log_end)
        });
        drop(led);
        match wanted {
            Watermark::FollowsLogEnd => log.follow_log_end(),
            Watermark::At(hw) if hw > offsets.hw => log.set_high_watermark(hw),
            // The ISR has other members again (or is about to): the high
            // watermark stops following the log end where it is, and moves
            // on only as they fetch. Left following it, a leader that had
            // been alone in its ISR went on committing, and answering
            // acks=all for, what only it held, and the next leader lacked
            // acknowledged records (the fault harness: a leader that had
            // been alone stalled after its followers had rejoined; the new
            // leader cut 231 records from it, acknowledged ones among them,
            // and every idempotent producer then failed with
            // OUT_OF_ORDER_SEQUENCE_NUMBER).
            Watermark::At(_) | Watermark::Unknown if log.high_watermark_follows_log_end() => {
                log.set_high_watermark(offsets.hw);
            }
            Watermark::At(_) | Watermark::Unknown => {}
        }
    }

    /// Sends the controller an ISR change made by `change` to the current
    /// ISR, unless one is already on its way; the answer (or the metadata
    /// that records it) becomes the partition's state.
    fn request_isr_change(&self, key: PartitionKey, change: impl FnOnce(&mut Vec<i32>)) {
        {
            let mut led = self.replication.led.borrow_mut();
            let Some(entry) = led.get_mut(&key) else {
                return;
            };
            if entry.altering || entry.pending.is_some() {
                return;
            }
            let mut isr = entry.state.isr.clone();
            change(&mut isr);
            if isr == entry.state.isr {
                return;
            }
            entry.pending = Some(PendingIsr {
                isr,
                partition_epoch: entry.state.partition_epoch,
                resend: false,
            });
        }
        // Counts the new members from now on.
        if let Some(log) = self.logs.borrow().get(&key.0, key.1) {
            self.update_high_watermark(&key, log);
        }
        self.send_isr_change(key);
    }

    /// Queues the partition's pending ISR change for the controller: this
    /// shard's changes go together in one AlterPartition request, one
    /// request at a time (Kafka's brokers batch theirs the same way), so
    /// thousands of partitions changing at once cost the controller a few
    /// metadata writes rather than one each.
    fn send_isr_change(&self, key: PartitionKey) {
        self.replication.isr_queue.borrow_mut().insert(key);
        self.replication.isr_signal.notify();
    }

    /// Sends this shard's queued ISR changes to the controller, at most
    /// [`ISR_CHANGES_PER_REQUEST_MAX`] in one request, and takes in the
    /// answers; runs until shutdown.
    async fn run_isr_sender(self: Rc<Self>) {
        loop {
            let queue = Rc::clone(&self);
            self.replication
                .isr_signal
                .wait_for(move || {
                    (queue.shutting_down.get() || !queue.replication.isr_queue.borrow().is_empty())
                        .then_some(())
                })
                .await;
            if self.shutting_down.get() {
                return;
            }
            let keys: Vec<PartitionKey> = {
                let mut queue = self.replication.isr_queue.borrow_mut();
                let keys: Vec<PartitionKey> = queue
                    .iter()
                    .take(ISR_CHANGES_PER_REQUEST_MAX)
                    .cloned()
                    .collect();
                for key in &keys {
                    queue.remove(key);
                }
                keys
            };
            let mut sent = Vec::with_capacity(keys.len());
            let mut changes = Vec::with_capacity(keys.len());
            {
                let mut led = self.replication.led.borrow_mut();
                for key in keys {
                    let Some(entry) = led.get_mut(&key) else {
                        continue;
                    };
                    let Some(pending) = entry.pending.as_mut().filter(|_| !entry.altering) else {
                        continue;
                    };
                    pending.resend = false;
                    entry.altering = true;
                    changes.push(IsrChange {
                        topic: key.0.clone(),
                        partition: key.1,
                        leader: self.config.node_id,
                        leader_epoch: entry.state.leader_epoch,
                        partition_epoch: pending.partition_epoch,
                        isr: pending.isr.clone(),
                    });
                    sent.push(key);
                }
            }
            if changes.is_empty() {
                continue;
            }
            let count = changes.len();
            let sent_at = Instant::now();
            let answer = self
                .controller_call(ControllerRequest::AlterPartitions(changes))
                .await;
            tracing::debug!(
                changes = count,
                answered_ms = sent_at.elapsed().as_millis() as u64,
                "ISR changes sent to the controller"
            );
            let outcomes: Vec<Option<Result<PartitionState, i16>>> = match answer {
                Some(ShardResponse::Partitions(outcomes)) if outcomes.len() == count => {
                    outcomes.into_iter().map(Some).collect()
                }
                other => {
                    tracing::debug!(changes = count, answer = ?other.map(|_| ()), "ISR changes got no answer");
                    vec![None; count]
                }
            };
            for (key, outcome) in sent.into_iter().zip(outcomes) {
                self.take_isr_answer(&key, outcome);
            }
        }
    }

    /// Takes in the controller's answer to one partition's ISR change:
    /// `None` when none came.
    fn take_isr_answer(&self, key: &PartitionKey, answer: Option<Result<PartitionState, i16>>) {
        let log = self.logs.borrow().get(&key.0, key.1).cloned();
        {
            let mut led = self.replication.led.borrow_mut();
            let Some(entry) = led.get_mut(key) else {
                return;
            };
            entry.altering = false;
            match answer {
                Some(Ok(state)) => {
                    // The controller's ISR now (the change made, or made
                    // already): nothing is pending.
                    if state.leader_epoch == entry.state.leader_epoch
                        && state.partition_epoch > entry.state.partition_epoch
                    {
                        entry.state = state;
                    }
                    entry.pending = None;
                }
                Some(Err(
                    code::INELIGIBLE_REPLICA
                    | code::INVALID_REQUEST
                    | code::UNKNOWN_TOPIC_OR_PARTITION,
                )) => {
                    // Refused before anything was written.
                    tracing::debug!(topic = %key.0, partition = key.1, "ISR change refused");
                    entry.pending = None;
                }
                Some(Err(
                    error_code @ (code::FENCED_LEADER_EPOCH
                    | code::INVALID_UPDATE_VERSION
                    | code::NOT_LEADER_OR_FOLLOWER),
                )) => {
                    // The partition changed meanwhile (perhaps by this very
                    // change, its answer lost): the metadata that shows the
                    // change decides it.
                    tracing::debug!(topic = %key.0, partition = key.1, error_code, "ISR change refused: the partition changed meanwhile");
                }
                other => {
                    // No answer, or the controller could not be reached or
                    // could not write: it may or may not have taken the
                    // change. Sent again by the next ISR check.
                    tracing::debug!(topic = %key.0, partition = key.1, answer = ?other, "ISR change got no clear answer; sending it again");
                    if let Some(pending) = entry.pending.as_mut() {
                        pending.resend = true;
                    }
                }
            }
        }
        if let Some(log) = log {
            self.update_high_watermark(key, &log);
            // acks=all waiters re-check the ISR against min.insync.
            log.data_signal().notify();
        }
    }

    /// Takes out of the ISR, through the controller, every follower that
    /// has not caught up with its leader for `replica.lag.time.max.ms`.
    pub async fn run_isr_checks(self: Rc<Self>) {
        glommio::spawn_local(Rc::clone(&self).run_isr_sender()).detach();
        let lag = Duration::from_millis(self.config.cluster.replica_lag_time_max_ms);
        let node = self.config.node_id;
        loop {
            glommio::timer::sleep(ISR_CHECK_INTERVAL).await;
            if self.shutting_down.get() {
                // The sender stops too.
                self.replication.isr_signal.notify();
                return;
            }
            let now = Instant::now();
            let resend: Vec<PartitionKey> = self
                .replication
                .led
                .borrow()
                .iter()
                .filter(|(_, entry)| {
                    !entry.altering && entry.pending.as_ref().is_some_and(|pending| pending.resend)
                })
                .map(|(key, _)| key.clone())
                .collect();
            for key in resend {
                self.send_isr_change(key);
            }
            let lagging: Vec<(PartitionKey, Vec<i32>)> = self
                .replication
                .led
                .borrow()
                .iter()
                .filter(|(_, entry)| !entry.altering && entry.pending.is_none())
                .filter_map(|(key, entry)| {
                    let out: Vec<i32> = entry
                        .state
                        .isr
                        .iter()
                        .copied()
                        .filter(|id| *id != node)
                        .filter(|id| {
                            entry.followers.get(id).is_some_and(|progress| {
                                now.duration_since(progress.caught_up) > lag
                            })
                        })
                        .collect();
                    (!out.is_empty()).then(|| (key.clone(), out))
                })
                .collect();
            for (key, out) in lagging {
                tracing::info!(topic = %key.0, partition = key.1, followers = ?out, "followers fell behind; shrinking the ISR");
                self.request_isr_change(key, |isr| isr.retain(|id| !out.contains(id)));
            }
        }
    }

    /// The partitions this shard follows from `leader`, with their logs.
    fn followed_from(&self, leader: i32) -> Vec<(PartitionKey, Followed, Rc<Log>)> {
        let followed = self.replication.followed.borrow();
        let logs = self.logs.borrow();
        followed
            .iter()
            .filter(|(_, follow)| follow.leader == leader)
            .filter_map(|(key, follow)| {
                let log = logs.get(&key.0, key.1)?;
                Some((key.clone(), *follow, Rc::clone(log)))
            })
            .collect()
    }

    /// Marks a followed partition truncated for the leader epoch it was
    /// truncated under (a newer leadership needs its own truncation).
    fn mark_truncated(&self, key: &PartitionKey, follow: Followed) {
        if let Some(current) = self.replication.followed.borrow_mut().get_mut(key) {
            if current.leader == follow.leader && current.leader_epoch == follow.leader_epoch {
                current.truncated = true;
            }
        }
    }

    /// Fetches from `leader` every partition this shard follows from it,
    /// until there are none left.
    async fn run_fetcher(self: Rc<Self>, leader: i32) {
        let mut connection: Option<Rc<Connection>> = None;
        loop {
            let mut partitions = self.followed_from(leader);
            if partitions.is_empty() || self.shutting_down.get() {
                self.replication.fetchers.borrow_mut().remove(&leader);
                return;
            }
            // A log whose writes fail (its data directory failing) fetches
            // nothing until they succeed again: it could not store the
            // records, and a follower that kept fetching would look caught
            // up on an idle partition and be taken back into the ISR it was
            // moved out of. The fetcher stays, for when they succeed.
            partitions.retain(|(_, _, log)| log.write_failure().is_none());
            if partitions.is_empty() {
                glommio::timer::sleep(REPLICA_FETCH_BACKOFF).await;
                continue;
            }
            // Not usable also when its SASL session is near its end: a new
            // connection logs in again before the leader would close it.
            let current = match connection.as_ref().filter(|known| known.is_usable()) {
                Some(known) => Rc::clone(known),
                None => match self.connect_to(leader, "replica", REPLICA_IN_FLIGHT).await {
                    Ok(connected) => {
                        connection = Some(Rc::clone(&connected));
                        connected
                    }
                    Err(reason) => {
                        tracing::debug!(leader, %reason, "cannot reach the leader");
                        glommio::timer::sleep(REPLICA_FETCH_BACKOFF).await;
                        continue;
                    }
                },
            };
            let untruncated: Vec<&(PartitionKey, Followed, Rc<Log>)> = partitions
                .iter()
                .filter(|(_, follow, _)| !follow.truncated)
                .collect();
            let progressed = if untruncated.is_empty() {
                self.fetch_once(&current, &partitions).await
            } else {
                self.truncate_to_leader(&current, &untruncated).await
            };
            match progressed {
                Ok(true) => {}
                Ok(false) => glommio::timer::sleep(REPLICA_FETCH_BACKOFF).await,
                Err(reason) => {
                    tracing::debug!(leader, %reason, "fetching from the leader failed");
                    connection = None;
                    glommio::timer::sleep(REPLICA_FETCH_BACKOFF).await;
                }
            }
        }
    }

    /// OffsetForLeaderEpoch for the partitions not yet truncated under the
    /// current leadership: each is cut back to where the leader says its
    /// own last epoch ends. Returns whether any partition got through.
    async fn truncate_to_leader(
        &self,
        connection: &Connection,
        partitions: &[&(PartitionKey, Followed, Rc<Log>)],
    ) -> Result<bool, String> {
        let mut asked: Vec<&(PartitionKey, Followed, Rc<Log>)> = Vec::new();
        let mut topics: Vec<OffsetForLeaderTopic> = Vec::new();
        for entry in partitions {
            let (key, follow, log) = *entry;
            let Some(epoch) = log.latest_epoch() else {
                // An empty log has nothing to cut.
                self.mark_truncated(key, *follow);
                continue;
            };
            let mut request = OffsetForLeaderPartition::default();
            request.partition = key.1;
            request.current_leader_epoch = follow.leader_epoch;
            request.leader_epoch = epoch;
            push_topic(
                &mut topics,
                &key.0,
                request,
                |topic| &mut topic.topic,
                |topic| &mut topic.partitions,
            );
            asked.push(entry);
        }
        if asked.is_empty() {
            return Ok(true);
        }
        let mut request = OffsetForLeaderEpochRequest::default();
        request.replica_id = BrokerId(self.config.node_id);
        request.topics = topics;
        let (version, body) = connection
            .call(ApiKey::OffsetForLeaderEpoch, &request)
            .await
            .map_err(|error| error.to_string())?;
        let answers =
            decode_offset_for_leader_epoch(version, body).map_err(|error| error.to_string())?;
        // By name and index: a leader answers thousands of partitions.
        let by_key: HashMap<(&str, i32), &(PartitionKey, Followed, Rc<Log>)> = asked
            .iter()
            .map(|entry| ((entry.0 .0.as_str(), entry.0 .1), *entry))
            .collect();
        let mut progressed = false;
        for answer in answers {
            let Some((key, follow, log)) = by_key
                .get(&(answer.topic.as_str(), answer.partition))
                .copied()
            else {
                continue;
            };
            if answer.error_code != code::NONE {
                tracing::debug!(topic = %key.0, partition = key.1, error_code = answer.error_code, "leader refused OffsetForLeaderEpoch");
                continue;
            }
            let leo = log.offsets().leo;
            let end = if answer.end_offset < 0 {
                // The leader knows no epoch this early: keep the log.
                leo
            } else {
                // The leader may end at an older epoch than ours; our own
                // log says where that epoch ended here (KIP-279).
                let (_, own_end) = log.end_offset_for_epoch(answer.leader_epoch);
                let own_end = if own_end < 0 { leo } else { own_end };
                answer.end_offset.min(own_end).min(leo)
            };
            if end < leo {
                tracing::warn!(topic = %key.0, partition = key.1, from = leo, to = end, "truncating a suffix the leader does not have");
                log.truncate_to(end)
                    .await
                    .map_err(|error| format!("truncating {}-{}: {error}", key.0, key.1))?;
            }
            self.mark_truncated(key, *follow);
            progressed = true;
        }
        Ok(progressed)
    }

    /// One fetch of every followed partition from the leader, appended as
    /// it came. Returns whether any partition was answered without error.
    async fn fetch_once(
        &self,
        connection: &Connection,
        partitions: &[(PartitionKey, Followed, Rc<Log>)],
    ) -> Result<bool, String> {
        let mut request = FetchRequest::default();
        request.replica_id = BrokerId(self.config.node_id);
        request.max_wait_ms = REPLICA_FETCH_WAIT_MS;
        request.min_bytes = 1;
        request.max_bytes = REPLICA_FETCH_RESPONSE_BYTES;
        request.session_id = 0;
        request.session_epoch = -1;
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (key, follow, log) in partitions {
            let offsets = log.offsets();
            let mut fetch = FetchPartition::default();
            fetch.partition = key.1;
            fetch.current_leader_epoch = follow.leader_epoch;
            fetch.fetch_offset = offsets.leo;
            fetch.last_fetched_epoch = -1;
            fetch.log_start_offset = offsets.log_start;
            fetch.partition_max_bytes = REPLICA_FETCH_PARTITION_BYTES;
            push_topic(
                &mut topics,
                &key.0,
                fetch,
                |topic| &mut topic.topic,
                |topic| &mut topic.partitions,
            );
        }
        request.topics = topics;
        let (version, body) = connection
            .call(ApiKey::Fetch, &request)
            .await
            .map_err(|error| error.to_string())?;
        let data = decode_fetch(version, body).map_err(|error| error.to_string())?;
        if data.error_code != code::NONE {
            return Err(format!("fetch refused with error {}", data.error_code));
        }
        // By name and index: a leader answers thousands of partitions.
        let by_key: HashMap<(&str, i32), &(PartitionKey, Followed, Rc<Log>)> = partitions
            .iter()
            .map(|entry| ((entry.0 .0.as_str(), entry.0 .1), entry))
            .collect();
        let mut progressed = false;
        let mut appended: Vec<Rc<Log>> = Vec::new();
        for topic in data.topics {
            for answer in topic.partitions {
                let Some((key, follow, log)) =
                    by_key.get(&(topic.name.as_str(), answer.index)).copied()
                else {
                    continue;
                };
                match answer.error_code {
                    code::NONE => {}
                    code::OFFSET_OUT_OF_RANGE if answer.log_start_offset > log.offsets().leo => {
                        // Retention or DeleteRecords removed, on the leader,
                        // everything this replica lacks: it starts afresh
                        // at the leader's log start.
                        self.restart_log_at(key, log, answer.log_start_offset)
                            .await?;
                        progressed = true;
                        continue;
                    }
                    code::OFFSET_OUT_OF_RANGE | code::FENCED_LEADER_EPOCH => {
                        // Our log and the leader's disagree: find out again
                        // where they part.
                        if let Some(current) = self.replication.followed.borrow_mut().get_mut(key) {
                            if current.leader_epoch == follow.leader_epoch {
                                current.truncated = false;
                            }
                        }
                        continue;
                    }
                    other => {
                        tracing::debug!(topic = %key.0, partition = key.1, error_code = other, "leader refused a fetch");
                        continue;
                    }
                }
                // One partition's failure (its disk, a batch it cannot
                // take) must not hold back the others fetched with it: it
                // is fetched again from the same offset next time (after a
                // backoff, if nothing else got through). A failing disk is
                // reported by `storage_health`.
                match self.apply_fetched(key, follow, log, &answer).await {
                    Ok(Some(log)) => {
                        progressed = true;
                        appended.push(log);
                    }
                    Ok(None) => progressed = true,
                    Err(reason) => {
                        tracing::debug!(topic = %key.0, partition = key.1, %reason, "applying fetched data failed; fetching it again");
                    }
                }
            }
        }
        // The next fetch tells the leader these records are replicated
        // (acks=all answered, its high watermark moved): they must be in
        // their files by then, not in a tail the writer holds back, or a
        // kill -9 of this broker would lose acknowledged records. Each
        // wait ends its log's hold when it is made, so all of them are made
        // before any is awaited: the writes run together, not one after
        // the other.
        let waits: Vec<_> = appended.iter().map(|log| log.wait_written()).collect();
        for wait in waits {
            if let Err(error) = wait.await {
                // The writer retries; the directory's health check reports
                // a disk that keeps failing.
                tracing::debug!(%error, "a fetched batch is not written yet");
            }
        }
        Ok(progressed)
    }

    /// Appends one partition's fetched batches and moves its high
    /// watermark and log start as the leader's answer says. Returns the
    /// log appended to, if any batches were.
    async fn apply_fetched(
        &self,
        key: &PartitionKey,
        follow: &Followed,
        log: &Rc<Log>,
        answer: &FetchPartitionData,
    ) -> Result<Option<Rc<Log>>, String> {
        let batches = whole_batches(&answer.records)
            .map_err(|reason| format!("{}-{}: {reason}", key.0, key.1))?;
        let mut log = Rc::clone(log);
        let appended = !batches.is_empty();
        if appended {
            // The role may have changed while the fetch was out.
            let still = self
                .replication
                .followed
                .borrow()
                .get(key)
                .is_some_and(|current| current == follow);
            if !still {
                return Ok(None);
            }
            // The follower's writer is bounded like the leader's: a
            // slow disk here slows the fetches, not the memory.
            if log.is_backlogged() {
                log.wait_for_room().await;
            }
            let offsets = log.offsets();
            let first_base = batches
                .first()
                .map_or(offsets.leo, |(head, _)| head.base_offset);
            if offsets.leo == offsets.log_start && first_base < offsets.leo {
                // An empty log started at the leader's log start,
                // which lies inside a batch: the log starts at that
                // batch instead (as Kafka's followers do), and its
                // start moves up to the leader's below.
                log = self.restart_log_at(key, &log, first_base).await?;
            }
            log.append_replica(&batches)
                .await
                .map_err(|error| format!("appending to {}-{}: {error}", key.0, key.1))?;
        }
        let leo = log.offsets().leo;
        log.set_high_watermark(answer.high_watermark.min(leo));
        // The log start follows the leader's (DeleteRecords, the
        // leader's retention), up to what this replica has committed.
        let offsets = log.offsets();
        let start = answer.log_start_offset.min(offsets.hw);
        if start > offsets.log_start {
            log.delete_records_before(start)
                .await
                .map_err(|error| format!("{}-{}: moving the log start: {error}", key.0, key.1))?;
        }
        Ok(appended.then_some(log))
    }

    /// Replaces a follower's log with an empty one starting at `start` (the
    /// leader's log start, past this log's end, or the base of the batch
    /// holding it), and returns it.
    async fn restart_log_at(
        &self,
        key: &PartitionKey,
        log: &Rc<Log>,
        start: i64,
    ) -> Result<Rc<Log>, String> {
        let offsets = log.offsets();
        tracing::warn!(
            topic = %key.0,
            partition = key.1,
            log_end = offsets.leo,
            start,
            "this replica's log ends before its leader's starts; starting it afresh at the leader's log start"
        );
        let failed = |what: &str, error: &dyn std::fmt::Display| {
            format!("{}-{}: {what}: {error}", key.0, key.1)
        };
        log.close()
            .await
            .map_err(|error| failed("closing the old log", &error))?;
        log.delete()
            .await
            .map_err(|error| failed("removing the old log", &error))?;
        let fresh = sluice_engine::PartitionLog::create_at(
            sluice_engine::DmaStorage,
            log.dir().to_path_buf(),
            log.config(),
            Rc::clone(&self.cache),
            start,
        )
        .await
        .map_err(|error| failed("creating the new log", &error))?;
        self.logs
            .borrow_mut()
            .insert(&key.0, key.1, Rc::clone(&fresh));
        Ok(fresh)
    }
}

/// What a leader's high watermark should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watermark {
    /// Alone in the ISR: the log end.
    FollowsLogEnd,
    /// The smallest log end among the members.
    At(i64),
    /// A member not heard from under this leadership: it stays put.
    Unknown,
}

/// The high watermark of a led partition whose log ends at `leo`: the
/// smallest log end among the members of `isr` and of a `pending` ISR
/// change (whichever way the controller decides it, every replica that may
/// be in the ISR holds everything below the high watermark, so none of
/// them can be elected without an acknowledged record). `log_end` gives a
/// follower's log end as of its last fetch (negative: not yet heard from).
fn high_watermark(
    node: i32,
    leo: i64,
    isr: &[i32],
    pending: Option<&[i32]>,
    log_end: impl Fn(i32) -> Option<i64>,
) -> Watermark {
    let members = || isr.iter().chain(pending.unwrap_or_default()).copied();
    if members().all(|id| id == node) {
        return Watermark::FollowsLogEnd;
    }
    let mut hw = leo;
    for id in members().filter(|id| *id != node) {
        match log_end(id) {
            Some(end) if end >= 0 => hw = hw.min(end),
            _ => return Watermark::Unknown,
        }
    }
    Watermark::At(hw)
}

/// Adds `item` to the entry of `name` in `topics` (the last one, as items
/// come grouped by topic), or a new entry for it.
fn push_topic<T: Default, I>(
    topics: &mut Vec<T>,
    name: &str,
    item: I,
    topic_name: impl Fn(&mut T) -> &mut TopicName,
    items: impl Fn(&mut T) -> &mut Vec<I>,
) {
    if let Some(last) = topics.last_mut() {
        if topic_name(last).0.as_str() == name {
            items(last).push(item);
            return;
        }
    }
    let mut topic = T::default();
    *topic_name(&mut topic) = TopicName(StrBytes::from_string(name.to_string()));
    items(&mut topic).push(item);
    topics.push(topic);
}

/// The whole batches of a fetched record set, each checked (length, magic,
/// CRC) but not otherwise touched; a batch cut short at the end of the
/// response is left for the next fetch, as Kafka allows.
fn whole_batches(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, String> {
    let mut batches = Vec::new();
    let mut position = 0;
    while records.len() - position >= LOG_OVERHEAD {
        let length_at = position + 8;
        let length = i32::from_be_bytes([
            records[length_at],
            records[length_at + 1],
            records[length_at + 2],
            records[length_at + 3],
        ]);
        let total = LOG_OVERHEAD + usize::try_from(length).map_err(|_| "negative batch length")?;
        if records.len() - position < total {
            break;
        }
        let bytes = records.slice(position..position + total);
        let header =
            batch::validate_stored(&bytes, usize::MAX).map_err(|error| error.to_string())?;
        batches.push((header, bytes));
        position += total;
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::batch::build_batch;

    #[test]
    fn the_high_watermark_waits_for_members_being_added() {
        // Leader 1 at log end 558; follower 2 in the ISR has everything,
        // follower 3 rejoins at 557.
        let ends = |id: i32| match id {
            2 => Some(558),
            3 => Some(557),
            _ => None,
        };
        assert_eq!(
            high_watermark(1, 558, &[1, 2], None, ends),
            Watermark::At(558)
        );
        // Once its return is asked for, it may be in the controller's ISR
        // (and so be elected) before the answer arrives: nothing it lacks
        // may count as committed.
        let adding = [1, 2, 3];
        assert_eq!(
            high_watermark(1, 558, &[1, 2], Some(&adding), ends),
            Watermark::At(557)
        );
        // While a removal is pending, the member being removed still counts.
        let removing = [1, 2];
        assert_eq!(
            high_watermark(1, 558, &[1, 2, 3], Some(&removing), ends),
            Watermark::At(557)
        );
        // Alone, the leader's log end; alone but for a member being added,
        // not.
        assert_eq!(
            high_watermark(1, 558, &[1], None, ends),
            Watermark::FollowsLogEnd
        );
        let joining = [1, 3];
        assert_eq!(
            high_watermark(1, 558, &[1], Some(&joining), ends),
            Watermark::At(557)
        );
        // A member not heard from under this leadership holds it.
        assert_eq!(
            high_watermark(1, 558, &[1, 4], None, ends),
            Watermark::Unknown
        );
    }

    #[test]
    fn whole_batches_keeps_complete_batches_and_leaves_a_cut_one() {
        let first = build_batch(1, &[b"a", b"b"]);
        let second = build_batch(2, &[b"c"]);
        let mut joined = first.clone();
        joined.extend_from_slice(&second);
        let all = whole_batches(&Bytes::from(joined.clone())).expect("valid");
        assert_eq!(all.len(), 2);
        assert_eq!(&all[0].1[..], &first[..]);
        assert_eq!(&all[1].1[..], &second[..]);
        let cut = whole_batches(&Bytes::from(joined[..joined.len() - 3].to_vec())).expect("valid");
        assert_eq!(cut.len(), 1);
        let mut corrupt = joined;
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(whole_batches(&Bytes::from(corrupt)).is_err());
    }
}
