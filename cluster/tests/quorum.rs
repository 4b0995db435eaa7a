//! The metadata quorum driven deterministically: three nodes in one process
//! over a simulated network that drops and reorders messages, with nodes
//! losing power (unsynced writes torn or lost) and restarting. Whatever the
//! schedule, nodes that applied the same index hold the same image, every
//! proposal a leader reported applied is in the final image, and once the
//! network heals every node converges.

use std::collections::BTreeMap;
use std::path::Path;

use futures_lite::future::block_on;
use raft::prelude::Message;
use sluice_cluster::node::node_id;
use sluice_cluster::wal::Wal;
use sluice_cluster::{MetadataNode, MetadataRecord, NodeConfig, ProposeError};
use sluice_engine::{ClusterMetadata, MemStorage, PartitionState};

/// xorshift64*: a seeded schedule without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const VOTERS: [i32; 3] = [0, 1, 2];

struct Sim {
    rng: Rng,
    storages: Vec<MemStorage>,
    nodes: Vec<Option<MetadataNode<MemStorage>>>,
    network: Vec<Message>,
    /// Image seen at each applied index, by any node.
    history: BTreeMap<u64, ClusterMetadata>,
    /// Topics whose creation a leader reported applied.
    acknowledged: Vec<String>,
    pending: BTreeMap<(i32, u64, u64), String>,
    starts: u64,
    created: u64,
    snapshot_entries: u64,
}

fn config(node: i32, incarnation: u64, snapshot_entries: u64) -> NodeConfig {
    NodeConfig {
        node_id: node,
        incarnation,
        voters: VOTERS.to_vec(),
        snapshot_entries,
        snapshot_bytes: u64::MAX,
    }
}

impl Sim {
    fn new(seed: u64, snapshot_entries: u64) -> Sim {
        let mut sim = Sim {
            rng: Rng(seed | 1),
            storages: VOTERS
                .iter()
                .map(|node| MemStorage::new(seed + *node as u64))
                .collect(),
            nodes: Vec::new(),
            network: Vec::new(),
            history: BTreeMap::new(),
            acknowledged: Vec::new(),
            pending: BTreeMap::new(),
            created: 0,
            snapshot_entries,
            starts: 0,
        };
        for node in VOTERS {
            let opened = sim.open(node);
            sim.nodes.push(Some(opened));
        }
        sim
    }

    fn open(&mut self, node: i32) -> MetadataNode<MemStorage> {
        self.starts += 1;
        let wal = Wal::new(self.storages[node as usize].clone(), Path::new("/data"));
        block_on(MetadataNode::open(
            config(node, self.starts, self.snapshot_entries),
            wal,
            None,
        ))
        .expect("node opens")
    }

    fn process(&mut self, index: usize) {
        let Some(node) = self.nodes[index].as_mut() else {
            return;
        };
        let processed = block_on(node.process()).expect("process");
        let image = node.image().clone();
        if processed.image_changed {
            match self.history.get(&image.version) {
                Some(seen) => assert_eq!(
                    seen, &image,
                    "node {index} applied index {} to a different image",
                    image.version
                ),
                None => {
                    self.history.insert(image.version, image);
                }
            }
        }
        for (id, _) in processed.applied {
            if let Some(topic) = self.pending.remove(&(id.node, id.incarnation, id.sequence)) {
                self.acknowledged.push(topic);
            }
        }
        self.network.extend(processed.messages);
    }

    fn propose(&mut self) {
        for index in 0..self.nodes.len() {
            let Some(node) = self.nodes[index].as_mut() else {
                continue;
            };
            if !node.can_decide() {
                continue;
            }
            self.created += 1;
            let name = format!("topic-{}", self.created);
            let records = [
                MetadataRecord::Topic {
                    name: name.clone(),
                    id: [self.created as u8; 16],
                    configs: BTreeMap::new(),
                },
                MetadataRecord::Partition {
                    topic: name.clone(),
                    partition: 0,
                    state: PartitionState::led_by(index as i32),
                },
            ];
            let id = node.propose(&records).expect("leader takes proposals");
            self.pending
                .insert((id.node, id.incarnation, id.sequence), name);
        }
    }

