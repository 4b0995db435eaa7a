//! The metadata quorum at run time: one task on the controller shard owns
//! the [`MetadataNode`], ticks it, feeds it peers' messages and proposals
//! from an inbox, and publishes what it applied. Everything else holds a
//! [`Quorum`] handle: it reads the latest image and status without waiting,
//! and [`Quorum::write`] proposes records and waits until they are applied.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use futures_lite::FutureExt;
use raft::prelude::Message;
use sluice_engine::notify::Signal;
use sluice_engine::{ClusterMetadata, Storage};

use crate::constants::{
    ELECTION_TIMEOUT_MIN, INCARNATIONS_HEARD_MAX, QUORUM_INBOX_MAX, QUORUM_REJOIN_INTERVAL,
    TICK_INTERVAL,
};
use crate::node::{MetadataNode, ProposalId, ProposeError};
use crate::MetadataRecord;

/// Why a metadata write did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// This node does not lead the quorum (the leader, if known): retriable
    /// on the leader (NOT_CONTROLLER).
    NotLeader {
        leader: Option<i32>,
    },
    /// Not applied before the deadline: the quorum may have no leader, or
    /// lost its majority (REQUEST_TIMED_OUT). It may still be applied later.
    TimedOut,
    TooLarge {
        bytes: usize,
    },
    /// The metadata log cannot be written (KAFKA_STORAGE_ERROR).
    Failed(String),
    /// A registration refused because another live broker holds the id
    /// (Kafka's DUPLICATE_BROKER_REGISTRATION); says which.
    DuplicateBroker(String),
}

/// What a node knows of the quorum, for DescribeQuorum and the admin tool.
#[derive(Clone, Debug, Default)]
pub struct QuorumStatus {
    pub leader: Option<i32>,
    pub term: u64,
    pub is_leader: bool,
    /// Leads and has applied everything before its term.
    pub can_decide: bool,
    pub log_end: u64,
    pub applied: u64,
    /// Voters' replicated index, as known by the leader.
    pub progress: BTreeMap<i32, u64>,
    /// When this node began leading in `term` (`None` unless it leads): a
    /// new leader has heard from nobody yet, so it judges no broker silent
    /// before it has led for a session.
    pub leading_since: Option<Instant>,
}

enum Command {
    Step(Message),
    Propose {
        ticket: u64,
        records: Vec<MetadataRecord>,
        /// A controller decision made while leading in this term (see
        /// [`MetadataNode::propose_decision`]); `None`: forwarded to
        /// whichever node leads.
        decided_in: Option<u64>,
    },
    /// Hand the leadership to this voter (a controlled shutdown).
    TransferLeadership(i32),
    /// Stand for election at once if this leader still leads in this term.
    CampaignNow {
        leader: i32,
        term: u64,
    },
}

/// Sends a message to a peer (or drops it: raft-rs retries).
pub type Transport = Rc<dyn Fn(Message)>;

struct Shared {
    inbox: RefCell<VecDeque<Command>>,
    inbox_signal: Signal,
    /// Notified after every round of the driver.
    progress_signal: Signal,
    image: RefCell<Arc<ClusterMetadata>>,
    status: RefCell<QuorumStatus>,
    /// Tickets of proposals the node took, by their id.
    proposed: RefCell<BTreeMap<ProposalId, u64>>,
    /// Outcomes by ticket, taken by the waiting writer.
    outcomes: RefCell<BTreeMap<u64, Result<u64, WriteError>>>,
    next_ticket: Cell<u64>,
    failure: RefCell<Option<String>>,
    /// When a message last arrived from each peer: the voters' liveness,
    /// which the active controller fences brokers by.
    last_heard: RefCell<BTreeMap<i32, Instant>>,
    /// When each peer's liveness-carrying connection (Raft messages, an
    /// observer's polls) closed with nothing heard from it since: a process
    /// that died (its kernel closed its sockets), unless it reconnects.
    disconnected: RefCell<BTreeMap<i32, Instant>>,
    /// Set on a broker that is not a voter: it follows the image from the
    /// voters instead of taking part in Raft.
    observing: Option<Rc<crate::observer::Observing>>,
    /// This node's id when it is a voter.
    voter_id: Option<i32>,
    /// When a frame last arrived from each incarnation of each peer (the
    /// incarnation its hello named), newest last, at most
    /// [`INCARNATIONS_HEARD_MAX`] per id: tells a live broker from a
    /// second process started with its id, whose frames carry the same
    /// node id but another incarnation.
    incarnations_heard: RefCell<BTreeMap<i32, Vec<(u64, Instant)>>>,
    /// On an observer: when the last poll that the quorum leader answered
    /// was sent (the leader heard from this node after that moment).
    observer_contact: Cell<Option<Instant>>,
}

