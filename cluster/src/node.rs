//! One member of the metadata quorum: raft-rs's `RawNode` over the
//! in-memory [`LogStore`], made durable by the [`Wal`], applying committed
//! entries to the [`ClusterMetadata`] image.
//!
//! The node is driven from outside, which keeps it deterministic: the owner
//! calls [`MetadataNode::tick`] on a timer, [`MetadataNode::step`] for each
//! message from a peer, and [`MetadataNode::process`] after either; messages
//! to peers come out of `process` and the owner delivers them (over the
//! controller port in a broker, through a simulated lossy network in
//! tests). Raft ids are node ids plus one, because raft-rs reserves 0.

use std::collections::BTreeMap;

use raft::prelude::{ConfState, Entry, EntryType, Message, MessageType, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole};
use sluice_engine::{ClusterMetadata, Storage};

use crate::codec::{Reader, Writer};
use crate::constants::{
    APPENDS_IN_FLIGHT_MAX, APPEND_MESSAGE_BYTES_MAX, ELECTION_TICKS, HEARTBEAT_TICKS,
    METADATA_ENTRY_BYTES_MAX,
};
use crate::records::{decode_records, encode_records, image_from_records, image_records};
use crate::store::LogStore;
use crate::wal::{Wal, WalError};
use crate::MetadataRecord;

/// The raft id of a node id.
pub fn raft_id(node_id: i32) -> u64 {
    node_id as u64 + 1
}

/// The node id of a raft id.
pub fn node_id(raft_id: u64) -> i32 {
    raft_id.saturating_sub(1) as i32
}

/// How one node takes part in the quorum.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: i32,
    /// Differs at every start of the node, so that a proposal made before
    /// a restart is never taken for one made after it.
    pub incarnation: u64,
    /// Node ids of the voters, this one included when it is a voter.
    pub voters: Vec<i32>,
    /// Take a snapshot after this many applied entries...
    pub snapshot_entries: u64,
    /// ...or this many bytes of entries.
    pub snapshot_bytes: u64,
}

/// A proposal's handle: which node proposed it, and its number there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProposalId {
    pub node: i32,
    pub incarnation: u64,
    pub sequence: u64,
}

impl ProposalId {
    fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::default();
        writer.i32(self.node);
        writer.u64(self.incarnation);
        writer.u64(self.sequence);
        writer.bytes
    }

    fn decode(bytes: &[u8]) -> Option<ProposalId> {
        let mut reader = Reader::new(bytes);
        let id = ProposalId {
            node: reader.i32().ok()?,
            incarnation: reader.u64().ok()?,
            sequence: reader.u64().ok()?,
        };
        reader.finish().ok()?;
        Some(id)
    }
}

/// Why a proposal was not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// Only the leader takes proposals; this is the leader as last known.
    NotLeader {
        leader: Option<i32>,
    },
    TooLarge {
        bytes: usize,
    },
}

/// What one [`MetadataNode::process`] call did.
#[derive(Default)]
pub struct Processed {
    /// Messages for peers, in order.
    pub messages: Vec<Message>,
    /// This node's proposals that were applied, each with the index it was
    /// applied at.
    pub applied: Vec<(ProposalId, u64)>,
    /// The image changed.
    pub image_changed: bool,
}

/// This node's metadata log contradicts what its peers know in a way Raft
/// cannot repair: typically a leader says an index is committed that this
/// node's log does not reach, because entries it had acknowledged were lost
/// (a damaged or replaced metadata directory, a disk that lied about a
/// sync), or a peer sent a message no correct Raft node sends. raft-rs
/// panics there; the node reports it instead so that its owner can leave
/// the quorum with a log line rather than take the broker down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diverged(pub String);

