//! KIP-848 consumer groups: ConsumerGroupHeartbeat and ConsumerGroupDescribe
//! on the coordinator shard.
//!
//! The broker owns the assignment. Every change of membership, of a
//! subscription or of a subscribed topic's partition count bumps the group
//! epoch; the server-side assignor (`assignor`) then computes a target
//! assignment at that epoch, synchronously, inside the heartbeat that caused
//! it. Each member reconciles towards its target on its own heartbeats:
//! partitions it must give up are first listed as pending revocation (its
//! epoch stays), and once its heartbeat reports them gone it moves to the
//! target epoch and receives only the partitions no other member still owns
//! (assigned or pending revocation), the rest as soon as they are released.
//! So a partition never has two owners.
//!
//! Each change is written to `__consumer_offsets` as Kafka's consumer-group
//! records (`consumer_records`) in the same synchronous step that makes it,
//! and the heartbeat answers once they are durable. A group runs one
//! protocol at a time: an empty classic group becomes a consumer group on
//! its first consumer-protocol member and the reverse, a non-empty one
//! answers the other protocol with INCONSISTENT_GROUP_PROTOCOL (Kafka 4
//! would migrate a non-empty classic group online; that is not built).
//!
//! Subscriptions by regular expression (v1) are supported simply: the
//! pattern must match a whole topic name (RE2/J semantics, as Kafka), and
//! is re-evaluated against the topics on every heartbeat of the group.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedTopic;
use kafka_protocol::messages::ConsumerGroupHeartbeatRequest;
use sluice_engine::ClusterMetadata;

use super::assignor::{self, MemberSpec};
use super::consumer_records::{
    self as crecords, Assignment, ConsumerKey, CurrentAssignment, MemberMetadata, MemberState,
    TopicId, TopicMetadata,
};
use super::group::{Group, GroupState};
use super::records::KeyedRecord;
use super::{new_member_id, now_ms, spawn_detached, write_error_code, GroupCoordinator, Written};
use crate::broker::Broker;
use crate::config::GroupConfig;
use crate::constants::CONSUMER_GROUP_REGEX_BYTES_MAX;
use crate::errors::code;

/// The member epoch of a join.
pub const JOIN_EPOCH: i32 = 0;
/// The member epoch of a leave.
pub const LEAVE_EPOCH: i32 = -1;
/// The member epoch of a static member's temporary leave: it keeps its
/// partitions for the session timeout, for its next incarnation.
pub const LEAVE_STATIC_EPOCH: i32 = -2;
/// The protocol type consumer groups report in DescribeGroups/ListGroups.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// A member of a consumer group.
#[derive(Clone, Debug)]
pub struct ConsumerMember {
    pub id: String,
    pub metadata: MemberMetadata,
    pub current: CurrentAssignment,
    pub last_heartbeat: Instant,
    /// When the member was first asked to revoke partitions it still
    /// holds; after its rebalance timeout it is fenced.
    pub revoking_since: Option<Instant>,
    /// Names this member's session timer (a stale timer stops).
    pub timer: u64,
}

/// The consumer-protocol state of a group.
#[derive(Clone, Debug, Default)]
pub struct ConsumerGroup {
    /// The group epoch.
    pub epoch: i32,
    /// The epoch the target assignment was computed at.
    pub assignment_epoch: i32,
    /// The subscribed topics as last seen, by name.
    pub topics: Vec<TopicMetadata>,
    pub members: BTreeMap<String, ConsumerMember>,
    pub target: BTreeMap<String, Assignment>,
    /// group.instance.id → member id.
    pub static_members: HashMap<String, String>,
}

/// What a ConsumerGroupHeartbeat gets back.
#[derive(Clone, Debug, Default)]
pub struct HeartbeatOutcome {
    pub error_code: i16,
    pub error_message: Option<String>,
    pub member_id: Option<String>,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Set when the member must (re)learn its assignment.
    pub assignment: Option<Assignment>,
}

impl HeartbeatOutcome {
    pub fn error(error_code: i16, message: impl Into<Option<String>>) -> HeartbeatOutcome {
        HeartbeatOutcome {
            error_code,
            error_message: message.into(),
            ..Default::default()
        }
    }
}

/// A member as ConsumerGroupDescribe shows it.
#[derive(Clone, Debug, Default)]
pub struct DescribedConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    /// (topic id, topic name, partitions).
    pub assignment: Vec<(TopicId, String, Vec<i32>)>,
    pub target_assignment: Vec<(TopicId, String, Vec<i32>)>,
}

/// A group as ConsumerGroupDescribe shows it.
#[derive(Clone, Debug, Default)]
pub struct DescribedConsumerGroup {
    pub group_id: String,
    pub error_code: i16,
    pub error_message: Option<String>,
    pub state: &'static str,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<DescribedConsumerMember>,
}

fn contains(assignment: &Assignment, topic: &TopicId, partition: i32) -> bool {
    assignment
        .get(topic)
        .is_some_and(|partitions| partitions.contains(&partition))
}

fn intersect(left: &Assignment, right: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (topic, partitions) in left {
        if let Some(other) = right.get(topic) {
            let both: BTreeSet<i32> = partitions.intersection(other).copied().collect();
            if !both.is_empty() {
                out.insert(*topic, both);
            }
        }
    }
    out
}

fn subtract(left: &Assignment, right: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (topic, partitions) in left {
        let rest: BTreeSet<i32> = partitions
            .iter()
            .filter(|partition| !contains(right, topic, **partition))
            .copied()
            .collect();
        if !rest.is_empty() {
            out.insert(*topic, rest);
        }
    }
    out
}