/// A handle on the quorum; cheap to clone.
#[derive(Clone)]
pub struct Quorum {
    shared: Rc<Shared>,
}

impl Quorum {
    /// Starts the driver task on the current executor.
    pub fn start<S: Storage>(node: MetadataNode<S>, transport: Transport) -> Quorum {
        let shared = Rc::new(Shared {
            inbox: RefCell::new(VecDeque::new()),
            inbox_signal: Signal::new(),
            progress_signal: Signal::new(),
            image: RefCell::new(Arc::new(node.image().clone())),
            status: RefCell::new(QuorumStatus::default()),
            proposed: RefCell::new(BTreeMap::new()),
            outcomes: RefCell::new(BTreeMap::new()),
            next_ticket: Cell::new(0),
            failure: RefCell::new(None),
            last_heard: RefCell::new(BTreeMap::new()),
            disconnected: RefCell::new(BTreeMap::new()),
            observing: None,
            voter_id: Some(node.node_id()),
            incarnations_heard: RefCell::new(BTreeMap::new()),
            observer_contact: Cell::new(None),
        });
        let driven = Rc::clone(&shared);
        glommio::spawn_local(drive(driven, node, transport)).detach();
        Quorum { shared }
    }

    /// A broker that is not a voter (an observer): follows the committed
    /// image from the voters' controller ports, and sends its writes (its
    /// registration) to them.
    /// `incarnation` is this process's, named to the voters in every
    /// connection's hello.
    pub fn observe(
        node_id: i32,
        incarnation: u64,
        voters: Vec<(i32, std::net::SocketAddr)>,
    ) -> Quorum {
        let observing = Rc::new(crate::observer::Observing {
            node_id,
            incarnation,
            voters,
        });
        let shared = Rc::new(Shared {
            inbox: RefCell::new(VecDeque::new()),
            inbox_signal: Signal::new(),
            progress_signal: Signal::new(),
            image: RefCell::new(Arc::new(ClusterMetadata::default())),
            status: RefCell::new(QuorumStatus::default()),
            proposed: RefCell::new(BTreeMap::new()),
            outcomes: RefCell::new(BTreeMap::new()),
            next_ticket: Cell::new(0),
            failure: RefCell::new(None),
            last_heard: RefCell::new(BTreeMap::new()),
            disconnected: RefCell::new(BTreeMap::new()),
            observing: Some(Rc::clone(&observing)),
            voter_id: None,
            incarnations_heard: RefCell::new(BTreeMap::new()),
            observer_contact: Cell::new(None),
        });
        let quorum = Quorum { shared };
        glommio::spawn_local(crate::observer::follow(quorum.clone(), observing)).detach();
        quorum
    }

    /// Whether this node only observes the quorum.
    pub fn is_observer(&self) -> bool {
        self.shared.observing.is_some()
    }

    /// An observer's newest image from the voters, and the leader they
    /// named.
    pub(crate) fn observed(&self, image: ClusterMetadata, leader: Option<i32>) {
        *self.shared.status.borrow_mut() = QuorumStatus {
            leader,
            applied: image.version,
            log_end: image.version,
            ..QuorumStatus::default()
        };
        *self.shared.image.borrow_mut() = Arc::new(image);
        self.shared.progress_signal.notify();
    }