    /// One step of the schedule. `faults`: drop, reorder and crash.
    fn step(&mut self, faults: bool, proposing: bool) {
        for index in 0..self.nodes.len() {
            if let Some(node) = self.nodes[index].as_mut() {
                node.tick();
            }
        }
        if proposing && self.rng.below(3) == 0 {
            self.propose();
        }
        let mut messages = std::mem::take(&mut self.network);
        if faults {
            // Reorder: a few random swaps.
            for _ in 0..messages.len() / 2 {
                let a = self.rng.below(messages.len() as u64) as usize;
                let b = self.rng.below(messages.len() as u64) as usize;
                messages.swap(a, b);
            }
        }
        for message in messages {
            if faults && self.rng.below(10) == 0 {
                continue;
            }
            let to = node_id(message.to) as usize;
            if let Some(node) = self.nodes.get_mut(to).and_then(Option::as_mut) {
                node.step(message).expect("no node's log diverges");
            }
        }
        for index in 0..self.nodes.len() {
            self.process(index);
        }
        if faults && self.rng.below(40) == 0 {
            let victim = self.rng.below(self.nodes.len() as u64) as usize;
            if self.nodes[victim].take().is_some() {
                // Power loss: unsynced writes are torn or lost.
                self.storages[victim] = self.storages[victim].crash();
                // Proposals in flight may still commit through the others;
                // only acknowledged ones are checked.
            }
        }
        for index in 0..self.nodes.len() {
            if faults && self.nodes[index].is_none() && self.rng.below(5) == 0 {
                let reopened = self.open(index as i32);
                self.nodes[index] = Some(reopened);
            }
        }
    }
}

fn run(seed: u64, snapshot_entries: u64) {
    let mut sim = Sim::new(seed, snapshot_entries);
    for _ in 0..3_000 {
        sim.step(true, true);
    }
    for index in 0..sim.nodes.len() {
        if sim.nodes[index].is_none() {
            let reopened = sim.open(index as i32);
            sim.nodes[index] = Some(reopened);
        }
    }
    // Healed: no loss, no crashes, one last proposal that must commit,
    // then every node must apply the same.
    let mut converged = false;
    let mut last_proposed = false;
    for _ in 0..2_000 {
        let propose = !last_proposed
            && sim
                .nodes
                .iter()
                .any(|node| node.as_ref().is_some_and(|node| node.can_decide()));
        if propose {
            sim.propose();
            last_proposed = true;
        }
        sim.step(false, false);
        let images: Vec<&ClusterMetadata> = sim
            .nodes
            .iter()
            .map(|node| node.as_ref().expect("all up").image())
            .collect();
        let last = format!("topic-{}", sim.created);
        if last_proposed
            && sim.acknowledged.contains(&last)
            && images.windows(2).all(|pair| pair[0] == pair[1])
        {
            converged = true;
            break;
        }
    }
    if !converged {
        for node in sim.nodes.iter().flatten() {
            eprintln!(
                "node {}: leader {:?} term {} applied {} log end {} topics {}",
                node.node_id(),
                node.leader(),
                node.term(),
                node.applied(),
                node.log_end(),
                node.image().topics.len()
            );
        }
    }
    assert!(
        converged,
        "seed {seed}: nodes did not converge after healing"
    );
    let image = sim.nodes[0].as_ref().expect("up").image().clone();
    for topic in &sim.acknowledged {
        assert!(
            image.topics.contains_key(topic),
            "seed {seed}: acknowledged {topic} is missing"
        );
    }
    assert!(
        sim.acknowledged.len() > 20,
        "seed {seed}: only {} proposals were acknowledged; the schedule made no progress",
        sim.acknowledged.len()
    );
    let leaders = sim
        .nodes
        .iter()
        .filter(|node| node.as_ref().expect("up").is_leader())
        .count();
    assert_eq!(leaders, 1, "seed {seed}: {leaders} leaders after healing");
}

#[test]
fn images_agree_under_loss_reordering_and_power_loss() {
    for seed in 1..=8 {
        run(seed, 1_000_000);
    }
}

#[test]
fn nodes_catch_up_through_snapshots() {
    for seed in 11..=16 {
        run(seed, 16);
    }
}

fn topic_record(name: &str) -> MetadataRecord {
    MetadataRecord::Topic {
        name: name.to_string(),
        id: [0xee; 16],
        configs: BTreeMap::new(),
    }
}

/// Steps the healthy schedule until `done` holds; panics after `steps`.
fn step_until(sim: &mut Sim, steps: usize, what: &str, done: impl Fn(&Sim) -> bool) {
    for _ in 0..steps {
        if done(sim) {
            return;
        }
        sim.step(false, false);
    }
    panic!("{what} did not happen within {steps} steps");
}

fn decider(sim: &Sim) -> Option<usize> {
    sim.nodes
        .iter()
        .position(|node| node.as_ref().is_some_and(|node| node.can_decide()))
}