fn from_owned(owned: &[OwnedTopic]) -> Assignment {
    let mut out = Assignment::new();
    for topic in owned {
        if !topic.partitions.is_empty() {
            out.entry(*topic.topic_id.as_bytes())
                .or_default()
                .extend(topic.partitions.iter().copied());
        }
    }
    out
}

/// A subscription regex, anchored to whole topic names.
fn compile(pattern: &str) -> Result<regex::Regex, String> {
    if pattern.len() > CONSUMER_GROUP_REGEX_BYTES_MAX {
        return Err(format!(
            "the regex is longer than {CONSUMER_GROUP_REGEX_BYTES_MAX} bytes"
        ));
    }
    regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|error| error.to_string())
}

/// The topic names a member subscribes to that exist now.
fn member_topics(member: &MemberMetadata, metadata: &ClusterMetadata) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = member
        .subscribed_topic_names
        .iter()
        .filter(|name| metadata.topics.contains_key(*name))
        .cloned()
        .collect();
    if let Some(pattern) = &member.subscribed_topic_regex {
        if let Ok(regex) = compile(pattern) {
            // Internal topics are never matched by a pattern, as in Kafka.
            names.extend(
                metadata
                    .topics
                    .keys()
                    .filter(|name| !name.starts_with("__") && regex.is_match(name))
                    .cloned(),
            );
        }
    }
    names
}