    /// The voters' answer about their leader, without a new image.
    pub(crate) fn observed_leader(&self, leader: Option<i32>) {
        let changed = {
            let mut status = self.shared.status.borrow_mut();
            let changed = status.leader != leader;
            status.leader = leader;
            changed
        };
        if changed {
            self.shared.progress_signal.notify();
        }
    }

    /// Records that node `id` was heard from (a voter's Raft message, an
    /// observer's fetch): the liveness the active controller fences by.
    pub fn heard(&self, id: i32) {
        self.shared
            .last_heard
            .borrow_mut()
            .insert(id, Instant::now());
        if !self.shared.disconnected.borrow().is_empty() {
            self.shared.disconnected.borrow_mut().remove(&id);
        }
    }

    /// On an observer: a poll sent at `sent` was answered by the quorum
    /// leader itself.
    pub(crate) fn answered_by_leader(&self, sent: Instant) {
        self.shared.observer_contact.set(Some(sent));
    }

    /// When this node was last known in touch with the active controller
    /// (`None`: not yet), for the lease under which it may go on taking
    /// writes as a partition leader: the
    /// controller fences a broker it has not heard from for a session, and
    /// a broker that has lost touch for nearly that long must assume it
    /// was fenced and its partitions handed to others.
    pub fn controller_contact(&self) -> Option<Instant> {
        if self.shared.observing.is_some() {
            return self.shared.observer_contact.get();
        }
        let me = self.shared.voter_id?;
        let status = self.status();
        if status.is_leader {
            // Leading, this node is the controller until a majority elects
            // another, which it can only do once this node has not been
            // heard from by it: it is in touch as long as a majority
            // (itself and the freshest others) has been heard from. (A
            // quorum of one needs no lease; its caller knows the voters.)
            let others: Vec<i32> = status
                .progress
                .keys()
                .copied()
                .filter(|id| *id != me)
                .collect();
            let needed = others.len().div_ceil(2);
            let mut heard: Vec<Instant> = others
                .iter()
                .filter_map(|id| self.last_heard(*id))
                .collect();
            heard.sort_unstable_by(|a, b| b.cmp(a));
            return needed.checked_sub(1).and_then(|at| heard.get(at).copied());
        }
        // Following: what the leader last sent. The leader hears this
        // node's answers over the same links, so in a network partition
        // both sides lose touch together (a one-way cut is not covered).
        status.leader.and_then(|leader| self.last_heard(leader))
    }

    /// Records that node `id`'s connection carrying its heartbeats closed.
    pub fn disconnected(&self, id: i32) {
        self.shared
            .disconnected
            .borrow_mut()
            .insert(id, Instant::now());
    }

    /// Records that incarnation `incarnation` of node `id` was heard from
    /// (any frame on a connection whose hello named it).
    pub fn heard_incarnation(&self, id: i32, incarnation: u64) {
        let now = Instant::now();
        let mut heard = self.shared.incarnations_heard.borrow_mut();
        let known = heard.entry(id).or_default();
        known.retain(|(other, _)| *other != incarnation);
        if known.len() >= INCARNATIONS_HEARD_MAX {
            known.remove(0);
        }
        known.push((incarnation, now));
    }

    /// When incarnation `incarnation` of node `id` was last heard from.
    pub fn incarnation_heard(&self, id: i32, incarnation: u64) -> Option<Instant> {
        self.shared
            .incarnations_heard
            .borrow()
            .get(&id)?
            .iter()
            .find(|(other, _)| *other == incarnation)
            .map(|(_, at)| *at)
    }

    /// This node's id, if it is a voter.
    pub fn voter_id(&self) -> Option<i32> {
        self.shared.voter_id
    }

