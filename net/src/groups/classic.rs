//! The classic group protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! and the rebalance state machine behind them, following Kafka's
//! GroupCoordinator (states, KIP-394 member ids, KIP-345 static members,
//! initial rebalance delay, session and rebalance timeouts).
//!
//! Every function here runs with the group borrowed and without an await;
//! requests that must wait (for the rebalance to complete, for the leader's
//! assignment, for a write to be durable) leave a sender in the member and
//! await the receiver after the borrow ends.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalReceiver};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};

use super::group::{Group, GroupState, JoinOutcome, JoinPhase, JoinedMember, Member, SyncOutcome};
use super::offsets::LeaveOutcome;
use super::{new_member_id, now_ms, spawn_detached, write_error_code, GroupCoordinator, Written};
use crate::broker::Broker;
use crate::errors::code;

/// First JoinGroup version that makes a new member rejoin with the id the
/// coordinator gives it (KIP-394).
const JOIN_KNOWN_MEMBER_ID_VERSION: i16 = 4;
/// First JoinGroup version carrying a rebalance timeout (v0 uses the
/// session timeout for both).
const JOIN_REBALANCE_TIMEOUT_VERSION: i16 = 1;
/// First LeaveGroup version with a batch of members.
const LEAVE_BATCH_VERSION: i16 = 3;
/// First SyncGroup version carrying the protocol type and name.
const SYNC_PROTOCOL_VERSION: i16 = 5;

/// An answer now, or one to wait for.
enum Reply<T> {
    Now(T),
    Later(LocalReceiver<T>),
    /// Ready once the offsets partition is durable up to `end`.
    AfterWrite {
        partition: i32,
        end: i64,
        value: T,
    },
}

/// A JoinGroup's member description.
struct Joining {
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    instance_id: Option<String>,
}

fn join_waiter() -> (
    local_channel::LocalSender<JoinOutcome>,
    LocalReceiver<JoinOutcome>,
) {
    // One answer per request.
    local_channel::new_bounded(1)
}

/// The join answer for `member_id` in the group's current generation; the
/// leader gets every member's metadata for the chosen protocol.
fn current_join_outcome(group: &Group, member_id: &str) -> JoinOutcome {
    let protocol = group.protocol.clone().unwrap_or_default();
    let members = if group.is_leader(member_id) {
        group
            .members
            .values()
            .map(|member| JoinedMember {
                member_id: member.id.clone(),
                instance_id: member.instance_id.clone(),
                metadata: member.metadata(&protocol),
            })
            .collect()
    } else {
        Vec::new()
    };
    JoinOutcome {
        error_code: code::NONE,
        generation: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol.clone(),
        leader: group.leader.clone().unwrap_or_default(),
        member_id: member_id.to_string(),
        members,
        skip_assignment: false,
    }
}

/// Kafka's static-member fencing: an instance id already bound to another
/// member id.
fn is_fenced(group: &Group, instance_id: Option<&str>, member_id: &str) -> bool {
    instance_id.is_some_and(|instance| {
        group
            .static_members
            .get(instance)
            .is_some_and(|bound| bound != member_id)
    })
}