impl ConsumerGroup {
    /// Kafka's state names: Empty, Assigning (never seen here: the target
    /// is computed in the step that bumps the epoch), Reconciling, Stable.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.epoch {
            "Assigning"
        } else if self.members.values().any(|member| {
            member.current.member_epoch != self.assignment_epoch
                || member.current.state != MemberState::Stable
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The assignor: the one most members ask for, else the default.
    pub fn assignor(&self, config: &GroupConfig) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(name) = &member.metadata.server_assignor {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, most)| count > most) {
                best = Some((name, count));
            }
        }
        match best {
            Some((name, _)) => name.to_string(),
            None => config
                .consumer_assignors
                .first()
                .cloned()
                .unwrap_or_else(|| assignor::UNIFORM.to_string()),
        }
    }

    /// Every record that describes the group as it is now: what the log
    /// cleaner leaves of the group's records, at most, once it is done.
    #[cfg(test)]
    pub fn live_records(&self, group_id: &str) -> Vec<KeyedRecord> {
        let record = |key: ConsumerKey, value| KeyedRecord {
            key: crecords::key(group_id, &key),
            value: Some(value),
        };
        let mut out = vec![
            record(ConsumerKey::Metadata, crecords::encode_metadata(self.epoch)),
            record(
                ConsumerKey::PartitionMetadata,
                crecords::encode_partition_metadata(self.epoch, &self.topics),
            ),
        ];
        for member in self.members.values() {
            out.push(record(
                ConsumerKey::Member(member.id.clone()),
                crecords::encode_member(&member.metadata),
            ));
        }
        out.push(record(
            ConsumerKey::TargetMetadata,
            crecords::encode_target_metadata(self.assignment_epoch),
        ));
        for (member, assignment) in &self.target {
            out.push(record(
                ConsumerKey::TargetMember(member.clone()),
                crecords::encode_target_member(assignment),
            ));
        }
        for member in self.members.values() {
            out.push(record(
                ConsumerKey::CurrentAssignment(member.id.clone()),
                crecords::encode_current(&member.current),
            ));
        }
        out
    }

    /// Tombstones for every record of the group (deletion, or conversion
    /// to a classic group).
    pub fn tombstones(&self, group_id: &str) -> Vec<KeyedRecord> {
        let tombstone = |key: ConsumerKey| KeyedRecord {
            key: crecords::key(group_id, &key),
            value: None,
        };
        let mut out = Vec::new();
        let members: BTreeSet<&String> = self.members.keys().chain(self.target.keys()).collect();
        for member in members {
            out.push(tombstone(ConsumerKey::CurrentAssignment(member.clone())));
            out.push(tombstone(ConsumerKey::TargetMember(member.clone())));
            out.push(tombstone(ConsumerKey::Member(member.clone())));
        }
        out.push(tombstone(ConsumerKey::TargetMetadata));
        out.push(tombstone(ConsumerKey::PartitionMetadata));
        out.push(tombstone(ConsumerKey::Metadata));
        out
    }

    /// Removes a member and writes its tombstones; the caller bumps the
    /// epoch.
    fn remove_member(&mut self, group_id: &str, member_id: &str, records: &mut Vec<KeyedRecord>) {
        if let Some(member) = self.members.remove(member_id) {
            if let Some(instance) = &member.metadata.instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(instance);
                }
            }
        }
        self.target.remove(member_id);
        for key in [
            ConsumerKey::CurrentAssignment(member_id.to_string()),
            ConsumerKey::TargetMember(member_id.to_string()),
            ConsumerKey::Member(member_id.to_string()),
        ] {
            records.push(KeyedRecord {
                key: crecords::key(group_id, &key),
                value: None,
            });
        }
    }

    /// Bumps the epoch if `bump` or the subscribed topics changed, and
    /// recomputes the target assignment when it is behind the epoch.
    fn update(
        &mut self,
        group_id: &str,
        bump: bool,
        metadata: &ClusterMetadata,
        config: &GroupConfig,
        records: &mut Vec<KeyedRecord>,
    ) {
        let mut subscribed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut names: BTreeSet<String> = BTreeSet::new();
        for member in self.members.values() {
            let topics = member_topics(&member.metadata, metadata);
            names.extend(topics.iter().cloned());
            subscribed.insert(member.id.clone(), topics);
        }
        let topics: Vec<TopicMetadata> = names
            .iter()
            .filter_map(|name| metadata.topics.get(name))
            .map(|topic| TopicMetadata {
                id: topic.id,
                name: topic.name.clone(),
                partitions: topic.partitions,
            })
            .collect();
        let topics_changed = topics != self.topics;
        if bump || topics_changed {
            self.epoch += 1;
            self.topics = topics;
            records.push(KeyedRecord {
                key: crecords::key(group_id, &ConsumerKey::Metadata),
                value: Some(crecords::encode_metadata(self.epoch)),
            });
            if topics_changed {
                records.push(KeyedRecord {
                    key: crecords::key(group_id, &ConsumerKey::PartitionMetadata),
                    value: Some(crecords::encode_partition_metadata(
                        self.epoch,
                        &self.topics,
                    )),
                });
            }
        }
        if self.assignment_epoch >= self.epoch {
            return;
        }
        let ids: BTreeMap<&str, TopicId> = self
            .topics
            .iter()
            .map(|topic| (topic.name.as_str(), topic.id))
            .collect();
        let specs: BTreeMap<String, MemberSpec> = subscribed
            .iter()
            .map(|(member, names)| {
                let spec = MemberSpec {
                    subscribed: names
                        .iter()
                        .filter_map(|name| ids.get(name.as_str()).copied())
                        .collect(),
                };
                (member.clone(), spec)
            })
            .collect();
        let partitions: BTreeMap<TopicId, i32> = self
            .topics
            .iter()
            .map(|topic| (topic.id, topic.partitions))
            .collect();
        let name = self.assignor(config);
        let target = assignor::assign(&name, &specs, &partitions, &self.target);
        for (member, assignment) in &target {
            if self.target.get(member) != Some(assignment) {
                records.push(KeyedRecord {
                    key: crecords::key(group_id, &ConsumerKey::TargetMember(member.clone())),
                    value: Some(crecords::encode_target_member(assignment)),
                });
            }
        }
        self.target = target;
        self.assignment_epoch = self.epoch;
        records.push(KeyedRecord {
            key: crecords::key(group_id, &ConsumerKey::TargetMetadata),
            value: Some(crecords::encode_target_metadata(self.assignment_epoch)),
        });
    }

    /// Moves a member towards its target (see the module notes). `owned`
    /// is what the member's heartbeat says it holds, if it said. Returns
    /// whether the member's current assignment changed.
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now: Instant) -> bool {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let target_epoch = self.assignment_epoch;
        let mut held_by_others = Assignment::new();
        for (id, member) in &self.members {
            if id == member_id {
                continue;
            }
            for source in [&member.current.assigned, &member.current.pending_revocation] {
                for (topic, partitions) in source {
                    held_by_others
                        .entry(*topic)
                        .or_default()
                        .extend(partitions.iter().copied());
                }
            }
        }
        let Some(member) = self.members.get_mut(member_id) else {
            return false;
        };
        let mut next = member.current.clone();
        if next.state == MemberState::UnrevokedPartitions {
            let released =
                owned.is_some_and(|owned| intersect(owned, &next.pending_revocation).is_empty());
            if !released {
                return false;
            }
            next.pending_revocation.clear();
            next.state = MemberState::Stable;
        }
        if next.member_epoch != target_epoch || next.state != MemberState::Stable {
            let keep = intersect(&next.assigned, &target);
            let revoke = subtract(&next.assigned, &target);
            if !revoke.is_empty() {
                next.assigned = keep;
                next.pending_revocation = revoke;
                next.state = MemberState::UnrevokedPartitions;
            } else {
                let wanted = subtract(&target, &keep);
                let free = subtract(&wanted, &held_by_others);
                let mut assigned = keep;
                for (topic, partitions) in &free {
                    assigned
                        .entry(*topic)
                        .or_default()
                        .extend(partitions.iter().copied());
                }
                next.state = if free == wanted {
                    MemberState::Stable
                } else {
                    MemberState::UnreleasedPartitions
                };
                next.assigned = assigned;
                if next.member_epoch != target_epoch {
                    next.previous_member_epoch = next.member_epoch;
                    next.member_epoch = target_epoch;
                }
            }
        }
        if next.state == MemberState::UnrevokedPartitions {
            member.revoking_since.get_or_insert(now);
        } else {
            member.revoking_since = None;
        }
        let changed = next != member.current;
        member.current = next;
        changed
    }

    fn current_record(&self, group_id: &str, member_id: &str) -> Option<KeyedRecord> {
        let member = self.members.get(member_id)?;
        Some(KeyedRecord {
            key: crecords::key(
                group_id,
                &ConsumerKey::CurrentAssignment(member_id.to_string()),
            ),
            value: Some(crecords::encode_current(&member.current)),
        })
    }

    /// Rebuilds a group from its replayed records. Members without their
    /// metadata record are dropped; each must heartbeat within the session
    /// timeout from `now`.
    pub fn from_replay(
        replayed: ConsumerReplay,
        now: Instant,
        mut next_timer: impl FnMut() -> u64,
    ) -> ConsumerGroup {
        let mut group = ConsumerGroup {
            epoch: replayed.epoch,
            assignment_epoch: replayed.assignment_epoch,
            topics: replayed.topics,
            target: replayed.target,
            ..Default::default()
        };
        for (id, metadata) in replayed.members {
            let current = replayed.current.get(&id).cloned().unwrap_or_default();
            if let Some(instance) = &metadata.instance_id {
                group.static_members.insert(instance.clone(), id.clone());
            }
            let revoking_since = (current.state == MemberState::UnrevokedPartitions).then_some(now);
            group.members.insert(
                id.clone(),
                ConsumerMember {
                    id,
                    metadata,
                    current,
                    last_heartbeat: now,
                    revoking_since,
                    timer: next_timer(),
                },
            );
        }
        let members = &group.members;
        group
            .target
            .retain(|member, _| members.contains_key(member));
        group
    }
}