    /// Hands the quorum's leadership to the most caught-up other voter
    /// heard from within [`ELECTION_TIMEOUT_MIN`] (raft-rs's
    /// MsgTransferLeader: the leader brings it up to date and tells it to
    /// stand at once, so the quorum is leaderless for a round trip instead
    /// of an election timeout). Returns the voter chosen; `None` when this
    /// node does not lead or no other voter is live.
    pub fn transfer_leadership(&self) -> Option<i32> {
        let me = self.shared.voter_id?;
        let status = self.status();
        if !status.is_leader {
            return None;
        }
        let now = Instant::now();
        let live = |id: i32| {
            self.last_heard(id)
                .is_some_and(|heard| now.saturating_duration_since(heard) < ELECTION_TIMEOUT_MIN)
        };
        // The most caught-up first; among equals, the lowest id, so the
        // choice is deterministic.
        let (target, _) = status
            .progress
            .iter()
            .filter(|(id, _)| **id != me && live(**id))
            .max_by_key(|(id, matched)| (**matched, std::cmp::Reverse(**id)))?;
        let target = *target;
        self.shared
            .inbox
            .borrow_mut()
            .push_back(Command::TransferLeadership(target));
        self.shared.inbox_signal.notify();
        Some(target)
    }

    /// Asks this voter to stand for election at once if `leader` still
    /// leads in `term` (see [`MetadataNode::campaign_now`]).
    pub fn campaign_now(&self, leader: i32, term: u64) {
        self.shared
            .inbox
            .borrow_mut()
            .push_back(Command::CampaignNow { leader, term });
        self.shared.inbox_signal.notify();
    }

    /// Since when node `id` has been disconnected with nothing heard from
    /// it, if it is.
    pub fn disconnected_since(&self, id: i32) -> Option<Instant> {
        self.shared.disconnected.borrow().get(&id).copied()
    }

    /// The latest applied image.
    pub fn image(&self) -> Arc<ClusterMetadata> {
        Arc::clone(&self.shared.image.borrow())
    }

    pub fn status(&self) -> QuorumStatus {
        self.shared.status.borrow().clone()
    }

    /// When a message from node `id` last arrived.
    pub fn last_heard(&self, id: i32) -> Option<Instant> {
        self.shared.last_heard.borrow().get(&id).copied()
    }

    /// Notified whenever the image or status may have changed.
    pub fn changes(&self) -> &Signal {
        &self.shared.progress_signal
    }

    /// A message from a peer. Dropped when the inbox is full (the driver
    /// fell behind): raft-rs sends again. (Its transport records the peer
    /// as heard from, if it is the registered process.)
    pub fn deliver(&self, message: Message) {
        let mut inbox = self.shared.inbox.borrow_mut();
        if inbox.len() >= QUORUM_INBOX_MAX {
            return;
        }
        inbox.push_back(Command::Step(message));
        drop(inbox);
        self.shared.inbox_signal.notify();
    }

    /// Proposes records that commit together and waits until this node has
    /// applied them; returns the index they were applied at. A follower
    /// forwards them to the leader, so only for records that hold whatever
    /// the image is (a broker's own registration).
    pub async fn write(
        &self,
        records: Vec<MetadataRecord>,
        deadline: Instant,
    ) -> Result<u64, WriteError> {
        self.submit(records, None, deadline).await
    }

    /// Writes a controller decision computed from the image while this node
    /// led in `term` ([`QuorumStatus::term`] when `can_decide` was true).
    /// Fails with [`WriteError::NotLeader`] if this node no longer leads in
    /// that term when the proposal reaches Raft, never forwarded.
    pub async fn decide(
        &self,
        term: u64,
        records: Vec<MetadataRecord>,
        deadline: Instant,
    ) -> Result<u64, WriteError> {
        self.submit(records, Some(term), deadline).await
    }