impl std::fmt::Display for Diverged {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

pub struct MetadataNode<S: Storage> {
    config: NodeConfig,
    raw: RawNode<LogStore>,
    store: LogStore,
    wal: Wal<S>,
    image: ClusterMetadata,
    applied: u64,
    /// Bytes of entries applied since the last snapshot.
    applied_bytes: u64,
    next_sequence: u64,
}

/// raft-rs logs through slog; its lines go to tracing under `sluice::raft`.
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        _values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "sluice::raft", "{}", record.msg())
            }
            slog::Level::Warning => tracing::warn!(target: "sluice::raft", "{}", record.msg()),
            slog::Level::Info => tracing::debug!(target: "sluice::raft", "{}", record.msg()),
            _ => tracing::trace!(target: "sluice::raft", "{}", record.msg()),
        }
        Ok(())
    }
}

impl<S: Storage> MetadataNode<S> {
    /// Opens the node's durable state (`bootstrap` is the image a brand-new
    /// single-node quorum starts from, e.g. a migrated single-node
    /// directory's metadata).
    pub async fn open(
        config: NodeConfig,
        mut wal: Wal<S>,
        bootstrap: Option<ClusterMetadata>,
    ) -> Result<MetadataNode<S>, WalError> {
        let mut persisted = wal.open().await?;
        let voters: Vec<u64> = config.voters.iter().map(|id| raft_id(*id)).collect();
        if persisted.is_empty() {
            let mut snapshot = Snapshot::default();
            let conf = ConfState {
                voters: voters.clone(),
                ..Default::default()
            };
            if let Some(image) = bootstrap {
                snapshot.data = encode_records(&image_records(&image)).into();
                snapshot.mut_metadata().index = 1;
                snapshot.mut_metadata().term = 1;
                persisted.hard_state.term = 1;
                persisted.hard_state.commit = 1;
                wal.save_hard_state(&persisted.hard_state).await?;
            }
            snapshot.mut_metadata().set_conf_state(conf);
            wal.save_snapshot(&snapshot, &[]).await?;
            persisted.snapshot = snapshot;
        }
        let mut stored_voters = persisted
            .snapshot
            .get_metadata()
            .get_conf_state()
            .voters
            .clone();
        stored_voters.sort_unstable();
        let mut wanted = voters.clone();
        wanted.sort_unstable();
        if stored_voters != wanted {
            let listed = |ids: &[u64]| {
                ids.iter()
                    .map(|id| node_id(*id).to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            return Err(WalError(format!(
                "this data directory's metadata quorum has voters {} but the configuration \
                 names {}; start the node with the voters it was formed with",
                listed(&stored_voters),
                listed(&wanted)
            )));
        }
        let image = if persisted.snapshot.data.is_empty() {
            ClusterMetadata::default()
        } else {
            let records = decode_records(&persisted.snapshot.data)
                .map_err(|error| WalError(format!("metadata snapshot: {error}")))?;
            image_from_records(&records)
        };
        let snapshot_index = persisted.snapshot.get_metadata().index;
        let store = LogStore::default();
        {
            let mut core = store.core.borrow_mut();
            core.conf_state = persisted.snapshot.get_metadata().get_conf_state().clone();
            core.hard_state = persisted.hard_state;
            core.snapshot = persisted.snapshot;
            core.entries = persisted.entries;
            // A stored commit index is never ahead of the stored log.
            let last = core.last_index();
            core.hard_state.commit = core.hard_state.commit.clamp(snapshot_index, last);
        }
        let raft_config = raft::Config {
            id: raft_id(config.node_id),
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            applied: snapshot_index,
            max_size_per_msg: APPEND_MESSAGE_BYTES_MAX,
            max_inflight_msgs: APPENDS_IN_FLIGHT_MAX,
            // A node cut off from the others must not disrupt them when it
            // comes back, and a leader that loses its quorum steps down.
            pre_vote: true,
            check_quorum: true,
            ..Default::default()
        };
        let logger = slog::Logger::root(TracingDrain, slog::o!());
        let raw = RawNode::new(&raft_config, store.clone(), &logger)
            .map_err(|error| WalError(format!("starting the metadata quorum: {error}")))?;
        let mut node = MetadataNode {
            config,
            raw,
            store,
            wal,
            image,
            applied: snapshot_index,
            applied_bytes: 0,
            next_sequence: 0,
        };
        node.image.version = snapshot_index;
        // A quorum of one elects itself at once instead of after an
        // election timeout.
        if voters == [raft_id(node.config.node_id)] {
            node.raw
                .campaign()
                .map_err(|error| WalError(format!("electing the only voter: {error}")))?;
        }
        Ok(node)
    }

    pub fn image(&self) -> &ClusterMetadata {
        &self.image
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// This node opened again from what its data directory holds, as a
    /// restart would open it: after a failed write of its metadata log (a
    /// full disk) its memory may be ahead of its disk, which it must not
    /// vote or acknowledge on. A new incarnation, so that no proposal made
    /// before is taken for one made after.
    pub async fn reopen(&self) -> Result<MetadataNode<S>, WalError> {
        let mut config = self.config.clone();
        config.incarnation = config.incarnation.wrapping_add(1);
        MetadataNode::open(config, self.wal.reopened(), None).await
    }

    /// Whether its disk has room for metadata again (see [`Wal::has_room`]).
    pub async fn has_room(&self) -> bool {
        self.wal.has_room().await
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// The leader as this node knows it.
    pub fn leader(&self) -> Option<i32> {
        match self.raw.raft.leader_id {
            0 => None,
            id => Some(node_id(id)),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// True when this node leads and has applied every entry committed
    /// before its term: decisions made against its image are then current.
    pub fn can_decide(&self) -> bool {
        // The applied entry is of this term only once the leader's own
        // first entry, which follows everything of earlier terms, is.
        self.is_leader()
            && raft::Storage::term(&self.store, self.applied)
                .is_ok_and(|term| term == self.raw.raft.term)
    }

    /// The log end and commit index: what DescribeQuorum reports.
    pub fn log_end(&self) -> u64 {
        self.store.core.borrow().last_index()
    }

    /// The match index of each voter as the leader knows it.
    pub fn progress(&self) -> BTreeMap<i32, u64> {
        self.raw
            .raft
            .prs()
            .iter()
            .map(|(id, progress)| (node_id(*id), progress.matched))
            .collect()
    }

    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// Hands the leadership to voter `to` (raft-rs's MsgTransferLeader):
    /// the leader sends it what it lacks, then MsgTimeoutNow, and it stands
    /// for election at once, its vote requests marked as a transfer so
    /// that the other voters grant them despite their leader lease.
    /// Proposals are refused meanwhile; raft-rs gives up after an election
    /// timeout. Does nothing unless this node leads.
    pub fn transfer_leadership(&mut self, to: i32) {
        if self.is_leader() {
            self.raw.transfer_leader(raft_id(to));
        }
    }

    /// Stands for election at once if `leader` still leads in `term` as
    /// far as this follower knows, as the target of a leadership transfer
    /// does (raft-rs's MsgTimeoutNow: no pre-vote round, and the vote
    /// requests are marked as a transfer, which voters grant despite their
    /// leader lease). For a follower that saw its leader's process die:
    /// the quorum elects a new leader in a round trip instead of an
    /// election timeout. The usual vote rules still hold: a candidate
    /// whose log is behind is refused.
    pub fn campaign_now(&mut self, leader: i32, term: u64) -> Result<(), Diverged> {
        if self.is_leader() || self.leader() != Some(leader) || self.term() != term {
            return Ok(());
        }
        let mut timeout_now = Message::default();
        timeout_now.set_msg_type(MessageType::MsgTimeoutNow);
        timeout_now.from = raft_id(leader);
        timeout_now.to = raft_id(self.node_id());
        timeout_now.term = term;
        tracing::info!(
            target: "sluice::raft",
            leader,
            term,
            "the quorum leader's process is gone: standing for election at once"
        );
        self.step(timeout_now)
    }

    /// A message from a peer. Malformed or stale messages are dropped by
    /// raft-rs; an error here is logged, never fatal. A message that
    /// contradicts this node's log in a way raft-rs cannot go on from makes
    /// raft-rs panic; that is caught and returned as [`Diverged`], after
    /// which this node must not be used again.
    pub fn step(&mut self, message: Message) -> Result<(), Diverged> {
        let (from, kind) = (node_id(message.from), message.get_msg_type());
        let raw = &mut self.raw;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| raw.step(message))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                tracing::debug!(target: "sluice::raft", %error, "message dropped");
                Ok(())
            }
            Err(panic) => {
                let said = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("no reason given");
                Err(Diverged(format!(
                    "raft-rs stopped on a {kind:?} from node {from}: {said}"
                )))
            }
        }
    }

    /// Proposes a controller decision: records computed from this node's
    /// image while it led in `term`. Taken only while this node still leads
    /// in that term with every earlier term applied, so the records enter
    /// the log right after the image they were computed from. Never
    /// forwarded: a node deposed while it was deciding (a pause, a
    /// partition) would otherwise have the new leader commit a decision
    /// made against an image that is no longer current, such as fencing a
    /// broker only the paused node had not heard from, or putting back a
    /// partition's old leader and epoch.
    pub fn propose_decision(
        &mut self,
        term: u64,
        records: &[MetadataRecord],
    ) -> Result<ProposalId, ProposeError> {
        if !self.can_decide() || self.term() != term {
            return Err(ProposeError::NotLeader {
                leader: self.leader(),
            });
        }
        self.propose(records)
    }

    /// Proposes records that commit together; a follower forwards them to
    /// the leader. Only for records that hold whatever the image is (a
    /// broker's own registration); decisions go through
    /// [`MetadataNode::propose_decision`]. The answer comes through [`Processed::applied`] once they
    /// are applied (never, if leadership moves first or the forwarded
    /// message is lost: the caller times out).
    pub fn propose(&mut self, records: &[MetadataRecord]) -> Result<ProposalId, ProposeError> {
        if self.leader().is_none() {
            return Err(ProposeError::NotLeader {
                leader: self.leader(),
            });
        }
        let data = encode_records(records);
        if data.len() > METADATA_ENTRY_BYTES_MAX {
            return Err(ProposeError::TooLarge { bytes: data.len() });
        }
        self.next_sequence += 1;
        let id = ProposalId {
            node: self.config.node_id,
            incarnation: self.config.incarnation,
            sequence: self.next_sequence,
        };
        self.raw
            .propose(id.encode(), data)
            .map_err(|_| ProposeError::NotLeader {
                leader: self.leader(),
            })?;
        Ok(id)
    }

    /// Persists, sends and applies whatever raft-rs has ready.
    pub async fn process(&mut self) -> Result<Processed, WalError> {
        let mut processed = Processed::default();
        while self.raw.has_ready() {
            let mut ready = self.raw.ready();
            processed.messages.extend(ready.take_messages());
            if ready.snapshot().get_metadata().index != 0 {
                let snapshot = ready.snapshot().clone();
                self.install_snapshot(snapshot, &mut processed).await?;
            }
            let committed = ready.take_committed_entries();
            self.apply(committed, &mut processed);
            let entries = ready.take_entries();
            if !entries.is_empty() {
                self.store.core.borrow_mut().append(&entries);
                self.wal.append(&entries).await?;
                self.wal.sync().await?;
            }
            if let Some(state) = ready.hs() {
                let previous = self.store.core.borrow().hard_state.clone();
                self.store.core.borrow_mut().hard_state = state.clone();
                if state.term != previous.term || state.vote != previous.vote {
                    self.wal.save_hard_state(state).await?;
                }
            }
            processed.messages.extend(ready.take_persisted_messages());
            let mut light = self.raw.advance(ready);
            // raft-rs stops appending to a follower it sent a snapshot to
            // until told how the send went. Delivery is best effort, so it
            // is told at once: if the snapshot is lost, the follower's next
            // answer shows it and the leader sends it again.
            let snapshot_targets: Vec<u64> = processed
                .messages
                .iter()
                .filter(|message| message.get_msg_type() == MessageType::MsgSnapshot)
                .map(|message| message.to)
                .collect();
            for target in snapshot_targets {
                self.raw.report_snapshot(target, SnapshotStatus::Finish);
            }
            if let Some(commit) = light.commit_index() {
                self.store.core.borrow_mut().hard_state.commit = commit;
            }
            processed.messages.extend(light.take_messages());
            let committed = light.take_committed_entries();
            self.apply(committed, &mut processed);
            self.raw.advance_apply();
            self.maybe_snapshot().await?;
        }
        Ok(processed)
    }

    async fn install_snapshot(
        &mut self,
        snapshot: Snapshot,
        processed: &mut Processed,
    ) -> Result<(), WalError> {
        let index = snapshot.get_metadata().index;
        if index <= self.applied {
            return Ok(());
        }
        let records = decode_records(&snapshot.data)
            .map_err(|error| WalError(format!("snapshot from the leader: {error}")))?;
        self.wal.save_snapshot(&snapshot, &[]).await?;
        self.wal
            .save_hard_state(&{
                let mut state = self.store.core.borrow().hard_state.clone();
                state.term = state.term.max(snapshot.get_metadata().term);
                state.commit = state.commit.max(index);
                state
            })
            .await?;
        self.store.core.borrow_mut().install_snapshot(snapshot);
        self.image = image_from_records(&records);
        self.image.version = index;
        self.applied = index;
        self.applied_bytes = 0;
        processed.image_changed = true;
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>, processed: &mut Processed) {
        for entry in entries {
            if entry.index <= self.applied {
                continue;
            }
            self.applied = entry.index;
            self.applied_bytes += entry.data.len() as u64;
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                // A new leader's empty entry (published, so that every
                // broker learns the new controller), or a membership change
                // (the voter set is static today).
                self.image.version = entry.index;
                processed.image_changed = true;
                continue;
            }
            match decode_records(&entry.data) {
                Ok(records) => {
                    for record in &records {
                        if let Err(reason) = record.apply(&mut self.image) {
                            tracing::warn!(index = entry.index, %reason, "metadata record skipped");
                        }
                    }
                    processed.image_changed = true;
                }
                Err(error) => {
                    // Every node skips the same entry, so images agree; the
                    // line says which node must be upgraded.
                    tracing::error!(index = entry.index, %error, "metadata entry not applied");
                }
            }
            self.image.version = entry.index;
            if let Some(id) = ProposalId::decode(&entry.context) {
                if id.node == self.config.node_id && id.incarnation == self.config.incarnation {
                    processed.applied.push((id, entry.index));
                }
            }
        }
    }

    /// Compacts the log into a snapshot of the image once enough entries
    /// are applied.
    async fn maybe_snapshot(&mut self) -> Result<(), WalError> {
        let snapshot_index = self.store.core.borrow().snapshot_index();
        if self.applied - snapshot_index < self.config.snapshot_entries
            && self.applied_bytes < self.config.snapshot_bytes
        {
            return Ok(());
        }
        let term = raft::Storage::term(&self.store, self.applied)
            .map_err(|error| WalError(format!("snapshot at {}: {error}", self.applied)))?;
        let mut snapshot = Snapshot {
            data: encode_records(&image_records(&self.image)).into(),
            ..Default::default()
        };
        let metadata = snapshot.mut_metadata();
        metadata.index = self.applied;
        metadata.term = term;
        metadata.set_conf_state(self.store.core.borrow().conf_state.clone());
        let kept: Vec<Entry> = self
            .store
            .core
            .borrow()
            .entries
            .iter()
            .filter(|entry| entry.index > self.applied)
            .cloned()
            .collect();
        self.wal.save_snapshot(&snapshot, &kept).await?;
        self.store.core.borrow_mut().compact(snapshot);
        self.applied_bytes = 0;
        Ok(())
    }
}