impl GroupCoordinator {
    pub(super) async fn join(
        &self,
        broker: &Rc<Broker>,
        request: JoinGroupRequest,
        version: i16,
        client_id: String,
    ) -> JoinOutcome {
        let group_id = request.group_id.to_string();
        let member_id = request.member_id.to_string();
        if group_id.is_empty() {
            return JoinOutcome::error(code::INVALID_GROUP_ID, &member_id);
        }
        let partition = match self.check_partition(broker, &group_id) {
            Ok(partition) => partition,
            Err(error_code) => return JoinOutcome::error(error_code, &member_id),
        };
        let session = request.session_timeout_ms;
        if session < self.config.min_session_timeout_ms
            || session > self.config.max_session_timeout_ms
        {
            return JoinOutcome::error(code::INVALID_SESSION_TIMEOUT, &member_id);
        }
        let rebalance_timeout_ms =
            if version >= JOIN_REBALANCE_TIMEOUT_VERSION && request.rebalance_timeout_ms > 0 {
                request.rebalance_timeout_ms
            } else {
                session
            };
        let joining = Joining {
            client_id,
            // The handler signature carries no peer address; Kafka shows
            // "/host" here.
            client_host: String::new(),
            session_timeout_ms: session,
            rebalance_timeout_ms,
            protocol_type: request.protocol_type.to_string(),
            protocols: request
                .protocols
                .iter()
                .map(|protocol| (protocol.name.to_string(), protocol.metadata.clone()))
                .collect(),
            instance_id: request.group_instance_id.as_ref().map(|id| id.to_string()),
        };
        if let Err(error_code) = self.wait_for_room(broker, &group_id, partition).await {
            return JoinOutcome::error(error_code, &member_id);
        }
        let reply = self.join_now(broker, &group_id, partition, &member_id, joining, version);
        match reply {
            Reply::Now(outcome) => outcome,
            Reply::Later(receiver) => receiver
                .recv()
                .await
                .unwrap_or_else(|| JoinOutcome::error(code::NOT_COORDINATOR, &member_id)),
            Reply::AfterWrite {
                partition,
                end,
                value,
            } => match self.wait_written(broker, partition, end).await {
                Ok(()) => value,
                Err(error) => {
                    JoinOutcome::error(write_error_code(&error, Written::Group), &member_id)
                }
            },
        }
    }

    fn join_now(
        &self,
        broker: &Broker,
        group_id: &str,
        partition: i32,
        member_id: &str,
        joining: Joining,
        version: i16,
    ) -> Reply<JoinOutcome> {
        let error = |error_code| Reply::Now(JoinOutcome::error(error_code, member_id));
        let mut groups = self.groups.borrow_mut();
        if !groups.contains_key(group_id) {
            if !member_id.is_empty() {
                return error(code::UNKNOWN_MEMBER_ID);
            }
            groups.insert(
                group_id.to_string(),
                Group::new(group_id.to_string(), partition, now_ms()),
            );
        }
        let Some(group) = groups.get_mut(group_id) else {
            return error(code::UNKNOWN_MEMBER_ID);
        };
        if group.state == GroupState::Dead {
            return error(code::COORDINATOR_NOT_AVAILABLE);
        }
        if let Some(consumer) = &group.consumer {
            if !consumer.members.is_empty() {
                return error(code::INCONSISTENT_GROUP_PROTOCOL);
            }
            // An empty consumer group becomes a classic group, keeping its
            // offsets; its consumer-group records go.
            let tombstones = consumer.tombstones(group_id);
            if let Err(error_value) = self.append_now(broker, group.partition, &tombstones) {
                return error(write_error_code(&error_value, Written::Group));
            }
            group.consumer = None;
            group.protocol_type = None;
        }
        if !group.supports(&joining.protocol_type, &joining.protocols) {
            return error(code::INCONSISTENT_GROUP_PROTOCOL);
        }
        if member_id.is_empty() {
            if group.members.len() >= self.config.max_size {
                return error(code::GROUP_MAX_SIZE_REACHED);
            }
            let prefix = joining
                .instance_id
                .clone()
                .unwrap_or_else(|| joining.client_id.clone());
            let new_id = new_member_id(&prefix);
            if let Some(instance) = joining.instance_id.clone() {
                return match group.static_members.get(&instance).cloned() {
                    Some(old_id) => {
                        self.replace_static_member(broker, group, &old_id, new_id, joining)
                    }
                    None => {
                        Reply::Later(self.add_member_and_rebalance(broker, group, new_id, joining))
                    }
                };
            }
            if version >= JOIN_KNOWN_MEMBER_ID_VERSION {
                // KIP-394: the member must come back with this id, so a
                // client that retries after a lost response does not leave
                // a ghost member behind.
                let token = self.token();
                group.pending_members.insert(new_id.clone(), token);
                let session = Duration::from_millis(joining.session_timeout_ms.max(0) as u64);
                self.schedule_pending_timer(group_id, &new_id, token, session);
                return Reply::Now(JoinOutcome::error(code::MEMBER_ID_REQUIRED, &new_id));
            }
            return Reply::Later(self.add_member_and_rebalance(broker, group, new_id, joining));
        }
        if group.pending_members.remove(member_id).is_some() {
            if group.members.len() >= self.config.max_size {
                return error(code::GROUP_MAX_SIZE_REACHED);
            }
            return Reply::Later(self.add_member_and_rebalance(
                broker,
                group,
                member_id.to_string(),
                joining,
            ));
        }
        if let Some(instance) = &joining.instance_id {
            match group.static_members.get(instance) {
                Some(bound) if bound != member_id => return error(code::FENCED_INSTANCE_ID),
                None => return error(code::UNKNOWN_MEMBER_ID),
                _ => {}
            }
        }
        let Some(member) = group.members.get(member_id) else {
            return error(code::UNKNOWN_MEMBER_ID);
        };
        let unchanged = member.same_protocols(&joining.protocols);
        match group.state {
            GroupState::PreparingRebalance => {
                Reply::Later(self.update_member_and_rebalance(broker, group, member_id, joining))
            }
            GroupState::CompletingRebalance if unchanged => {
                // A retried join of a member that already joined this
                // generation: the same answer again.
                Reply::Now(current_join_outcome(group, member_id))
            }
            GroupState::Stable if unchanged && !group.is_leader(member_id) => {
                if let Some(member) = group.members.get_mut(member_id) {
                    member.last_heartbeat = Instant::now();
                }
                Reply::Now(current_join_outcome(group, member_id))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                // The leader rejoining or a member's subscription changing
                // (cooperative rebalancing rejoins after revoking) starts a
                // new rebalance.
                Reply::Later(self.update_member_and_rebalance(broker, group, member_id, joining))
            }
            GroupState::Empty | GroupState::Dead => error(code::UNKNOWN_MEMBER_ID),
        }
    }