    async fn submit(
        &self,
        records: Vec<MetadataRecord>,
        decided_in: Option<u64>,
        deadline: Instant,
    ) -> Result<u64, WriteError> {
        if let Some(failure) = self.shared.failure.borrow().as_ref() {
            return Err(WriteError::Failed(failure.clone()));
        }
        if let Some(observing) = &self.shared.observing {
            if decided_in.is_some() {
                return Err(WriteError::NotLeader {
                    leader: self.status().leader,
                });
            }
            return crate::observer::propose(observing, self.status().leader, &records, deadline)
                .await;
        }
        let ticket = self.shared.next_ticket.get() + 1;
        self.shared.next_ticket.set(ticket);
        self.shared.inbox.borrow_mut().push_back(Command::Propose {
            ticket,
            records,
            decided_in,
        });
        self.shared.inbox_signal.notify();
        let shared = Rc::clone(&self.shared);
        let outcome = self.shared.progress_signal.wait_for(move || {
            if let Some(outcome) = shared.outcomes.borrow_mut().remove(&ticket) {
                return Some(outcome);
            }
            let failure = shared.failure.borrow();
            failure
                .as_ref()
                .map(|failure| Err(WriteError::Failed(failure.clone())))
        });
        let result = within(deadline, outcome).await;
        if result.is_err() {
            // Forget the ticket so a late outcome does not linger.
            let shared = &self.shared;
            shared
                .proposed
                .borrow_mut()
                .retain(|_, waiting| *waiting != ticket);
            shared.outcomes.borrow_mut().remove(&ticket);
        }
        result
    }
}

async fn within<T>(
    deadline: Instant,
    future: impl std::future::Future<Output = Result<T, WriteError>>,
) -> Result<T, WriteError> {
    let timeout = async {
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        Err(WriteError::TimedOut)
    };
    future.or(timeout).await
}

/// Stops this node's part in the metadata quorum for good (until the
/// process restarts): its writes fail with `reason` from now on, and the
/// other voters stop hearing from it, so the active controller fences its
/// broker and moves its leaderships.
fn leave_quorum(shared: &Shared, reason: String) {
    tracing::error!(
        %reason,
        "this node stops taking part in the metadata quorum until restarted"
    );
    fail(shared, reason);
}

/// Writes fail with `reason` from now on, and this node no longer says it
/// leads: its controller must not act on a leadership it cannot use.
fn fail(shared: &Shared, reason: String) {
    *shared.failure.borrow_mut() = Some(reason);
    {
        let mut status = shared.status.borrow_mut();
        status.leader = None;
        status.is_leader = false;
        status.can_decide = false;
        status.progress.clear();
        status.leading_since = None;
    }
    shared.progress_signal.notify();
}

/// Why the driver stopped driving its node.
enum Halt {
    /// Its log disagrees with the quorum's: the directory is damaged; for
    /// good.
    Diverged(String),
    /// A write of its metadata log failed (a full disk): it may be ahead of
    /// its disk, and takes part again once it can write and has reopened
    /// its log.
    LogFailed(String),
}

async fn drive<S: Storage>(shared: Rc<Shared>, mut node: MetadataNode<S>, transport: Transport) {
    // The image index a reopened node must reach before its image is
    // published: it replays its log from its snapshot, and an older image
    // (a deleted topic back, an earlier leader) must never be acted on.
    let mut publish_from = 0;
    loop {
        match run(&shared, &mut node, &transport, publish_from).await {
            Halt::Diverged(reason) => {
                leave_quorum(&shared, reason);
                return;
            }
            Halt::LogFailed(reason) => {
                tracing::error!(
                    %reason,
                    "this node stops taking part in the metadata quorum until its metadata log \
                     can be written again"
                );
                publish_from = shared.status.borrow().applied;
                fail(&shared, reason);
                node = rejoin(&shared, &node).await;
            }
        }
    }
}

/// Waits until the failed `node`'s disk has room for metadata again, then
/// opens it again from its disk; meanwhile nothing queued for it is kept:
/// peers' messages are stale by then (raft-rs sends again), and proposals
/// were answered with the failure.
async fn rejoin<S: Storage>(shared: &Shared, failed: &MetadataNode<S>) -> MetadataNode<S> {
    loop {
        glommio::timer::sleep(QUORUM_REJOIN_INTERVAL).await;
        shared.inbox.borrow_mut().clear();
        if !failed.has_room().await {
            continue;
        }
        match failed.reopen().await {
            Ok(node) => {
                // No await from here on: nothing can queue in between.
                shared.inbox.borrow_mut().clear();
                *shared.failure.borrow_mut() = None;
                tracing::info!(
                    "the metadata log can be written again: this node takes part in the \
                     metadata quorum again"
                );
                shared.progress_signal.notify();
                return node;
            }
            Err(error) => {
                tracing::warn!(%error, "reopening the metadata log failed; trying again");
            }
        }
    }
}

