//! A classic consumer group in memory: its members, its state, its committed
//! offsets. Pure data and the decisions that need no I/O (protocol
//! selection, what a record says); the coordinator in `mod.rs` drives the
//! transitions and writes the records.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use bytes::Bytes;
use glommio::channels::local_channel::LocalSender;

use super::records::{GroupValue, MemberValue, OffsetValue};

/// Kafka's classic group states, with the names DescribeGroups and
/// ListGroups report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    /// No members; may still hold committed offsets.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment (SyncGroup).
    CompletingRebalance,
    Stable,
    /// Being removed; never kept in the coordinator's map for long.
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// One member of a JoinGroup response's member list (leader only).
#[derive(Clone, Debug)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// What a JoinGroup gets back, whatever the version.
#[derive(Clone, Debug, Default)]
pub struct JoinOutcome {
    pub error_code: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<JoinedMember>,
    pub skip_assignment: bool,
}

impl JoinOutcome {
    pub fn error(error_code: i16, member_id: &str) -> JoinOutcome {
        JoinOutcome {
            error_code,
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

/// What a SyncGroup gets back.
#[derive(Clone, Debug, Default)]
pub struct SyncOutcome {
    pub error_code: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    pub fn error(error_code: i16) -> SyncOutcome {
        SyncOutcome {
            error_code,
            ..Default::default()
        }
    }
}

/// A member of a classic group.
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// Protocol names in the member's order of preference, with metadata.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// Set while a JoinGroup of this member waits for the rebalance.
    pub join_waiter: Option<LocalSender<JoinOutcome>>,
    /// Set while a SyncGroup of this member waits for the leader.
    pub sync_waiter: Option<LocalSender<SyncOutcome>>,
    /// Last sign of life (heartbeat, join, sync, commit).
    pub last_heartbeat: Instant,
    /// Names this member's session timer; a timer holding another value is
    /// stale and stops.
    pub timer: u64,
}

impl Member {
    /// The member's metadata for `protocol` (empty if it does not support it).
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    /// Whether a rejoin with these protocols changes nothing.
    pub fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// Whether a request is waiting on this member's behalf (then the
    /// session timer does not expire it: Kafka's "satisfied heartbeat").
    pub fn is_waiting(&self) -> bool {
        self.join_waiter.is_some() || self.sync_waiter.is_some()
    }
}

/// Where a rebalance in PreparingRebalance stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinPhase {
    /// `group.initial.rebalance.delay.ms` is running for a group that was
    /// empty: the join does not complete early, so more members can arrive.
    InitialDelay,
    /// Completes as soon as every member has rejoined, or at the rebalance
    /// timeout.
    Normal,
}

/// A consumer group on its coordinator shard.
pub struct Group {
    pub id: String,
    /// The `__consumer_offsets` partition holding its records.
    pub partition: i32,
    pub state: GroupState,
    /// When the state last changed (ms since the epoch); offsets of an
    /// Empty group expire `offsets.retention.minutes` after it emptied.
    pub state_timestamp: i64,
    pub generation: i32,
    /// `None` for a group that only commits offsets (assign() users).
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// Ordered by member id, so "the first member" is the same on every run.
    pub members: BTreeMap<String, Member>,
    /// KIP-394: member ids handed out with MEMBER_ID_REQUIRED that have not
    /// joined yet, with their timer tokens.
    pub pending_members: HashMap<String, u64>,
    /// group.instance.id → member id (KIP-345).
    pub static_members: HashMap<String, String>,
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
    /// Counts rebalances, so a timer of an earlier one does nothing.
    pub rebalance: u64,
    pub join_phase: JoinPhase,
    /// A member joined during the initial delay (it is then extended).
    pub new_member_added: bool,
    /// Members that got this generation's join response and have not sent
    /// SyncGroup yet.
    pub awaiting_sync: BTreeSet<String>,
    /// The group metadata last written to the log (what a restart sees);
    /// the log rewrite copies it.
    pub persisted: Option<GroupValue>,
    /// Set while the group runs the KIP-848 consumer protocol; the classic
    /// member fields are then empty.
    pub consumer: Option<super::consumer::ConsumerGroup>,
}

impl Group {
    pub fn new(id: String, partition: i32, now_ms: i64) -> Group {
        Group {
            id,
            partition,
            state: GroupState::Empty,
            state_timestamp: now_ms,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            offsets: BTreeMap::new(),
            rebalance: 0,
            join_phase: JoinPhase::Normal,
            new_member_added: false,
            awaiting_sync: BTreeSet::new(),
            persisted: None,
            consumer: None,
        }
    }