    /// Adds a new member that waits for the rebalance it triggers.
    fn add_member_and_rebalance(
        &self,
        broker: &Broker,
        group: &mut Group,
        member_id: String,
        joining: Joining,
    ) -> LocalReceiver<JoinOutcome> {
        let (sender, receiver) = join_waiter();
        let token = self.token();
        if group.members.is_empty() {
            group.protocol_type = Some(joining.protocol_type.clone());
        }
        if let Some(instance) = &joining.instance_id {
            group
                .static_members
                .insert(instance.clone(), member_id.clone());
        }
        if group.leader.is_none() {
            group.leader = Some(member_id.clone());
        }
        group.members.insert(
            member_id.clone(),
            Member {
                id: member_id.clone(),
                instance_id: joining.instance_id,
                client_id: joining.client_id,
                client_host: joining.client_host,
                session_timeout_ms: joining.session_timeout_ms,
                rebalance_timeout_ms: joining.rebalance_timeout_ms,
                protocol_type: joining.protocol_type,
                protocols: joining.protocols,
                assignment: Bytes::new(),
                join_waiter: Some(sender),
                sync_waiter: None,
                last_heartbeat: Instant::now(),
                timer: token,
            },
        );
        self.schedule_session_timer(&group.id, &member_id, token);
        if group.state == GroupState::PreparingRebalance
            && group.join_phase == JoinPhase::InitialDelay
        {
            group.new_member_added = true;
        }
        self.maybe_prepare_rebalance(broker, group);
        receiver
    }

    /// A known member rejoins: new metadata, and it waits for the rebalance.
    fn update_member_and_rebalance(
        &self,
        broker: &Broker,
        group: &mut Group,
        member_id: &str,
        joining: Joining,
    ) -> LocalReceiver<JoinOutcome> {
        let (sender, receiver) = join_waiter();
        if let Some(member) = group.members.get_mut(member_id) {
            member.protocols = joining.protocols;
            member.protocol_type = joining.protocol_type;
            member.session_timeout_ms = joining.session_timeout_ms;
            member.rebalance_timeout_ms = joining.rebalance_timeout_ms;
            member.client_id = joining.client_id;
            member.last_heartbeat = Instant::now();
            if let Some(previous) = member.join_waiter.replace(sender) {
                // Only one join per member can be answered; the earlier one
                // is told to retry.
                let _ =
                    previous.try_send(JoinOutcome::error(code::REBALANCE_IN_PROGRESS, member_id));
            }
        }
        self.maybe_prepare_rebalance(broker, group);
        receiver
    }