/// Drives `node` until it must stop.
async fn run<S: Storage>(
    shared: &Rc<Shared>,
    node: &mut MetadataNode<S>,
    transport: &Transport,
    publish_from: u64,
) -> Halt {
    let mut next_tick = Instant::now() + TICK_INTERVAL;
    // An image change held back below `publish_from`.
    let mut unpublished = false;
    loop {
        let now = Instant::now();
        if now >= next_tick {
            node.tick();
            next_tick = now + TICK_INTERVAL;
        } else if shared.inbox.borrow().is_empty() {
            let waiting = Rc::clone(shared);
            let woken = shared
                .inbox_signal
                .wait_for(move || (!waiting.inbox.borrow().is_empty()).then_some(()));
            let slept = glommio::timer::sleep(next_tick.saturating_duration_since(now));
            woken.or(slept).await;
            continue;
        }
        let commands: Vec<Command> = shared.inbox.borrow_mut().drain(..).collect();
        for command in commands {
            let stepped = match command {
                Command::Step(message) => node.step(message),
                Command::Propose {
                    ticket,
                    records,
                    decided_in,
                } => match match decided_in {
                    Some(term) => node.propose_decision(term, &records),
                    None => node.propose(&records),
                } {
                    Ok(id) => {
                        shared.proposed.borrow_mut().insert(id, ticket);
                        Ok(())
                    }
                    Err(error) => {
                        let error = match error {
                            ProposeError::NotLeader { leader } => WriteError::NotLeader { leader },
                            ProposeError::TooLarge { bytes } => WriteError::TooLarge { bytes },
                        };
                        shared.outcomes.borrow_mut().insert(ticket, Err(error));
                        Ok(())
                    }
                },
                Command::TransferLeadership(target) => {
                    node.transfer_leadership(target);
                    Ok(())
                }
                Command::CampaignNow { leader, term } => node.campaign_now(leader, term),
            };
            if let Err(diverged) = stepped {
                return Halt::Diverged(format!(
                    "this node's metadata log disagrees with the quorum's ({diverged}); its \
                     metadata directory is damaged or was replaced"
                ));
            }
        }
        match node.process().await {
            Ok(processed) => {
                for message in processed.messages {
                    transport(message);
                }
                for (id, index) in processed.applied {
                    if let Some(ticket) = shared.proposed.borrow_mut().remove(&id) {
                        shared.outcomes.borrow_mut().insert(ticket, Ok(index));
                    }
                }
                unpublished |= processed.image_changed;
                if unpublished && node.applied() >= publish_from {
                    let mut image = node.image().clone();
                    image.controller = node.leader();
                    *shared.image.borrow_mut() = Arc::new(image);
                    unpublished = false;
                }
            }
            // The in-memory log may now be ahead of the disk: this node
            // stops rather than vote or ack on it.
            Err(error) => return Halt::LogFailed(format!("the metadata log failed: {error}")),
        }
        // Kept while this node leads in the same term; a new term, or a
        // first round as leader, starts the clock again.
        let leading_since = node.is_leader().then(|| {
            let previous = shared.status.borrow();
            match previous.leading_since {
                Some(since) if previous.is_leader && previous.term == node.term() => since,
                _ => Instant::now(),
            }
        });
        let status = QuorumStatus {
            leader: node.leader(),
            term: node.term(),
            is_leader: node.is_leader(),
            can_decide: node.can_decide(),
            log_end: node.log_end(),
            applied: node.applied(),
            progress: if node.is_leader() {
                node.progress()
            } else {
                BTreeMap::new()
            },
            leading_since,
        };
        *shared.status.borrow_mut() = status;
        shared.progress_signal.notify();
    }
}