/// A consumer group as its records describe it.
#[derive(Clone, Debug, Default)]
pub struct ConsumerReplay {
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub topics: Vec<TopicMetadata>,
    pub members: BTreeMap<String, MemberMetadata>,
    pub target: BTreeMap<String, Assignment>,
    pub current: BTreeMap<String, CurrentAssignment>,
}

/// Kafka's request checks (INVALID_REQUEST with the reason).
fn validate(request: &ConsumerGroupHeartbeatRequest, version: i16) -> Result<(), String> {
    if request.group_id.is_empty() {
        return Err("GroupId can't be empty.".into());
    }
    if request
        .instance_id
        .as_ref()
        .is_some_and(|instance| instance.is_empty())
    {
        return Err("InstanceId can't be empty.".into());
    }
    if request.rack_id.as_ref().is_some_and(|rack| rack.is_empty()) {
        return Err("RackId can't be empty.".into());
    }
    let epoch = request.member_epoch;
    if (version >= 1 || epoch != JOIN_EPOCH) && request.member_id.is_empty() {
        return Err("MemberId can't be empty.".into());
    }
    match epoch {
        JOIN_EPOCH => {
            if request.rebalance_timeout_ms == -1 {
                return Err("RebalanceTimeoutMs must be provided in first request.".into());
            }
            if request
                .topic_partitions
                .as_ref()
                .is_none_or(|owned| !owned.is_empty())
            {
                return Err("TopicPartitions must be empty when (re-)joining.".into());
            }
            if request.subscribed_topic_names.is_none() && request.subscribed_topic_regex.is_none()
            {
                return Err(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request."
                        .into(),
                );
            }
        }
        LEAVE_STATIC_EPOCH => {
            if request.instance_id.is_none() {
                return Err("InstanceId can't be null.".into());
            }
        }
        LEAVE_EPOCH => {}
        epoch if epoch > 0 => {}
        _ => return Err(format!("MemberEpoch is invalid: {epoch}.")),
    }
    Ok(())
}

impl GroupCoordinator {
    pub(super) async fn consumer_heartbeat(
        &self,
        broker: &Rc<Broker>,
        request: ConsumerGroupHeartbeatRequest,
        version: i16,
        client_id: String,
    ) -> HeartbeatOutcome {
        if let Err(message) = validate(&request, version) {
            return HeartbeatOutcome::error(code::INVALID_REQUEST, message);
        }
        if let Some(name) = &request.server_assignor {
            if !self
                .config
                .consumer_assignors
                .iter()
                .any(|known| known == name.as_str())
            {
                return HeartbeatOutcome::error(
                    code::UNSUPPORTED_ASSIGNOR,
                    format!("ServerAssignor {name} is not supported."),
                );
            }
        }
        if let Some(pattern) = &request.subscribed_topic_regex {
            if !pattern.is_empty() {
                if let Err(error) = compile(pattern) {
                    return HeartbeatOutcome::error(
                        code::INVALID_REGULAR_EXPRESSION,
                        format!("SubscribedTopicRegex {pattern} is invalid: {error}"),
                    );
                }
            }
        }
        let group_id = request.group_id.to_string();
        let partition = match self.check_partition(broker, &group_id) {
            Ok(partition) => partition,
            Err(error_code) => return HeartbeatOutcome::error(error_code, None),
        };
        if let Err(error_code) = self.wait_for_room(broker, &group_id, partition).await {
            return HeartbeatOutcome::error(error_code, None);
        }
        let (outcome, records) =
            match self.consumer_heartbeat_now(broker, &group_id, partition, &request, client_id) {
                Ok(done) => done,
                Err((error_code, message)) => return HeartbeatOutcome::error(error_code, message),
            };
        if records.is_empty() {
            return outcome;
        }
        let written = match self.append_now(broker, partition, &records) {
            Ok(end) => self.wait_written(broker, partition, end).await,
            Err(error) => Err(error),
        };
        match written {
            Ok(()) => outcome,
            Err(error) => {
                HeartbeatOutcome::error(write_error_code(&error, Written::Group), error.to_string())
            }
        }
    }