/// A leader paused past the election timeout (SIGSTOP, a long stall) is
/// deposed, and on waking still believes it leads. A decision it made
/// against its stale image must never commit: not when it reaches Raft
/// before the node hears of the new term (it is appended in the old term
/// and overwritten), and not after (it is refused, never forwarded to the
/// new leader). A self-contained record through the forwarding path does
/// commit, so the schedule could show a stale commit if one happened.
#[test]
fn a_deposed_leader_cannot_commit_its_stale_decisions() {
    let mut sim = Sim::new(5, 1_000_000);
    step_until(&mut sim, 500, "a first election", |sim| {
        decider(sim).is_some()
    });
    let old = decider(&sim).expect("a leader");
    let mut paused = sim.nodes[old].take().expect("up");
    let old_term = paused.term();
    step_until(
        &mut sim,
        500,
        "an election without the paused leader",
        |sim| decider(sim).is_some(),
    );
    let new = decider(&sim).expect("a new leader");
    assert!(sim.nodes[new].as_ref().expect("up").term() > old_term);

    // Woken, before hearing from anyone: it still leads in its old term.
    assert!(paused.can_decide());
    paused
        .propose_decision(old_term, &[topic_record("decided-while-paused")])
        .expect("still leads in its own view");
    sim.nodes[old] = Some(paused);
    step_until(&mut sim, 500, "the woken node following", |sim| {
        sim.nodes[old].as_ref().expect("up").leader() == Some(new as i32)
    });

    // Now a follower: a decision from its old term is refused.
    let woken = sim.nodes[old].as_mut().expect("up");
    assert!(matches!(
        woken.propose_decision(old_term, &[topic_record("decided-after-waking")]),
        Err(ProposeError::NotLeader { leader: Some(leader) }) if leader == new as i32
    ));
    woken
        .propose(&[topic_record("registered-after-waking")])
        .expect("a follower forwards self-contained records");
    step_until(
        &mut sim,
        500,
        "the forwarded record applied everywhere",
        |sim| {
            sim.nodes.iter().all(|node| {
                node.as_ref()
                    .expect("up")
                    .image()
                    .topics
                    .contains_key("registered-after-waking")
            })
        },
    );
    for _ in 0..50 {
        sim.step(false, false);
    }
    for image in sim.history.values() {
        for stale in ["decided-while-paused", "decided-after-waking"] {
            assert!(
                !image.topics.contains_key(stale),
                "the deposed leader's decision {stale} was applied at index {}",
                image.version
            );
        }
    }
}

/// Delivers messages, round after round, with no node ticking (so no
/// timeout can elect anyone), until node `target` leads; at most
/// `rounds_max` rounds.
fn deliver_until_it_leads(sim: &mut Sim, target: usize, rounds_max: usize) {
    let mut rounds = 0;
    while !sim.nodes[target].as_ref().expect("up").can_decide() {
        assert!(
            rounds < rounds_max,
            "node {target} did not lead within {rounds} message rounds"
        );
        for message in std::mem::take(&mut sim.network) {
            let to = node_id(message.to) as usize;
            if let Some(node) = sim.nodes.get_mut(to).and_then(Option::as_mut) {
                node.step(message).expect("no node's log diverges");
            }
        }
        for index in 0..sim.nodes.len() {
            sim.process(index);
        }
        rounds += 1;
    }
}

/// A leader's handover (the active controller's controlled shutdown): the
/// voter it names leads after a few message rounds and no tick at all,
/// where the others would wait out an election timeout (at least
/// `ELECTION_TICKS` ticks) after losing it; in the next term (a transfer
/// skips pre-vote) and with every acknowledged entry.
#[test]
fn a_leader_hands_over_to_the_voter_it_names_without_waiting_for_a_timeout() {
    /// Message rounds a handover takes: append, its answer, MsgTimeoutNow,
    /// vote requests, votes, the new leader's first entry and its
    /// acknowledgements, with room to spare.
    const ROUNDS_MAX: usize = 12;
    let mut sim = Sim::new(7, 1_000_000);
    step_until(&mut sim, 500, "a first election", |sim| {
        decider(sim).is_some()
    });
    let old = decider(&sim).expect("a leader");
    for _ in 0..5 {
        sim.propose();
        sim.step(false, false);
    }
    let term = sim.nodes[old].as_ref().expect("up").term();
    let target = (old + 1) % VOTERS.len();
    sim.nodes[old]
        .as_mut()
        .expect("up")
        .transfer_leadership(target as i32);
    sim.process(old);
    deliver_until_it_leads(&mut sim, target, ROUNDS_MAX);
    let new = sim.nodes[target].as_ref().expect("up");
    assert_eq!(new.term(), term + 1, "one election, without pre-vote");
    assert!(!sim.nodes[old].as_ref().expect("up").is_leader());
    assert!(!sim.acknowledged.is_empty());
    for topic in &sim.acknowledged {
        assert!(new.image().topics.contains_key(topic), "{topic} lost");
    }
}

