//! Committed offsets (OffsetCommit, OffsetFetch, OffsetDelete), the group
//! admin APIs (DescribeGroups, ListGroups, DeleteGroups), and the expiry of
//! offsets of groups that stayed empty for `offsets.retention.minutes`.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{OffsetCommitRequest, OffsetDeleteRequest};

use super::group::{Group, GroupState};
use super::records::{self, KeyedRecord, OffsetValue};
use super::{now_ms, write_error_code, GroupCoordinator, Load, Written};
use crate::broker::Broker;
use crate::constants::OFFSET_METADATA_BYTES_MAX;
use crate::errors::code;

/// First OffsetCommit version that reports an unknown group as
/// GROUP_ID_NOT_FOUND (before: ILLEGAL_GENERATION).
const COMMIT_GROUP_ID_NOT_FOUND_VERSION: i16 = 9;

/// Error codes of an OffsetCommit, by request topic and partition.
#[derive(Clone, Debug, Default)]
pub struct CommitOutcome {
    pub topics: Vec<Vec<i16>>,
}

/// One group of an OffsetFetch; `topics: None` asks for every committed
/// partition.
#[derive(Clone, Debug)]
pub struct FetchGroup {
    pub group_id: String,
    pub topics: Option<Vec<(String, Vec<i32>)>>,
    /// OffsetFetch v9's member id and member epoch, checked against a
    /// KIP-848 consumer group.
    pub member: Option<(String, i32)>,
    /// KIP-447: offsets a running transaction has committed are reported
    /// as UNSTABLE_OFFSET_COMMIT instead of the last stable offset.
    pub require_stable: bool,
}

#[derive(Clone, Debug)]
pub struct FetchedPartition {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub error_code: i16,
}

#[derive(Clone, Debug)]
pub struct FetchedGroup {
    pub group_id: String,
    pub error_code: i16,
    pub topics: Vec<(String, Vec<FetchedPartition>)>,
}

/// OffsetDelete's answer: a group-level error and per-partition errors.
#[derive(Clone, Debug, Default)]
pub struct OffsetDeleteOutcome {
    pub error_code: i16,
    pub topics: Vec<Vec<i16>>,
}

#[derive(Clone, Debug)]
pub struct DescribedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Clone, Debug)]
pub struct DescribedGroupOutcome {
    pub group_id: String,
    pub error_code: i16,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol_data: String,
    pub members: Vec<DescribedMember>,
}

#[derive(Clone, Debug)]
pub struct ListedGroupOutcome {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
    /// "classic" or "consumer" (ListGroups v5).
    pub group_type: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct ListOutcome {
    pub error_code: i16,
    pub groups: Vec<ListedGroupOutcome>,
}

/// LeaveGroup's answer: (member id, instance id, error) per member.
#[derive(Clone, Debug, Default)]
pub struct LeaveOutcome {
    pub error_code: i16,
    pub members: Vec<(String, Option<String>, i16)>,
}

/// Kafka's membership checks for a commit to an existing group. A
/// generation of -1 from nobody is a "simple" commit, allowed only while
/// the group has no members (assign() users).
pub(super) fn check_commit_member(
    group: &mut Group,
    generation: i32,
    member_id: &str,
    instance_id: Option<&str>,
) -> Result<(), i16> {
    if group.state == GroupState::Dead {
        return Err(code::COORDINATOR_NOT_AVAILABLE);
    }
    if let Some(consumer) = group.consumer.as_mut() {
        // Consumer-protocol members commit with their member epoch in the
        // generation field.
        return super::consumer::check_commit(consumer, generation, member_id);
    }
    if instance_id.is_some_and(|instance| {
        group
            .static_members
            .get(instance)
            .is_some_and(|bound| bound != member_id)
    }) {
        return Err(code::FENCED_INSTANCE_ID);
    }
    if generation < 0 && group.state == GroupState::Empty {
        return Ok(());
    }
    if group.state == GroupState::CompletingRebalance {
        // The member must sync (and learn its new assignment) first.
        return Err(code::REBALANCE_IN_PROGRESS);
    }
    let current = group.generation;
    let Some(member) = group.members.get_mut(member_id) else {
        return Err(code::UNKNOWN_MEMBER_ID);
    };
    if generation != current {
        return Err(code::ILLEGAL_GENERATION);
    }
    // A commit is a sign of life too.
    member.last_heartbeat = std::time::Instant::now();
    Ok(())
}

impl GroupCoordinator {
    pub(super) async fn commit(
        &self,
        broker: &Rc<Broker>,
        request: OffsetCommitRequest,
        version: i16,
    ) -> CommitOutcome {
        let whole = |error_code| CommitOutcome {
            topics: request
                .topics
                .iter()
                .map(|topic| vec![error_code; topic.partitions.len()])
                .collect(),
        };
        let group_id = request.group_id.to_string();
        let partition = match self.check_partition(broker, &group_id) {
            Ok(partition) => partition,
            Err(error_code) => return whole(error_code),
        };
        if let Err(error_code) = self.wait_for_room(broker, &group_id, partition).await {
            return whole(error_code);
        }
        let (mut outcome, written) =
            match self.commit_now(broker, partition, &group_id, &request, version) {
                Ok(result) => result,
                Err(error_code) => return whole(error_code),
            };
        if let Some((end, positions)) = written {
            if let Err(error) = self.wait_written(broker, partition, end).await {
                let error_code = write_error_code(&error, Written::Offsets);
                for (topic, partition) in positions {
                    outcome.topics[topic][partition] = error_code;
                }
            }
        }
        outcome
    }