    /// The synchronous part of a heartbeat: decides, changes the group, and
    /// returns the answer with the records to write.
    #[allow(clippy::type_complexity)]
    fn consumer_heartbeat_now(
        &self,
        broker: &Broker,
        group_id: &str,
        partition: i32,
        request: &ConsumerGroupHeartbeatRequest,
        client_id: String,
    ) -> Result<(HeartbeatOutcome, Vec<KeyedRecord>), (i16, Option<String>)> {
        let epoch = request.member_epoch;
        let mut records = Vec::new();
        let mut groups = self.groups.borrow_mut();
        if !groups.contains_key(group_id) {
            if epoch != JOIN_EPOCH {
                return Err((
                    code::GROUP_ID_NOT_FOUND,
                    Some(format!("Consumer group {group_id} not found.")),
                ));
            }
            groups.insert(
                group_id.to_string(),
                Group::new(group_id.to_string(), partition, now_ms()),
            );
        }
        let Some(group) = groups.get_mut(group_id) else {
            return Err((code::UNKNOWN_MEMBER_ID, None));
        };
        if group.state == GroupState::Dead {
            return Err((code::COORDINATOR_NOT_AVAILABLE, None));
        }
        if group.consumer.is_none() {
            if !group.members.is_empty() || !group.pending_members.is_empty() {
                return Err((
                    code::INCONSISTENT_GROUP_PROTOCOL,
                    Some(format!("Group {group_id} is a non-empty classic group.")),
                ));
            }
            if epoch != JOIN_EPOCH {
                return Err((
                    code::GROUP_ID_NOT_FOUND,
                    Some(format!("Group {group_id} is not a consumer group.")),
                ));
            }
            // An empty classic group becomes a consumer group, keeping its
            // offsets; its classic metadata record goes.
            if group.persisted.take().is_some() {
                records.push(KeyedRecord {
                    key: super::records::group_key(group_id),
                    value: None,
                });
            }
            group.protocol = None;
            group.leader = None;
            group.generation = 0;
            group.consumer = Some(ConsumerGroup::default());
        }
        group.protocol_type = Some(CONSUMER_PROTOCOL_TYPE.to_string());
        let metadata = broker.metadata();
        let config = &self.config;
        let now = Instant::now();
        let Some(consumer) = group.consumer.as_mut() else {
            return Err((code::UNKNOWN_SERVER_ERROR, None));
        };
        let mut bump = false;
        let mut new_timer = None;
        let owned = request.topic_partitions.as_deref().map(from_owned);
        let member_id = match epoch {
            JOIN_EPOCH => {
                let member_id = if request.member_id.is_empty() {
                    new_member_id("").trim_start_matches('-').to_string()
                } else {
                    request.member_id.to_string()
                };
                let mut replaced = false;
                if let Some(instance) = &request.instance_id {
                    if let Some(old_id) = consumer.static_members.get(instance.as_str()).cloned() {
                        if old_id != member_id {
                            let old_epoch = consumer
                                .members
                                .get(&old_id)
                                .map(|member| member.current.member_epoch);
                            if old_epoch.is_some_and(|old| old != LEAVE_STATIC_EPOCH) {
                                return Err((
                                    code::UNRELEASED_INSTANCE_ID,
                                    Some(format!(
                                        "Static member {old_id} with instance id {instance} is not released yet."
                                    )),
                                ));
                            }
                            // The new incarnation takes over the old one's
                            // assignment, without a rebalance.
                            if let Some(mut old) = consumer.members.remove(&old_id) {
                                let target = consumer.target.remove(&old_id);
                                let mut removed = Vec::new();
                                consumer.remove_member(group_id, &old_id, &mut removed);
                                records.extend(removed);
                                old.id = member_id.clone();
                                old.current.member_epoch = JOIN_EPOCH;
                                old.last_heartbeat = now;
                                old.timer = self.token();
                                new_timer = Some(old.timer);
                                consumer.members.insert(member_id.clone(), old);
                                if let Some(target) = target {
                                    records.push(KeyedRecord {
                                        key: crecords::key(
                                            group_id,
                                            &ConsumerKey::TargetMember(member_id.clone()),
                                        ),
                                        value: Some(crecords::encode_target_member(&target)),
                                    });
                                    consumer.target.insert(member_id.clone(), target);
                                }
                                replaced = true;
                            }
                        }
                    }
                    consumer
                        .static_members
                        .insert(instance.to_string(), member_id.clone());
                }
                if !replaced {
                    match consumer.members.get_mut(&member_id) {
                        Some(member) => {
                            // A rejoin: the member gave up what it held.
                            member.current = CurrentAssignment::default();
                            member.revoking_since = None;
                        }
                        None => {
                            if consumer.members.len() >= config.consumer_max_size {
                                return Err((
                                    code::GROUP_MAX_SIZE_REACHED,
                                    Some(format!(
                                        "The consumer group has reached its maximum capacity of {} members.",
                                        config.consumer_max_size
                                    )),
                                ));
                            }
                            let timer = self.token();
                            new_timer = Some(timer);
                            consumer.members.insert(
                                member_id.clone(),
                                ConsumerMember {
                                    id: member_id.clone(),
                                    metadata: MemberMetadata {
                                        rebalance_timeout_ms: request.rebalance_timeout_ms,
                                        ..Default::default()
                                    },
                                    current: CurrentAssignment::default(),
                                    last_heartbeat: now,
                                    revoking_since: None,
                                    timer,
                                },
                            );
                            bump = true;
                        }
                    }
                }
                member_id
            }
            _ => {
                let member_id = request.member_id.to_string();
                let Some(member) = consumer.members.get(&member_id) else {
                    return Err((
                        code::UNKNOWN_MEMBER_ID,
                        Some(format!(
                            "Member {member_id} is not a member of group {group_id}."
                        )),
                    ));
                };
                if epoch == LEAVE_EPOCH {
                    consumer.remove_member(group_id, &member_id, &mut records);
                    consumer.update(group_id, true, &metadata, config, &mut records);
                    refresh_state(group);
                    return Ok((
                        HeartbeatOutcome {
                            member_id: Some(member_id),
                            member_epoch: LEAVE_EPOCH,
                            ..Default::default()
                        },
                        records,
                    ));
                }
                if epoch == LEAVE_STATIC_EPOCH {
                    if let Some(member) = consumer.members.get_mut(&member_id) {
                        member.current.member_epoch = LEAVE_STATIC_EPOCH;
                        member.last_heartbeat = now;
                    }
                    records.extend(consumer.current_record(group_id, &member_id));
                    return Ok((
                        HeartbeatOutcome {
                            member_id: Some(member_id),
                            member_epoch: LEAVE_STATIC_EPOCH,
                            ..Default::default()
                        },
                        records,
                    ));
                }
                let current = &member.current;
                let accepted = epoch == current.member_epoch
                    || (epoch == current.previous_member_epoch
                        && owned
                            .as_ref()
                            .is_some_and(|owned| subtract(owned, &current.assigned).is_empty()));
                if !accepted {
                    return Err((
                        code::FENCED_MEMBER_EPOCH,
                        Some(format!(
                            "The consumer group member has a smaller member epoch ({epoch}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.",
                            current.member_epoch
                        )),
                    ));
                }
                member_id
            }
        };
        // The member's settings: null fields mean "unchanged".
        if let Some(member) = consumer.members.get_mut(&member_id) {
            let mut next = member.metadata.clone();
            next.client_id = client_id;
            if let Some(instance) = &request.instance_id {
                next.instance_id = Some(instance.to_string());
            }
            if let Some(rack) = &request.rack_id {
                next.rack_id = Some(rack.to_string());
            }
            if request.rebalance_timeout_ms != -1 {
                next.rebalance_timeout_ms = request.rebalance_timeout_ms;
            }
            if let Some(names) = &request.subscribed_topic_names {
                let mut names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
                names.sort();
                names.dedup();
                next.subscribed_topic_names = names;
            }
            if let Some(pattern) = &request.subscribed_topic_regex {
                next.subscribed_topic_regex = (!pattern.is_empty()).then(|| pattern.to_string());
            }
            if let Some(name) = &request.server_assignor {
                next.server_assignor = Some(name.to_string());
            }
            let subscription_changed = next.subscribed_topic_names
                != member.metadata.subscribed_topic_names
                || next.subscribed_topic_regex != member.metadata.subscribed_topic_regex
                || next.server_assignor != member.metadata.server_assignor;
            bump |= subscription_changed;
            if next != member.metadata || epoch == JOIN_EPOCH {
                records.push(KeyedRecord {
                    key: crecords::key(group_id, &ConsumerKey::Member(member_id.clone())),
                    value: Some(crecords::encode_member(&next)),
                });
                member.metadata = next;
            }
            member.last_heartbeat = now;
        }
        consumer.update(group_id, bump, &metadata, config, &mut records);
        let was_revoking = consumer
            .members
            .get(&member_id)
            .is_some_and(|member| member.revoking_since.is_some());
        let changed = consumer.reconcile(&member_id, owned.as_ref(), now);
        if !was_revoking && new_timer.is_none() {
            // A revocation starts the rebalance timeout: the timer, asleep
            // until the session deadline, is replaced by one that also
            // watches this one.
            if let Some(member) = consumer
                .members
                .get_mut(&member_id)
                .filter(|member| member.revoking_since.is_some())
            {
                member.timer = self.token();
                new_timer = Some(member.timer);
            }
        }
        if changed || epoch == JOIN_EPOCH {
            records.extend(consumer.current_record(group_id, &member_id));
        }
        let Some(member) = consumer.members.get(&member_id) else {
            return Err((code::UNKNOWN_MEMBER_ID, None));
        };
        let send_assignment = changed
            || epoch == JOIN_EPOCH
            || owned
                .as_ref()
                .is_some_and(|owned| *owned != member.current.assigned);
        let outcome = HeartbeatOutcome {
            error_code: code::NONE,
            error_message: None,
            member_id: Some(member_id.clone()),
            member_epoch: member.current.member_epoch,
            heartbeat_interval_ms: config.consumer_heartbeat_interval_ms,
            assignment: send_assignment.then(|| member.current.assigned.clone()),
        };
        refresh_state(group);
        if let Some(timer) = new_timer {
            self.schedule_consumer_timer(group_id, &member_id, timer);
        }
        Ok((outcome, records))
    }