/// A follower that saw its leader's process die stands at once: it leads
/// after a few message rounds and no tick (the other follower grants its
/// vote despite its leader lease), in the next term and with every
/// acknowledged entry. A request naming a leader or term that is no longer
/// current changes nothing.
#[test]
fn a_follower_replaces_a_dead_leader_without_waiting_for_a_timeout() {
    /// Message rounds an election takes: vote requests, votes, the new
    /// leader's first entry and its acknowledgements, with room to spare.
    const ROUNDS_MAX: usize = 12;
    let mut sim = Sim::new(11, 1_000_000);
    step_until(&mut sim, 500, "a first election", |sim| {
        decider(sim).is_some()
    });
    let old = decider(&sim).expect("a leader");
    for _ in 0..5 {
        sim.propose();
        sim.step(false, false);
    }
    let term = sim.nodes[old].as_ref().expect("up").term();
    let target = (old + 1) % VOTERS.len();
    // The leader's process dies: it sends nothing more.
    sim.nodes[old] = None;
    sim.network
        .retain(|message| node_id(message.from) as usize != old);
    let stale = (old + 2) % VOTERS.len();
    let follower = sim.nodes[target].as_mut().expect("up");
    let stand = "standing for election";
    follower.campaign_now(stale as i32, term).expect(stand);
    follower.campaign_now(old as i32, term + 1).expect(stand);
    assert_eq!(follower.term(), term, "stale requests change nothing");
    follower.campaign_now(old as i32, term).expect(stand);
    sim.process(target);
    deliver_until_it_leads(&mut sim, target, ROUNDS_MAX);
    let new = sim.nodes[target].as_ref().expect("up");
    assert_eq!(new.term(), term + 1, "one election, without pre-vote");
    assert!(!sim.acknowledged.is_empty());
    for topic in &sim.acknowledged {
        assert!(new.image().topics.contains_key(topic), "{topic} lost");
    }
}

/// A follower whose metadata log lost entries it had acknowledged (its
/// directory replaced by an empty one here; a damaged one or a disk that
/// lied about a sync does the same) hears from a leader that counts those
/// entries as replicated to it. raft-rs cannot go on from there and
/// panics; the node returns [`Diverged`] instead, naming the message, so
/// that its owner leaves the quorum with a log line and the broker stays
/// up. The other two keep the quorum and go on committing.
#[test]
fn a_follower_that_lost_acknowledged_entries_reports_it_instead_of_panicking() {
    /// Healthy steps in which the leader must reach the wiped follower.
    const STEPS_MAX: usize = 200;
    let mut sim = Sim::new(21, 1_000_000);
    step_until(&mut sim, 500, "a first election", |sim| {
        decider(sim).is_some()
    });
    for _ in 0..5 {
        sim.propose();
        sim.step(false, false);
    }
    let leader = decider(&sim).expect("a leader");
    let victim = (leader + 1) % VOTERS.len();
    step_until(&mut sim, 200, "the entries on every node", |sim| {
        let applied = |index: usize| sim.nodes[index].as_ref().expect("up").applied();
        applied(victim) == applied(leader)
    });
    let acknowledged_before = sim.acknowledged.len();
    assert!(acknowledged_before > 0);
    sim.nodes[victim] = None;
    sim.storages[victim] = sluice_engine::MemStorage::new(99);
    let wiped = sim.open(victim as i32);
    sim.nodes[victim] = Some(wiped);

    let mut diverged = None;
    for _ in 0..STEPS_MAX {
        for node in sim.nodes.iter_mut().flatten() {
            node.tick();
        }
        sim.propose();
        for message in std::mem::take(&mut sim.network) {
            let to = node_id(message.to) as usize;
            let Some(node) = sim.nodes.get_mut(to).and_then(Option::as_mut) else {
                continue;
            };
            match node.step(message) {
                Ok(()) => {}
                Err(error) if to == victim => {
                    diverged = Some(error);
                    // Its owner stops using it: gone from the quorum.
                    sim.nodes[victim] = None;
                }
                Err(error) => panic!("node {to} diverged: {error}"),
            }
        }
        for index in 0..sim.nodes.len() {
            sim.process(index);
        }
        if diverged.is_some() && sim.acknowledged.len() > acknowledged_before + 3 {
            break;
        }
    }
    let diverged = diverged.expect("the wiped follower's log contradicts the leader's");
    assert!(
        diverged.0.contains(&format!("from node {leader}")),
        "names the leader's message: {diverged}"
    );
    assert!(
        sim.acknowledged.len() > acknowledged_before + 3,
        "the other two go on committing: {} then {}",
        acknowledged_before,
        sim.acknowledged.len()
    );
}