    /// Validates and appends a commit; returns the per-partition errors and,
    /// if anything was written, the end offset to wait for and which
    /// partitions it covers.
    #[allow(clippy::type_complexity)]
    fn commit_now(
        &self,
        broker: &Broker,
        partition: i32,
        group_id: &str,
        request: &OffsetCommitRequest,
        version: i16,
    ) -> Result<(CommitOutcome, Option<(i64, Vec<(usize, usize)>)>), i16> {
        let metadata = broker.metadata();
        let mut groups = self.groups.borrow_mut();
        let generation = request.generation_id_or_member_epoch;
        match groups.get_mut(group_id) {
            None if generation >= 0 => {
                return Err(if version >= COMMIT_GROUP_ID_NOT_FOUND_VERSION {
                    code::GROUP_ID_NOT_FOUND
                } else {
                    code::ILLEGAL_GENERATION
                });
            }
            None => {}
            Some(group) => check_commit_member(
                group,
                generation,
                request.member_id.as_str(),
                request.group_instance_id.as_ref().map(|id| id.as_str()),
            )?,
        }
        let now = now_ms();
        let mut outcome = CommitOutcome::default();
        let mut records = Vec::new();
        let mut committed = Vec::new();
        for (topic_index, topic) in request.topics.iter().enumerate() {
            let name = topic.name.0.as_str();
            let known = metadata.topics.get(name);
            let mut errors = Vec::with_capacity(topic.partitions.len());
            for (partition_index, entry) in topic.partitions.iter().enumerate() {
                let metadata_text = entry
                    .committed_metadata
                    .as_ref()
                    .map(|text| text.as_str())
                    .unwrap_or("");
                if !known.is_some_and(|meta| {
                    entry.partition_index >= 0 && entry.partition_index < meta.partitions
                }) {
                    errors.push(code::UNKNOWN_TOPIC_OR_PARTITION);
                } else if metadata_text.len() > OFFSET_METADATA_BYTES_MAX {
                    errors.push(code::OFFSET_METADATA_TOO_LARGE);
                } else {
                    let value = OffsetValue {
                        offset: entry.committed_offset,
                        leader_epoch: entry.committed_leader_epoch,
                        metadata: metadata_text.to_string(),
                        commit_timestamp: now,
                        expire_timestamp: -1,
                    };
                    records.push(KeyedRecord {
                        key: records::offset_key(group_id, name, entry.partition_index),
                        value: Some(records::encode_offset_value(&value)),
                    });
                    committed.push((
                        (topic_index, partition_index),
                        (name.to_string(), entry.partition_index),
                        value,
                    ));
                    errors.push(code::NONE);
                }
            }
            outcome.topics.push(errors);
        }
        if records.is_empty() {
            return Ok((outcome, None));
        }
        let end = match self.append_now(broker, partition, &records) {
            Ok(end) => end,
            Err(error) => {
                let error_code = write_error_code(&error, Written::Offsets);
                for ((topic, partition), _, _) in committed {
                    outcome.topics[topic][partition] = error_code;
                }
                return Ok((outcome, None));
            }
        };
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id.to_string(), partition, now));
        let mut positions = Vec::with_capacity(committed.len());
        for (position, key, value) in committed {
            group.offsets.insert(key, value);
            positions.push(position);
        }
        Ok((outcome, Some((end, positions))))
    }

    pub(super) fn fetch(&self, broker: &Broker, wanted: Vec<FetchGroup>) -> Vec<FetchedGroup> {
        let mut answers = Vec::with_capacity(wanted.len());
        for request in wanted {
            let missing = |partition: i32, error_code: i16| FetchedPartition {
                partition,
                offset: -1,
                leader_epoch: -1,
                metadata: Some(String::new()),
                error_code,
            };
            let mut fetched = FetchedGroup {
                group_id: request.group_id.clone(),
                error_code: code::NONE,
                topics: Vec::new(),
            };
            if let Err(error_code) = self.check_partition(broker, &request.group_id) {
                fetched.error_code = error_code;
                // v1 has no group-level error: each partition carries it.
                for (topic, partitions) in request.topics.unwrap_or_default() {
                    let partitions = partitions
                        .into_iter()
                        .map(|partition| missing(partition, error_code))
                        .collect();
                    fetched.topics.push((topic, partitions));
                }
                answers.push(fetched);
                continue;
            }
            let mut groups = self.groups.borrow_mut();
            if let (Some((member_id, member_epoch)), Some(consumer)) = (
                &request.member,
                groups
                    .get_mut(&request.group_id)
                    .and_then(|group| group.consumer.as_mut()),
            ) {
                // Kafka's check: a member must be current; an admin (no
                // member, negative epoch) may always read.
                let admin = member_id.is_empty() && *member_epoch < 0;
                if !admin {
                    if let Err(error_code) =
                        super::consumer::check_fetch(consumer, *member_epoch, member_id)
                    {
                        fetched.error_code = error_code;
                        answers.push(fetched);
                        continue;
                    }
                }
            }
            let offsets = groups.get(&request.group_id).map(|group| &group.offsets);
            let require_stable = request.require_stable;
            let found = |topic: &str, partition: i32| match offsets
                .and_then(|offsets| offsets.get(&(topic.to_string(), partition)))
            {
                _ if require_stable
                    && self.has_pending_offset(&request.group_id, topic, partition) =>
                {
                    missing(partition, code::UNSTABLE_OFFSET_COMMIT)
                }
                Some(value) => FetchedPartition {
                    partition,
                    offset: value.offset,
                    leader_epoch: value.leader_epoch,
                    metadata: Some(value.metadata.clone()),
                    error_code: code::NONE,
                },
                // Kafka answers an offset never committed with -1, no error.
                None => missing(partition, code::NONE),
            };
            match request.topics {
                Some(topics) => {
                    for (topic, partitions) in topics {
                        let partitions = partitions
                            .into_iter()
                            .map(|partition| found(&topic, partition))
                            .collect();
                        fetched.topics.push((topic, partitions));
                    }
                }
                None => {
                    let mut by_topic: BTreeMap<String, Vec<FetchedPartition>> = BTreeMap::new();
                    for (topic, partition) in offsets.into_iter().flat_map(|offsets| offsets.keys())
                    {
                        by_topic
                            .entry(topic.clone())
                            .or_default()
                            .push(found(topic, *partition));
                    }
                    fetched.topics = by_topic.into_iter().collect();
                }
            }
            answers.push(fetched);
        }
        answers
    }

    pub(super) async fn delete_offsets(
        &self,
        broker: &Rc<Broker>,
        request: OffsetDeleteRequest,
    ) -> OffsetDeleteOutcome {
        let shape: Vec<usize> = request
            .topics
            .iter()
            .map(|topic| topic.partitions.len())
            .collect();
        let whole = |error_code: i16| OffsetDeleteOutcome {
            error_code,
            topics: shape.iter().map(|count| vec![code::NONE; *count]).collect(),
        };
        let group_id = request.group_id.to_string();
        let partition = match self.check_partition(broker, &group_id) {
            Ok(partition) => partition,
            Err(error_code) => return whole(error_code),
        };
        if let Err(error_code) = self.wait_for_room(broker, &group_id, partition).await {
            return whole(error_code);
        }
        let end = {
            let metadata = broker.metadata();
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups
                .get_mut(&group_id)
                .filter(|group| group.state != GroupState::Dead)
            else {
                return whole(code::GROUP_ID_NOT_FOUND);
            };
            // Offsets of topics the group's members consume cannot go.
            let subscribed: BTreeSet<String> = if group.state == GroupState::Empty {
                BTreeSet::new()
            } else if let Some(consumer) = &group.consumer {
                consumer
                    .members
                    .values()
                    .flat_map(|member| member.metadata.subscribed_topic_names.iter().cloned())
                    .chain(consumer.topics.iter().map(|topic| topic.name.clone()))
                    .collect()
            } else if group.protocol_type.as_deref() == Some("consumer") {
                let protocol = group.protocol.clone().unwrap_or_default();
                group
                    .members
                    .values()
                    .filter_map(|member| records::subscription_topics(&member.metadata(&protocol)))
                    .flatten()
                    .collect()
            } else {
                return whole(code::NON_EMPTY_GROUP);
            };
            let mut outcome = whole(code::NONE);
            let mut tombstones = Vec::new();
            let mut removed = Vec::new();
            for (topic_index, topic) in request.topics.iter().enumerate() {
                let name = topic.name.0.as_str();
                let known = metadata.topics.get(name);
                for (partition_index, entry) in topic.partitions.iter().enumerate() {
                    let error_code = if !known.is_some_and(|meta| {
                        entry.partition_index >= 0 && entry.partition_index < meta.partitions
                    }) {
                        code::UNKNOWN_TOPIC_OR_PARTITION
                    } else if subscribed.contains(name) {
                        code::GROUP_SUBSCRIBED_TO_TOPIC
                    } else {
                        let key = (name.to_string(), entry.partition_index);
                        if group.offsets.contains_key(&key) {
                            tombstones.push(KeyedRecord {
                                key: records::offset_key(&group_id, name, entry.partition_index),
                                value: None,
                            });
                            removed.push(((topic_index, partition_index), key));
                        }
                        code::NONE
                    };
                    outcome.topics[topic_index][partition_index] = error_code;
                }
            }
            if tombstones.is_empty() {
                return outcome;
            }
            match self.append_now(broker, partition, &tombstones) {
                Ok(end) => {
                    for (_, key) in &removed {
                        group.offsets.remove(key);
                    }
                    (outcome, end, removed)
                }
                Err(error) => {
                    let error_code = write_error_code(&error, Written::Offsets);
                    for ((topic, partition), _) in removed {
                        outcome.topics[topic][partition] = error_code;
                    }
                    return outcome;
                }
            }
        };
        let (mut outcome, end, removed) = end;
        if let Err(error) = self.wait_written(broker, partition, end).await {
            let error_code = write_error_code(&error, Written::Offsets);
            for ((topic, partition), _) in removed {
                outcome.topics[topic][partition] = error_code;
            }
        }
        outcome
    }

    pub(super) fn describe(
        &self,
        broker: &Broker,
        wanted: Vec<String>,
    ) -> Vec<DescribedGroupOutcome> {
        wanted
            .into_iter()
            .map(|group_id| {
                let mut described = DescribedGroupOutcome {
                    group_id: group_id.clone(),
                    error_code: code::NONE,
                    // Kafka (before DescribeGroups v6) describes an unknown
                    // group as Dead with no error.
                    state: GroupState::Dead.name(),
                    protocol_type: String::new(),
                    protocol_data: String::new(),
                    members: Vec::new(),
                };
                if let Err(error_code) = self.check_partition(broker, &group_id) {
                    described.error_code = error_code;
                    described.state = "";
                    return described;
                }
                let groups = self.groups.borrow();
                let Some(group) = groups.get(&group_id) else {
                    return described;
                };
                described.state = group.state.name();
                described.protocol_type = group.protocol_type.clone().unwrap_or_default();
                if let Some(consumer) = &group.consumer {
                    // Consumer-protocol members have no classic metadata or
                    // assignment bytes; the assignor stands for the protocol.
                    described.state = consumer.state_name();
                    described.protocol_data = consumer.assignor(&self.config);
                    described.members = consumer
                        .members
                        .values()
                        .map(|member| DescribedMember {
                            member_id: member.id.clone(),
                            instance_id: member.metadata.instance_id.clone(),
                            client_id: member.metadata.client_id.clone(),
                            client_host: member.metadata.client_host.clone(),
                            metadata: Bytes::new(),
                            assignment: Bytes::new(),
                        })
                        .collect();
                    return described;
                }
                // Metadata and assignments are only meaningful once Stable.
                let stable = group.state == GroupState::Stable;
                let protocol = group.protocol.clone().unwrap_or_default();
                if stable {
                    described.protocol_data = protocol.clone();
                }
                described.members = group
                    .members
                    .values()
                    .map(|member| DescribedMember {
                        member_id: member.id.clone(),
                        instance_id: member.instance_id.clone(),
                        client_id: member.client_id.clone(),
                        client_host: member.client_host.clone(),
                        metadata: if stable {
                            member.metadata(&protocol)
                        } else {
                            Bytes::new()
                        },
                        assignment: if stable {
                            member.assignment.clone()
                        } else {
                            Bytes::new()
                        },
                    })
                    .collect();
                described
            })
            .collect()
    }

    pub(super) fn list(&self) -> ListOutcome {
        let loading = self
            .partitions
            .borrow()
            .values()
            .any(|load| *load == Load::Loading);
        let groups = self.groups.borrow();
        let mut listed: Vec<ListedGroupOutcome> = groups
            .values()
            .map(|group| match &group.consumer {
                Some(consumer) => ListedGroupOutcome {
                    group_id: group.id.clone(),
                    protocol_type: super::CONSUMER_PROTOCOL_TYPE.to_string(),
                    state: consumer.state_name(),
                    group_type: "consumer",
                },
                None => ListedGroupOutcome {
                    group_id: group.id.clone(),
                    protocol_type: group.protocol_type.clone().unwrap_or_default(),
                    state: group.state.name(),
                    group_type: "classic",
                },
            })
            .collect();
        listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        ListOutcome {
            error_code: if loading {
                code::COORDINATOR_LOAD_IN_PROGRESS
            } else {
                code::NONE
            },
            groups: listed,
        }
    }

    pub(super) async fn delete_groups(&self, broker: &Rc<Broker>, wanted: Vec<String>) -> Vec<i16> {
        let mut results = Vec::with_capacity(wanted.len());
        let mut waits = Vec::new();
        for group_id in wanted {
            let partition = match self.check_partition(broker, &group_id) {
                Ok(partition) => partition,
                Err(error_code) => {
                    results.push(error_code);
                    continue;
                }
            };
            if let Err(error_code) = self.wait_for_room(broker, &group_id, partition).await {
                results.push(error_code);
                continue;
            }
            let mut groups = self.groups.borrow_mut();
            let error_code = match groups.get(&group_id) {
                None => code::GROUP_ID_NOT_FOUND,
                Some(group) if group.state == GroupState::Dead => code::GROUP_ID_NOT_FOUND,
                Some(group) if group.state != GroupState::Empty => code::NON_EMPTY_GROUP,
                Some(group) => {
                    let mut tombstones: Vec<KeyedRecord> = group
                        .offsets
                        .keys()
                        .map(|(topic, topic_partition)| KeyedRecord {
                            key: records::offset_key(&group_id, topic, *topic_partition),
                            value: None,
                        })
                        .collect();
                    if let Some(consumer) = &group.consumer {
                        tombstones.extend(consumer.tombstones(&group_id));
                    }
                    tombstones.push(KeyedRecord {
                        key: records::group_key(&group_id),
                        value: None,
                    });
                    match self.append_now(broker, partition, &tombstones) {
                        Ok(end) => {
                            groups.remove(&group_id);
                            waits.push((results.len(), partition, end));
                            code::NONE
                        }
                        Err(error) => write_error_code(&error, Written::Group),
                    }
                }
            };
            results.push(error_code);
        }
        for (index, partition, end) in waits {
            if let Err(error) = self.wait_written(broker, partition, end).await {
                results[index] = write_error_code(&error, Written::Group);
            }
        }
        results
    }

    /// Kafka's offset expiry (KIP-211): a group with members keeps its
    /// offsets; an Empty group's offsets expire `offsets.retention.minutes`
    /// after it became Empty; a group that never had members (simple
    /// commits) expires each offset that long after its commit. An Empty
    /// group left without offsets is removed.
    pub async fn expire_offsets(&self, broker: &Rc<Broker>) {
        let retention = self.config.offsets_retention_ms;
        let candidates: Vec<(String, i32)> = self
            .groups
            .borrow()
            .values()
            .filter(|group| group.state == GroupState::Empty)
            .map(|group| (group.id.clone(), group.partition))
            .collect();
        for (group_id, partition) in candidates {
            // Refused: the next expiry pass tries again.
            if self
                .wait_for_room(broker, &group_id, partition)
                .await
                .is_err()
            {
                continue;
            }
            let now = now_ms();
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(&group_id) else {
                continue;
            };
            if group.state != GroupState::Empty || !group.pending_members.is_empty() {
                continue;
            }
            let expired: Vec<(String, i32)> = if group.protocol_type.is_some() {
                if now.saturating_sub(group.state_timestamp) >= retention {
                    group.offsets.keys().cloned().collect()
                } else {
                    Vec::new()
                }
            } else {
                group
                    .offsets
                    .iter()
                    .filter(|(_, value)| {
                        let by_commit = now.saturating_sub(value.commit_timestamp) >= retention;
                        let by_expiry =
                            value.expire_timestamp >= 0 && now >= value.expire_timestamp;
                        by_commit || by_expiry
                    })
                    .map(|(key, _)| key.clone())
                    .collect()
            };
            let remove_group = expired.len() == group.offsets.len();
            let mut tombstones: Vec<KeyedRecord> = expired
                .iter()
                .map(|(topic, topic_partition)| KeyedRecord {
                    key: records::offset_key(&group_id, topic, *topic_partition),
                    value: None,
                })
                .collect();
            if remove_group && group.persisted.is_some() {
                tombstones.push(KeyedRecord {
                    key: records::group_key(&group_id),
                    value: None,
                });
            }
            if remove_group {
                // An empty consumer group goes with its records, or a
                // restart would bring it back.
                if let Some(consumer) = &group.consumer {
                    tombstones.extend(consumer.tombstones(&group_id));
                }
            }
            if tombstones.is_empty() {
                if remove_group {
                    groups.remove(&group_id);
                }
                continue;
            }
            match self.append_now(broker, partition, &tombstones) {
                Ok(_) => {
                    tracing::info!(group = %group_id, offsets = expired.len(), removed = remove_group, "expired committed offsets");
                    for key in &expired {
                        group.offsets.remove(key);
                    }
                    if remove_group {
                        groups.remove(&group_id);
                    }
                }
                Err(error) => tracing::warn!(group = %group_id, %error, "expiring offsets failed"),
            }
        }
    }
}