    /// Removes members that stop heartbeating (session timeout) or hold on
    /// to revoked partitions past their rebalance timeout. One task per
    /// member; heartbeats just move the deadline.
    pub(super) fn schedule_consumer_timer(&self, group_id: &str, member_id: &str, token: u64) {
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
                    let session = Duration::from_millis(
                        broker.groups.config.consumer_session_timeout_ms.max(1) as u64,
                    );
                    let groups = broker.groups.groups.borrow();
                    let Some(member) = groups
                        .get(&group_id)
                        .and_then(|group| group.consumer.as_ref())
                        .and_then(|consumer| consumer.members.get(&member_id))
                    else {
                        return;
                    };
                    if member.timer != token {
                        return;
                    }
                    let mut deadline = member.last_heartbeat + session;
                    if let Some(since) = member.revoking_since {
                        let rebalance = Duration::from_millis(
                            member.metadata.rebalance_timeout_ms.max(1) as u64,
                        );
                        deadline = deadline.min(since + rebalance);
                    }
                    deadline.checked_duration_since(Instant::now())
                };
                match wait {
                    Some(wait) if !wait.is_zero() => glommio::timer::sleep(wait).await,
                    _ => {
                        let Some(broker) = weak.upgrade() else { return };
                        broker
                            .groups
                            .expire_consumer_member(&broker, &group_id, &member_id, token);
                        return;
                    }
                }
            }
        });
    }

    fn expire_consumer_member(&self, broker: &Broker, group_id: &str, member_id: &str, token: u64) {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return;
        };
        let partition = group.partition;
        let Some(consumer) = group.consumer.as_mut() else {
            return;
        };
        if consumer
            .members
            .get(member_id)
            .is_none_or(|member| member.timer != token)
        {
            return;
        }
        tracing::info!(group_id, member_id, "consumer group member expired");
        let mut records = Vec::new();
        consumer.remove_member(group_id, member_id, &mut records);
        consumer.update(
            group_id,
            true,
            &broker.metadata(),
            &self.config,
            &mut records,
        );
        refresh_state(group);
        // Nobody waits on this write; a failure leaves the log one change
        // behind memory until the next change of the group.
        if let Err(error) = self.append_now(broker, partition, &records) {
            tracing::warn!(group_id, %error, "recording a consumer group expiry failed");
        }
    }

    /// ConsumerGroupDescribe for groups of this shard.
    pub(super) fn consumer_describe(
        &self,
        broker: &Broker,
        wanted: Vec<String>,
    ) -> Vec<DescribedConsumerGroup> {
        let metadata = broker.metadata();
        let names: HashMap<TopicId, String> = metadata
            .topics
            .values()
            .map(|topic| (topic.id, topic.name.clone()))
            .collect();
        let show = |assignment: &Assignment| -> Vec<(TopicId, String, Vec<i32>)> {
            assignment
                .iter()
                .map(|(topic, partitions)| {
                    (
                        *topic,
                        names.get(topic).cloned().unwrap_or_default(),
                        partitions.iter().copied().collect(),
                    )
                })
                .collect()
        };
        wanted
            .into_iter()
            .map(|group_id| {
                let mut described = DescribedConsumerGroup {
                    group_id: group_id.clone(),
                    ..Default::default()
                };
                if let Err(error_code) = self.check_partition(broker, &group_id) {
                    described.error_code = error_code;
                    return described;
                }
                let groups = self.groups.borrow();
                let Some(consumer) = groups
                    .get(&group_id)
                    .filter(|group| group.state != GroupState::Dead)
                    .and_then(|group| group.consumer.as_ref())
                else {
                    described.error_code = code::GROUP_ID_NOT_FOUND;
                    described.error_message = Some(match groups.contains_key(&group_id) {
                        true => format!("Group {group_id} is not a consumer group."),
                        false => format!("Group {group_id} not found."),
                    });
                    return described;
                };
                described.state = consumer.state_name();
                described.epoch = consumer.epoch;
                described.assignment_epoch = consumer.assignment_epoch;
                described.assignor = consumer.assignor(&self.config);
                described.members = consumer
                    .members
                    .values()
                    .map(|member| DescribedConsumerMember {
                        member_id: member.id.clone(),
                        instance_id: member.metadata.instance_id.clone(),
                        rack_id: member.metadata.rack_id.clone(),
                        member_epoch: member.current.member_epoch,
                        client_id: member.metadata.client_id.clone(),
                        client_host: member.metadata.client_host.clone(),
                        subscribed_topic_names: member.metadata.subscribed_topic_names.clone(),
                        subscribed_topic_regex: member.metadata.subscribed_topic_regex.clone(),
                        assignment: show(&member.current.assigned),
                        target_assignment: show(
                            &consumer.target.get(&member.id).cloned().unwrap_or_default(),
                        ),
                    })
                    .collect();
                described
            })
            .collect()
    }
}