    /// KIP-345: a static member restarted (new member id, same instance id).
    /// It takes the old member's place and assignment; in a Stable group
    /// whose protocol would not change, there is no rebalance.
    fn replace_static_member(
        &self,
        broker: &Broker,
        group: &mut Group,
        old_id: &str,
        new_id: String,
        joining: Joining,
    ) -> Reply<JoinOutcome> {
        let Some(mut member) = group.members.remove(old_id) else {
            // A mapping without its member: treat the instance as new.
            if let Some(instance) = &joining.instance_id {
                group.static_members.remove(instance);
            }
            return Reply::Later(self.add_member_and_rebalance(broker, group, new_id, joining));
        };
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.try_send(JoinOutcome::error(code::FENCED_INSTANCE_ID, old_id));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            let _ = waiter.try_send(SyncOutcome::error(code::FENCED_INSTANCE_ID));
        }
        // The old leader id is what the new member is told, so it does not
        // take itself for the leader and compute an assignment that a
        // Stable group would never distribute (Kafka does the same).
        let previous_leader = group.leader.clone().unwrap_or_default();
        if group.is_leader(old_id) {
            group.leader = Some(new_id.clone());
        }
        if group.awaiting_sync.remove(old_id) {
            group.awaiting_sync.insert(new_id.clone());
        }
        let token = self.token();
        member.id = new_id.clone();
        member.protocols = joining.protocols;
        member.protocol_type = joining.protocol_type;
        member.session_timeout_ms = joining.session_timeout_ms;
        member.rebalance_timeout_ms = joining.rebalance_timeout_ms;
        member.client_id = joining.client_id;
        member.client_host = joining.client_host;
        member.last_heartbeat = Instant::now();
        member.timer = token;
        if let Some(instance) = &joining.instance_id {
            group
                .static_members
                .insert(instance.clone(), new_id.clone());
        }
        group.members.insert(new_id.clone(), member);
        self.schedule_session_timer(&group.id, &new_id, token);
        tracing::info!(group = %group.id, old = %old_id, new = %new_id, "static member replaced");
        if group.state == GroupState::Stable && group.select_protocol() == group.protocol {
            return match self.persist_group(broker, group) {
                Ok(end) => {
                    let mut outcome = current_join_outcome(group, &new_id);
                    outcome.leader = previous_leader;
                    outcome.members.clear();
                    Reply::AfterWrite {
                        partition: group.partition,
                        end,
                        value: outcome,
                    }
                }
                Err(error) => Reply::Now(JoinOutcome::error(
                    write_error_code(&error, Written::Group),
                    &new_id,
                )),
            };
        }
        let (sender, receiver) = join_waiter();
        if let Some(member) = group.members.get_mut(&new_id) {
            member.join_waiter = Some(sender);
        }
        self.maybe_prepare_rebalance(broker, group);
        Reply::Later(receiver)
    }

    /// Starts a rebalance unless one is already collecting members, in
    /// which case this may be the join it was waiting for.
    fn maybe_prepare_rebalance(&self, broker: &Broker, group: &mut Group) {
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty => {
                self.prepare_rebalance(broker, group)
            }
            GroupState::PreparingRebalance => self.try_complete_join(broker, group),
            GroupState::Dead => {}
        }
    }

    fn prepare_rebalance(&self, broker: &Broker, group: &mut Group) {
        if group.state == GroupState::CompletingRebalance {
            // The assignment being collected is void: members waiting for it
            // are told to rejoin.
            for member in group.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(waiter) = member.sync_waiter.take() {
                    let _ = waiter.try_send(SyncOutcome::error(code::REBALANCE_IN_PROGRESS));
                }
            }
        }
        group.awaiting_sync.clear();
        let was_empty = group.state == GroupState::Empty;
        group.set_state(GroupState::PreparingRebalance, now_ms());
        group.rebalance += 1;
        let rebalance_timeout = Duration::from_millis(group.rebalance_timeout_ms().max(0) as u64);
        let initial_delay = Duration::from_millis(self.config.initial_rebalance_delay_ms);
        if was_empty && !initial_delay.is_zero() {
            // group.initial.rebalance.delay.ms: consumers of a new group
            // usually start together; waiting a little saves a rebalance per
            // consumer. Extended while members keep arriving, up to the
            // rebalance timeout.
            group.join_phase = JoinPhase::InitialDelay;
            group.new_member_added = false;
            let delay = initial_delay.min(rebalance_timeout);
            let remaining = rebalance_timeout.saturating_sub(initial_delay);
            self.schedule_join_timer(&group.id, group.rebalance, delay, Some(remaining));
        } else {
            group.join_phase = JoinPhase::Normal;
            self.schedule_join_timer(&group.id, group.rebalance, rebalance_timeout, None);
        }
        tracing::debug!(group = %group.id, generation = group.generation, members = group.members.len(), "rebalance started");
        self.try_complete_join(broker, group);
    }

    fn try_complete_join(&self, broker: &Broker, group: &mut Group) {
        if group.state == GroupState::PreparingRebalance
            && group.join_phase == JoinPhase::Normal
            && group.all_members_joined()
        {
            self.complete_join(broker, group);
        }
    }

    /// Ends the join phase: members that did not rejoin are removed, the
    /// generation advances, and every joined member gets its answer (the
    /// leader with everyone's metadata).
    fn complete_join(&self, broker: &Broker, group: &mut Group) {
        if group.state != GroupState::PreparingRebalance {
            return;
        }
        group.join_phase = JoinPhase::Normal;
        let absent: Vec<String> = group
            .members
            .values()
            .filter(|member| member.join_waiter.is_none())
            .map(|member| member.id.clone())
            .collect();
        for member_id in absent {
            tracing::info!(group = %group.id, member = %member_id, "member did not rejoin in time; removed");
            self.remove_member(group, &member_id);
        }
        group.generation = group.generation.wrapping_add(1).max(1);
        if group.members.is_empty() {
            group.protocol = None;
            group.leader = None;
            group.set_state(GroupState::Empty, now_ms());
            if let Err(error) = self.persist_group(broker, group) {
                tracing::warn!(group = %group.id, %error, "writing the emptied group failed");
            }
            return;
        }
        group.protocol = group.select_protocol();
        if group
            .leader
            .as_ref()
            .is_none_or(|leader| !group.members.contains_key(leader))
        {
            group.leader = group.members.keys().next().cloned();
        }
        group.set_state(GroupState::CompletingRebalance, now_ms());
        let now = Instant::now();
        let member_ids: Vec<String> = group.members.keys().cloned().collect();
        for member_id in &member_ids {
            let outcome = current_join_outcome(group, member_id);
            if let Some(member) = group.members.get_mut(member_id) {
                member.last_heartbeat = now;
                if let Some(waiter) = member.join_waiter.take() {
                    let _ = waiter.try_send(outcome);
                }
            }
        }
        group.awaiting_sync = member_ids.into_iter().collect();
        tracing::info!(
            group = %group.id,
            generation = group.generation,
            members = group.members.len(),
            protocol = group.protocol.as_deref().unwrap_or(""),
            "group joined"
        );
        let timeout = Duration::from_millis(group.rebalance_timeout_ms().max(0) as u64);
        self.schedule_sync_timer(&group.id, group.generation, timeout);
    }

    /// Removes a member, answering any request it has waiting. No state
    /// transition (callers decide).
    fn remove_member(&self, group: &mut Group, member_id: &str) -> Option<Member> {
        let mut member = group.members.remove(member_id)?;
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.try_send(JoinOutcome::error(code::UNKNOWN_MEMBER_ID, member_id));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            let _ = waiter.try_send(SyncOutcome::error(code::UNKNOWN_MEMBER_ID));
        }
        if let Some(instance) = &member.instance_id {
            if group
                .static_members
                .get(instance)
                .is_some_and(|bound| bound == member_id)
            {
                group.static_members.remove(instance);
            }
        }
        group.awaiting_sync.remove(member_id);
        if group.is_leader(member_id) {
            group.leader = group.members.keys().next().cloned();
        }
        Some(member)
    }

    fn remove_member_and_update_group(&self, broker: &Broker, group: &mut Group, member_id: &str) {
        if self.remove_member(group, member_id).is_none() {
            return;
        }
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(broker, group)
            }
            GroupState::PreparingRebalance => self.try_complete_join(broker, group),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    pub(super) async fn sync(
        &self,
        broker: &Rc<Broker>,
        request: SyncGroupRequest,
        version: i16,
    ) -> SyncOutcome {
        let group_id = request.group_id.to_string();
        if group_id.is_empty() {
            return SyncOutcome::error(code::INVALID_GROUP_ID);
        }
        let partition = match self.check_partition(broker, &group_id) {
            Ok(partition) => partition,
            Err(error_code) => return SyncOutcome::error(error_code),
        };
        if let Err(error_code) = self.wait_for_room(broker, &group_id, partition).await {
            return SyncOutcome::error(error_code);
        }
        let reply = self.sync_now(broker, &group_id, request, version);
        match reply {
            Reply::Now(outcome) => outcome,
            Reply::Later(receiver) => receiver
                .recv()
                .await
                .unwrap_or_else(|| SyncOutcome::error(code::NOT_COORDINATOR)),
            Reply::AfterWrite { value, .. } => value,
        }
    }

    fn sync_now(
        &self,
        broker: &Broker,
        group_id: &str,
        request: SyncGroupRequest,
        version: i16,
    ) -> Reply<SyncOutcome> {
        let member_id = request.member_id.to_string();
        let instance_id = request.group_instance_id.as_ref().map(|id| id.to_string());
        let error = |error_code| Reply::Now(SyncOutcome::error(error_code));
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return error(code::UNKNOWN_MEMBER_ID);
        };
        if group.state == GroupState::Dead {
            return error(code::COORDINATOR_NOT_AVAILABLE);
        }
        if is_fenced(group, instance_id.as_deref(), &member_id) {
            return error(code::FENCED_INSTANCE_ID);
        }
        if !group.members.contains_key(&member_id) {
            return error(code::UNKNOWN_MEMBER_ID);
        }
        if request.generation_id != group.generation {
            return error(code::ILLEGAL_GENERATION);
        }
        if version >= SYNC_PROTOCOL_VERSION {
            let type_differs = request
                .protocol_type
                .as_ref()
                .is_some_and(|wanted| group.protocol_type.as_deref() != Some(wanted.as_str()));
            let name_differs = request
                .protocol_name
                .as_ref()
                .is_some_and(|wanted| group.protocol.as_deref() != Some(wanted.as_str()));
            if type_differs || name_differs {
                return error(code::INCONSISTENT_GROUP_PROTOCOL);
            }
        }
        match group.state {
            GroupState::Empty => error(code::UNKNOWN_MEMBER_ID),
            GroupState::Dead => error(code::COORDINATOR_NOT_AVAILABLE),
            GroupState::PreparingRebalance => error(code::REBALANCE_IN_PROGRESS),
            GroupState::Stable => {
                group.awaiting_sync.remove(&member_id);
                let protocol_type = group.protocol_type.clone();
                let protocol_name = group.protocol.clone();
                let Some(member) = group.members.get_mut(&member_id) else {
                    return error(code::UNKNOWN_MEMBER_ID);
                };
                member.last_heartbeat = Instant::now();
                Reply::Now(SyncOutcome {
                    error_code: code::NONE,
                    protocol_type,
                    protocol_name,
                    assignment: member.assignment.clone(),
                })
            }
            GroupState::CompletingRebalance => {
                let (sender, receiver) = local_channel::new_bounded(1);
                if let Some(member) = group.members.get_mut(&member_id) {
                    if let Some(previous) = member.sync_waiter.replace(sender) {
                        let _ = previous.try_send(SyncOutcome::error(code::REBALANCE_IN_PROGRESS));
                    }
                }
                group.awaiting_sync.remove(&member_id);
                if group.is_leader(&member_id) {
                    self.complete_sync(broker, group, request.assignments);
                }
                Reply::Later(receiver)
            }
        }
    }

    /// The leader's assignment arrived: store it with the group metadata,
    /// become Stable, and answer every waiting member once the write is
    /// durable.
    fn complete_sync(
        &self,
        broker: &Broker,
        group: &mut Group,
        assignments: Vec<SyncGroupRequestAssignment>,
    ) {
        let mut by_member: HashMap<String, Bytes> = assignments
            .into_iter()
            .map(|assignment| (assignment.member_id.to_string(), assignment.assignment))
            .collect();
        for member in group.members.values_mut() {
            // Members the leader left out get an empty assignment.
            member.assignment = by_member.remove(&member.id).unwrap_or_default();
        }
        let end = match self.persist_group(broker, group) {
            Ok(end) => end,
            Err(error) => {
                let error_code = write_error_code(&error, Written::Group);
                tracing::warn!(group = %group.id, %error, "storing the group assignment failed");
                for member in group.members.values_mut() {
                    member.assignment = Bytes::new();
                    if let Some(waiter) = member.sync_waiter.take() {
                        let _ = waiter.try_send(SyncOutcome::error(error_code));
                    }
                }
                self.prepare_rebalance(broker, group);
                return;
            }
        };
        group.set_state(GroupState::Stable, now_ms());
        let now = Instant::now();
        let mut answers = Vec::new();
        for member in group.members.values_mut() {
            if let Some(waiter) = member.sync_waiter.take() {
                member.last_heartbeat = now;
                let outcome = SyncOutcome {
                    error_code: code::NONE,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol.clone(),
                    assignment: member.assignment.clone(),
                };
                answers.push((waiter, outcome));
            }
        }
        tracing::info!(group = %group.id, generation = group.generation, "group stable");
        let weak = self.weak_broker();
        let partition = group.partition;
        let generation = group.generation;
        let group_id = group.id.clone();
        spawn_detached(async move {
            let Some(broker) = weak.upgrade() else {
                return;
            };
            let written = broker.groups.wait_written(&broker, partition, end).await;
            match written {
                Ok(()) => {
                    for (waiter, outcome) in answers {
                        let _ = waiter.try_send(outcome);
                    }
                }
                Err(error) => {
                    let error_code = write_error_code(&error, Written::Group);
                    for (waiter, _) in answers {
                        let _ = waiter.try_send(SyncOutcome::error(error_code));
                    }
                    let mut groups = broker.groups.groups.borrow_mut();
                    if let Some(group) = groups.get_mut(&group_id) {
                        if group.generation == generation && group.state == GroupState::Stable {
                            broker.groups.prepare_rebalance(&broker, group);
                        }
                    }
                }
            }
        });
    }

    pub(super) fn heartbeat(&self, broker: &Broker, request: &HeartbeatRequest) -> i16 {
        let group_id = request.group_id.as_str();
        if group_id.is_empty() {
            return code::INVALID_GROUP_ID;
        }
        if let Err(error_code) = self.check_partition(broker, group_id) {
            return error_code;
        }
        let member_id = request.member_id.as_str();
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        if group.state == GroupState::Dead {
            return code::COORDINATOR_NOT_AVAILABLE;
        }
        if is_fenced(
            group,
            request.group_instance_id.as_ref().map(|id| id.as_str()),
            member_id,
        ) {
            return code::FENCED_INSTANCE_ID;
        }
        let state = group.state;
        let generation = group.generation;
        let Some(member) = group.members.get_mut(member_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        if request.generation_id != generation {
            return code::ILLEGAL_GENERATION;
        }
        match state {
            GroupState::Empty => code::UNKNOWN_MEMBER_ID,
            GroupState::Dead => code::COORDINATOR_NOT_AVAILABLE,
            GroupState::PreparingRebalance => {
                member.last_heartbeat = Instant::now();
                code::REBALANCE_IN_PROGRESS
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.last_heartbeat = Instant::now();
                code::NONE
            }
        }
    }

    pub(super) async fn leave(
        &self,
        broker: &Rc<Broker>,
        request: LeaveGroupRequest,
        version: i16,
    ) -> LeaveOutcome {
        let identities: Vec<(String, Option<String>)> = if version < LEAVE_BATCH_VERSION {
            vec![(request.member_id.to_string(), None)]
        } else {
            request
                .members
                .iter()
                .map(|member| {
                    (
                        member.member_id.to_string(),
                        member.group_instance_id.as_ref().map(|id| id.to_string()),
                    )
                })
                .collect()
        };
        let group_id = request.group_id.to_string();
        let whole = |error_code| LeaveOutcome {
            error_code,
            members: identities
                .iter()
                .map(|(member, instance)| (member.clone(), instance.clone(), error_code))
                .collect(),
        };
        if group_id.is_empty() {
            return whole(code::INVALID_GROUP_ID);
        }
        let partition = match self.check_partition(broker, &group_id) {
            Ok(partition) => partition,
            Err(error_code) => return whole(error_code),
        };
        if let Err(error_code) = self.wait_for_room(broker, &group_id, partition).await {
            return whole(error_code);
        }
        let mut groups = self.groups.borrow_mut();
        let mut members = Vec::with_capacity(identities.len());
        match groups.get_mut(&group_id) {
            None => {
                for (member_id, instance_id) in identities {
                    members.push((member_id, instance_id, code::UNKNOWN_MEMBER_ID));
                }
            }
            Some(group) if group.state == GroupState::Dead => {
                return whole(code::COORDINATOR_NOT_AVAILABLE)
            }
            Some(group) => {
                for (member_id, instance_id) in identities {
                    let error_code =
                        self.leave_one(broker, group, &member_id, instance_id.as_deref());
                    members.push((member_id, instance_id, error_code));
                }
            }
        }
        // Before v3 the one member's error is the response's error.
        let error_code = if version < LEAVE_BATCH_VERSION {
            members.first().map_or(code::NONE, |member| member.2)
        } else {
            code::NONE
        };
        LeaveOutcome {
            error_code,
            members,
        }
    }

    fn leave_one(
        &self,
        broker: &Broker,
        group: &mut Group,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let target = match instance_id {
            Some(instance) => match group.static_members.get(instance) {
                None => return code::UNKNOWN_MEMBER_ID,
                // An admin may remove a static member by instance id alone.
                Some(bound) if !member_id.is_empty() && bound != member_id => {
                    return code::FENCED_INSTANCE_ID
                }
                Some(bound) => bound.clone(),
            },
            None => member_id.to_string(),
        };
        if group.pending_members.remove(&target).is_some() {
            if group.state == GroupState::PreparingRebalance {
                self.try_complete_join(broker, group);
            }
            return code::NONE;
        }
        if !group.members.contains_key(&target) {
            return code::UNKNOWN_MEMBER_ID;
        }
        tracing::info!(group = %group.id, member = %target, "member left");
        self.remove_member_and_update_group(broker, group, &target);
        code::NONE
    }

    // ---- timer callbacks -----------------------------------------------

    /// A member's session timed out.
    pub(super) fn expire_member(
        &self,
        broker: &Broker,
        group_id: &str,
        member_id: &str,
        token: u64,
    ) {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return;
        };
        let expired = group
            .members
            .get(member_id)
            .is_some_and(|member| member.timer == token && !member.is_waiting());
        if expired {
            tracing::info!(group = %group_id, member = %member_id, "member session expired; removed");
            self.remove_member_and_update_group(broker, group, member_id);
        }
    }

    pub(super) fn expire_pending_member(
        &self,
        broker: &Broker,
        group_id: &str,
        member_id: &str,
        token: u64,
    ) {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return;
        };
        if group.pending_members.get(member_id) == Some(&token) {
            group.pending_members.remove(member_id);
            if group.state == GroupState::PreparingRebalance {
                self.try_complete_join(broker, group);
            }
        }
    }

    /// The rebalance deadline (or the end of an initial delay) arrived.
    pub(super) fn on_join_deadline(
        &self,
        broker: &Broker,
        group_id: &str,
        rebalance: u64,
        initial_remaining: Option<Duration>,
    ) {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return;
        };
        if group.rebalance != rebalance || group.state != GroupState::PreparingRebalance {
            return;
        }
        if let Some(remaining) = initial_remaining {
            if group.new_member_added && !remaining.is_zero() {
                group.new_member_added = false;
                let delay =
                    Duration::from_millis(self.config.initial_rebalance_delay_ms).min(remaining);
                self.schedule_join_timer(group_id, rebalance, delay, Some(remaining - delay));
                return;
            }
        }
        self.complete_join(broker, group);
    }

    /// The leader did not send its assignment (or members did not sync)
    /// within the rebalance timeout.
    pub(super) fn on_sync_deadline(&self, broker: &Broker, group_id: &str, generation: i32) {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return;
        };
        let waiting_state = matches!(
            group.state,
            GroupState::CompletingRebalance | GroupState::Stable
        );
        if group.generation != generation || !waiting_state || group.awaiting_sync.is_empty() {
            return;
        }
        let missing: Vec<String> = group.awaiting_sync.iter().cloned().collect();
        for member_id in &missing {
            tracing::info!(group = %group_id, member = %member_id, "member did not sync in time; removed");
            self.remove_member(group, member_id);
        }
        self.prepare_rebalance(broker, group);
    }
}