    pub fn set_state(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp = now_ms;
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// The largest rebalance timeout of the members: how long a rebalance
    /// may wait for them.
    pub fn rebalance_timeout_ms(&self) -> i32 {
        self.members
            .values()
            .map(|member| member.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut candidates: Vec<String> = first
            .protocols
            .iter()
            .map(|(name, _)| name.clone())
            .collect();
        for member in members {
            candidates.retain(|name| member.protocols.iter().any(|(other, _)| other == name));
        }
        candidates
    }

    /// Kafka's rule for whether a member may join: an empty group takes any
    /// protocol type with at least one protocol; a non-empty one needs the
    /// same type and a protocol in common with every member.
    pub fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols.iter().any(|(name, _)| candidates.contains(name))
    }

    /// Kafka's protocol selection: among the protocols all members support,
    /// each member votes for its most preferred; most votes wins (ties go to
    /// the leader's preference order).
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        if candidates.is_empty() {
            return None;
        }
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(name, _)| candidates.contains(name))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let order: Vec<&str> = match self
            .leader
            .as_ref()
            .and_then(|leader| self.members.get(leader))
        {
            Some(leader) => leader
                .protocols
                .iter()
                .map(|(name, _)| name.as_str())
                .collect(),
            None => candidates.iter().map(String::as_str).collect(),
        };
        let mut best: Option<(&str, usize)> = None;
        for name in order
            .into_iter()
            .filter(|name| candidates.iter().any(|candidate| candidate == name))
        {
            let count = votes.get(name).copied().unwrap_or(0);
            if best.is_none_or(|(_, most)| count > most) {
                best = Some((name, count));
            }
        }
        best.map(|(name, _)| name.to_string())
    }