/// Keeps the classic state field (which offset expiry, deletion and
/// DescribeGroups read) in step: Empty without members, else Stable.
pub(super) fn refresh_state(group: &mut Group) {
    let Some(consumer) = &group.consumer else {
        return;
    };
    let state = if consumer.members.is_empty() {
        GroupState::Empty
    } else {
        GroupState::Stable
    };
    if group.state != state {
        group.set_state(state, now_ms());
    }
}

/// Kafka's commit checks for a consumer group: a member id and epoch of a
/// member, or no member id and a negative epoch while the group is empty.
pub(super) fn check_commit(
    consumer: &mut ConsumerGroup,
    member_epoch: i32,
    member_id: &str,
) -> Result<(), i16> {
    if member_epoch < 0 && consumer.members.is_empty() {
        return Ok(());
    }
    let Some(member) = consumer.members.get_mut(member_id) else {
        return Err(code::UNKNOWN_MEMBER_ID);
    };
    if member_epoch != member.current.member_epoch {
        return Err(code::STALE_MEMBER_EPOCH);
    }
    member.last_heartbeat = Instant::now();
    Ok(())
}

/// Kafka's OffsetFetch check for a consumer-group member.
pub(super) fn check_fetch(
    consumer: &ConsumerGroup,
    member_epoch: i32,
    member_id: &str,
) -> Result<(), i16> {
    let Some(member) = consumer.members.get(member_id) else {
        return Err(code::UNKNOWN_MEMBER_ID);
    };
    if member_epoch != member.current.member_epoch {
        return Err(code::STALE_MEMBER_EPOCH);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(topics: &[(&str, i32)]) -> ClusterMetadata {
        let mut metadata = ClusterMetadata::default();
        for (index, (name, partitions)) in topics.iter().enumerate() {
            metadata.topics.insert(
                name.to_string(),
                sluice_engine::TopicMetadata {
                    name: name.to_string(),
                    id: [index as u8 + 1; 16],
                    partitions: *partitions,
                    configs: Default::default(),
                    placement: Vec::new(),
                },
            );
        }
        metadata
    }

    fn join(group: &mut ConsumerGroup, id: &str, topics: &[&str]) {
        group.members.insert(
            id.to_string(),
            ConsumerMember {
                id: id.to_string(),
                metadata: MemberMetadata {
                    subscribed_topic_names: topics.iter().map(|topic| topic.to_string()).collect(),
                    ..Default::default()
                },
                current: CurrentAssignment::default(),
                last_heartbeat: Instant::now(),
                revoking_since: None,
                timer: 0,
            },
        );
    }

    #[test]
    fn partitions_move_only_after_revocation() {
        let config = GroupConfig::default();
        let metadata = metadata(&[("t", 4)]);
        let mut group = ConsumerGroup::default();
        let mut records = Vec::new();
        let now = Instant::now();
        join(&mut group, "a", &["t"]);
        group.update("g", true, &metadata, &config, &mut records);
        assert!(group.reconcile("a", None, now));
        assert_eq!(group.members["a"].current.assigned[&[1; 16]].len(), 4);
        assert_eq!(group.members["a"].current.member_epoch, 1);
        // "b" joins: it is at the new epoch at once but gets nothing "a"
        // still owns.
        join(&mut group, "b", &["t"]);
        group.update("g", true, &metadata, &config, &mut records);
        group.reconcile("b", None, now);
        let b = &group.members["b"].current;
        assert_eq!(b.member_epoch, 2);
        assert_eq!(b.state, MemberState::UnreleasedPartitions);
        assert!(b.assigned.is_empty());
        // "a" is asked to revoke two and keeps its epoch until it has.
        group.reconcile("a", None, now);
        let a = group.members["a"].current.clone();
        assert_eq!(a.state, MemberState::UnrevokedPartitions);
        assert_eq!(a.member_epoch, 1);
        assert_eq!(a.pending_revocation[&[1; 16]].len(), 2);
        // Still reporting them: nothing moves.
        let still = subtract(&a.assigned, &Assignment::new());
        let mut reported = still.clone();
        for (topic, partitions) in &a.pending_revocation {
            reported
                .entry(*topic)
                .or_default()
                .extend(partitions.iter().copied());
        }
        assert!(!group.reconcile("a", Some(&reported), now));
        group.reconcile("b", None, now);
        assert!(group.members["b"].current.assigned.is_empty());
        // Released: "a" reaches epoch 2, then "b" gets the two.
        group.reconcile("a", Some(&still), now);
        assert_eq!(group.members["a"].current.member_epoch, 2);
        assert_eq!(group.members["a"].current.state, MemberState::Stable);
        group.reconcile("b", None, now);
        assert_eq!(group.members["b"].current.state, MemberState::Stable);
        assert_eq!(group.members["b"].current.assigned[&[1; 16]].len(), 2);
        assert_eq!(group.state_name(), "Stable");
    }

    /// Replays records into a group, as a partition load does.
    fn replay(records: &[KeyedRecord]) -> Option<ConsumerReplay> {
        let mut state = super::super::replay::State::default();
        for (offset, record) in records.iter().enumerate() {
            state.apply(
                0,
                super::super::records::ParsedRecord {
                    offset: offset as i64,
                    key: Some(record.key.clone()),
                    value: record.value.clone(),
                },
            );
        }
        state.groups.remove("g").and_then(|group| group.consumer)
    }

    #[test]
    fn records_replay_to_the_same_group_and_tombstones_end_it() {
        let config = GroupConfig::default();
        let metadata = metadata(&[("t", 6), ("u", 2)]);
        let mut group = ConsumerGroup::default();
        let mut log = Vec::new();
        let now = Instant::now();
        join(&mut group, "a", &["t", "u"]);
        join(&mut group, "b", &["t"]);
        group.update("g", true, &metadata, &config, &mut log);
        group.reconcile("a", None, now);
        group.reconcile("b", None, now);
        // Only the live records, as a rewrite writes them.
        let restored = ConsumerGroup::from_replay(
            replay(&group.live_records("g")).expect("a consumer group"),
            now,
            || 7,
        );
        assert_eq!(restored.epoch, group.epoch);
        assert_eq!(restored.assignment_epoch, group.assignment_epoch);
        assert_eq!(restored.topics, group.topics);
        assert_eq!(restored.target, group.target);
        for (id, member) in &group.members {
            assert_eq!(restored.members[id].current, member.current);
            assert_eq!(restored.members[id].metadata, member.metadata);
        }
        // A member's tombstones drop it; the group tombstones drop the group.
        let mut records = group.live_records("g");
        let mut removed = Vec::new();
        group.remove_member("g", "b", &mut removed);
        records.extend(removed);
        let replayed = replay(&records).expect("still a group");
        assert!(!replayed.members.contains_key("b"));
        assert!(replayed.members.contains_key("a"));
        records.extend(group.tombstones("g"));
        assert!(replay(&records).is_none());
    }

    #[test]
    fn validation_follows_kafka() {
        let mut request = ConsumerGroupHeartbeatRequest::default();
        request.group_id = kafka_protocol::messages::GroupId(
            kafka_protocol::protocol::StrBytes::from_static_str("g"),
        );
        request.member_epoch = 0;
        request.rebalance_timeout_ms = 1000;
        request.topic_partitions = Some(Vec::new());
        assert!(validate(&request, 0)
            .unwrap_err()
            .contains("SubscribedTopicNames"));
        request.subscribed_topic_names = Some(Vec::new());
        assert!(validate(&request, 0).is_ok());
        assert!(validate(&request, 1).unwrap_err().contains("MemberId"));
        request.member_epoch = 5;
        assert!(validate(&request, 0).unwrap_err().contains("MemberId"));
        request.member_epoch = -3;
        request.member_id = kafka_protocol::protocol::StrBytes::from_static_str("m");
        assert!(validate(&request, 0).unwrap_err().contains("MemberEpoch"));
    }
}