    /// Whether every member has rejoined and no KIP-394 member is expected.
    pub fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty()
            && self
                .members
                .values()
                .all(|member| member.join_waiter.is_some())
    }

    /// The group's metadata record value (assignments as they are now).
    pub fn to_value(&self) -> GroupValue {
        let protocol = self.protocol.clone();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_timestamp,
            members: self
                .members
                .values()
                .map(|member| MemberValue {
                    member_id: member.id.clone(),
                    instance_id: member.instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    session_timeout_ms: member.session_timeout_ms,
                    subscription: protocol
                        .as_deref()
                        .map(|name| member.metadata(name))
                        .unwrap_or_default(),
                    assignment: member.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Restores a group from its replayed records: Stable with the stored
    /// members if it had any, else Empty. Members must heartbeat within
    /// their session timeout from `now` or they are removed.
    pub fn from_records(
        id: String,
        partition: i32,
        value: Option<GroupValue>,
        offsets: BTreeMap<(String, i32), OffsetValue>,
        now: Instant,
        now_ms: i64,
        mut next_timer: impl FnMut() -> u64,
    ) -> Group {
        let mut group = Group::new(id, partition, now_ms);
        group.offsets = offsets;
        let Some(value) = value else {
            return group;
        };
        group.generation = value.generation;
        group.protocol_type =
            (!value.protocol_type.is_empty()).then(|| value.protocol_type.clone());
        group.protocol = value.protocol.clone();
        group.leader = value.leader.clone();
        if value.state_timestamp >= 0 {
            group.state_timestamp = value.state_timestamp;
        }
        for stored in &value.members {
            let protocols = match &value.protocol {
                Some(protocol) => vec![(protocol.clone(), stored.subscription.clone())],
                None => Vec::new(),
            };
            if let Some(instance) = &stored.instance_id {
                group
                    .static_members
                    .insert(instance.clone(), stored.member_id.clone());
            }
            group.members.insert(
                stored.member_id.clone(),
                Member {
                    id: stored.member_id.clone(),
                    instance_id: stored.instance_id.clone(),
                    client_id: stored.client_id.clone(),
                    client_host: stored.client_host.clone(),
                    session_timeout_ms: stored.session_timeout_ms,
                    rebalance_timeout_ms: stored.rebalance_timeout_ms,
                    protocol_type: value.protocol_type.clone(),
                    protocols,
                    assignment: stored.assignment.clone(),
                    join_waiter: None,
                    sync_waiter: None,
                    last_heartbeat: now,
                    timer: next_timer(),
                },
            );
        }
        if group
            .leader
            .as_ref()
            .is_some_and(|leader| !group.members.contains_key(leader))
        {
            group.leader = group.members.keys().next().cloned();
        }
        group.state = if group.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        group.persisted = Some(value);
        group
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, protocols: &[&str]) -> Member {
        Member {
            id: id.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: String::new(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 20_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|name| (name.to_string(), Bytes::from(name.to_string())))
                .collect(),
            assignment: Bytes::new(),
            join_waiter: None,
            sync_waiter: None,
            last_heartbeat: Instant::now(),
            timer: 0,
        }
    }

    #[test]
    fn protocol_selection_follows_votes_among_common_protocols() {
        let mut group = Group::new("g".into(), 0, 0);
        group.protocol_type = Some("consumer".into());
        group
            .members
            .insert("a".into(), member("a", &["range", "roundrobin"]));
        group
            .members
            .insert("b".into(), member("b", &["roundrobin", "range"]));
        group
            .members
            .insert("c".into(), member("c", &["roundrobin", "sticky"]));
        group.leader = Some("a".into());
        // Only roundrobin is common to all three.
        assert_eq!(group.select_protocol().as_deref(), Some("roundrobin"));
        assert!(group.supports("consumer", &[("roundrobin".into(), Bytes::new())]));
        assert!(!group.supports("consumer", &[("range".into(), Bytes::new())]));
        assert!(!group.supports("connect", &[("roundrobin".into(), Bytes::new())]));
        assert!(!group.supports("consumer", &[]));
        group.members.remove("c");
        // a votes range, b votes roundrobin: a tie goes to the leader's order.
        assert_eq!(group.select_protocol().as_deref(), Some("range"));
    }

    #[test]
    fn stored_groups_come_back_stable_with_their_members() {
        let mut group = Group::new("g".into(), 3, 0);
        group.protocol_type = Some("consumer".into());
        group.protocol = Some("range".into());
        group.generation = 5;
        let mut first = member("m1", &["range"]);
        first.instance_id = Some("i1".into());
        first.assignment = Bytes::from_static(b"p0");
        group.members.insert("m1".into(), first);
        group.leader = Some("m1".into());
        let value = group.to_value();
        let mut token = 0;
        let restored = Group::from_records(
            "g".into(),
            3,
            Some(value),
            BTreeMap::new(),
            Instant::now(),
            0,
            || {
                token += 1;
                token
            },
        );
        assert_eq!(restored.state, GroupState::Stable);
        assert_eq!(restored.generation, 5);
        assert_eq!(
            restored.static_members.get("i1").map(String::as_str),
            Some("m1")
        );
        assert_eq!(restored.members["m1"].assignment, Bytes::from_static(b"p0"));
        assert_eq!(
            restored.members["m1"].metadata("range"),
            Bytes::from_static(b"range")
        );
    }
}
