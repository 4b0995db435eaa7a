//! Controller requests forwarded between nodes: a node that is not the
//! active controller sends the request over the controller port to the node
//! that is, and relays its answer. The encoding uses the cluster layer's
//! bounds-checked codec; nothing in a forwarded frame is trusted for sizes.

use sluice_cluster::codec::{DecodeError, Reader, Writer};
use sluice_cluster::records::{
    read_acl, read_configs, read_quota_name, write_acl, write_configs, write_quota_name,
};

use crate::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};
use crate::sasl::alter::{Deletion, Upsertion, UserOutcome};

use super::{
    ConfigChange, ControllerRequest, ElectionOutcome, ElectionTopic, ElectionType, IsrChange,
    NewTopic, QuotaAlteration, Reassignment, ReassignmentOutcome, ShardResponse, TopicOutcome,
};

mod tag {
    pub const CREATE_TOPICS: u8 = 1;
    pub const DELETE_TOPICS: u8 = 2;
    pub const CREATE_PARTITIONS: u8 = 3;
    pub const ALTER_TOPIC_CONFIGS: u8 = 4;
    pub const ALLOCATE_PRODUCER_ID: u8 = 5;
    /// 6 was a single partition's ISR change, before they were batched.
    pub const ALTER_PARTITIONS: u8 = 10;
    pub const SHUT_DOWN_BROKER: u8 = 7;
    pub const ALTER_REASSIGNMENTS: u8 = 8;
    pub const ELECT_LEADERS: u8 = 9;
    pub const RESIGN_REPLICAS: u8 = 11;
    pub const ALTER_CLIENT_QUOTAS: u8 = 12;
    pub const CREATE_ACLS: u8 = 13;
    pub const DELETE_ACLS: u8 = 14;
    pub const ALTER_SCRAM_CREDENTIALS: u8 = 15;
    pub const TOPICS: u8 = 101;
    pub const PRODUCER_ID: u8 = 102;
    pub const NONE: u8 = 103;
    pub const PARTITION: u8 = 104;
    pub const PARTITION_ERROR: u8 = 105;
    pub const REASSIGNMENTS: u8 = 106;
    pub const ELECTIONS: u8 = 107;
    pub const ELECTIONS_FAILED: u8 = 108;
    pub const PARTITIONS: u8 = 109;
    pub const CLIENT_QUOTAS_WRITTEN: u8 = 110;
    pub const CLIENT_QUOTAS_REFUSED: u8 = 111;
    pub const ACLS_CREATED: u8 = 112;
    pub const ACLS_CREATE_REFUSED: u8 = 113;
    pub const ACLS_DELETED: u8 = 114;
    pub const ACLS_DELETE_REFUSED: u8 = 115;
    pub const SCRAM_ALTERED: u8 = 116;
    pub const SCRAM_REFUSED: u8 = 117;
}

/// The smallest ACL encoding: four codes and three empty strings.
const ACL_BYTES_MIN: usize = 4 + 3 * 4;

fn read_binding(reader: &mut Reader<'_>) -> Result<AclBinding, DecodeError> {
    let stored = read_acl(reader)?;
    AclBinding::from_stored(&stored)
        .ok_or_else(|| DecodeError(format!("an ACL with unknown codes: {stored:?}")))
}

fn write_filter(writer: &mut Writer, filter: &AclFilter) {
    for code in [
        filter.resource_type.code(),
        filter.pattern_type.code(),
        filter.operation.code(),
        filter.permission.code(),
    ] {
        writer.u8(code as u8);
    }
    writer.opt_str(filter.resource_name.as_deref());
    writer.opt_str(filter.principal.as_deref());
    writer.opt_str(filter.host.as_deref());
}

fn read_filter(reader: &mut Reader<'_>) -> Result<AclFilter, DecodeError> {
    let unknown = |what: &str, code: u8| DecodeError(format!("unknown ACL filter {what} {code}"));
    let resource_type = reader.u8()?;
    let pattern_type = reader.u8()?;
    let operation = reader.u8()?;
    let permission = reader.u8()?;
    Ok(AclFilter {
        resource_type: ResourceType::of_code(resource_type as i8)
            .ok_or_else(|| unknown("resource type", resource_type))?,
        pattern_type: PatternType::of_code(pattern_type as i8)
            .ok_or_else(|| unknown("pattern type", pattern_type))?,
        resource_name: reader.opt_str()?,
        principal: reader.opt_str()?,
        host: reader.opt_str()?,
        operation: Operation::of_code(operation as i8)
            .ok_or_else(|| unknown("operation", operation))?,
        permission: Permission::of_code(permission as i8)
            .ok_or_else(|| unknown("permission", permission))?,
    })
}

pub fn encode_request(request: &ControllerRequest) -> Vec<u8> {
    let mut writer = Writer::default();
    match request {
        ControllerRequest::CreateTopics(topics) => {
            writer.u8(tag::CREATE_TOPICS);
            writer.u32(topics.len() as u32);
            for topic in topics {
                writer.str(&topic.name);
                writer.i32(topic.partitions);
                writer.u16(topic.replication_factor as u16);
                writer.u32(topic.assignments.len() as u32);
                for replicas in &topic.assignments {
                    writer.i32s(replicas);
                }
                write_configs(&mut writer, &topic.configs);
                writer.bool(topic.validate_only);
            }
        }
        ControllerRequest::DeleteTopics(names) => {
            writer.u8(tag::DELETE_TOPICS);
            writer.u32(names.len() as u32);
            for name in names {
                writer.str(name);
            }
        }
        ControllerRequest::CreatePartitions {
            topic,
            count,
            validate_only,
        } => {
            writer.u8(tag::CREATE_PARTITIONS);
            writer.str(topic);
            writer.i32(*count);
            writer.bool(*validate_only);
        }
        ControllerRequest::AlterTopicConfigs {
            topic,
            changes,
            validate_only,
        } => {
            writer.u8(tag::ALTER_TOPIC_CONFIGS);
            writer.str(topic);
            writer.u32(changes.len() as u32);
            for change in changes {
                writer.str(&change.name);
                writer.u8(change.operation as u8);
                writer.opt_str(change.value.as_deref());
            }
            writer.bool(*validate_only);
        }
        ControllerRequest::AllocateProducerId => writer.u8(tag::ALLOCATE_PRODUCER_ID),
        ControllerRequest::AlterPartitions(changes) => {
            writer.u8(tag::ALTER_PARTITIONS);
            writer.u32(changes.len() as u32);
            for change in changes {
                writer.str(&change.topic);
                writer.i32(change.partition);
                writer.i32(change.leader);
                writer.i32(change.leader_epoch);
                writer.i32(change.partition_epoch);
                writer.i32s(&change.isr);
            }
        }
        ControllerRequest::ShutDownBroker { id } => {
            writer.u8(tag::SHUT_DOWN_BROKER);
            writer.i32(*id);
        }
        ControllerRequest::ResignReplicas { id, partitions } => {
            writer.u8(tag::RESIGN_REPLICAS);
            writer.i32(*id);
            writer.u32(partitions.len() as u32);
            for (topic, partition) in partitions {
                writer.str(topic);
                writer.i32(*partition);
            }
        }
        ControllerRequest::AlterReassignments(reassignments) => {
            writer.u8(tag::ALTER_REASSIGNMENTS);
            writer.u32(reassignments.len() as u32);
            for reassignment in reassignments {
                writer.str(&reassignment.topic);
                writer.i32(reassignment.partition);
                writer.bool(reassignment.replicas.is_some());
                if let Some(replicas) = &reassignment.replicas {
                    writer.i32s(replicas);
                }
            }
        }
        ControllerRequest::ElectLeaders { election, topics } => {
            writer.u8(tag::ELECT_LEADERS);
            writer.u8(election.id() as u8);
            writer.bool(topics.is_some());
            if let Some(topics) = topics {
                writer.u32(topics.len() as u32);
                for topic in topics {
                    writer.str(&topic.topic);
                    writer.i32s(&topic.partitions);
                }
            }
        }
        ControllerRequest::AlterClientQuotas(alterations) => {
            writer.u8(tag::ALTER_CLIENT_QUOTAS);
            writer.u32(alterations.len() as u32);
            for alteration in alterations {
                write_quota_name(&mut writer, alteration.entity.user.as_ref());
                write_quota_name(&mut writer, alteration.entity.client_id.as_ref());
                writer.u32(alteration.changes.len() as u32);
                for (key, value) in &alteration.changes {
                    writer.str(key);
                    writer.bool(value.is_some());
                    if let Some(value) = value {
                        writer.u64(value.to_bits());
                    }
                }
            }
        }
        ControllerRequest::CreateAcls(acls) => {
            writer.u8(tag::CREATE_ACLS);
            writer.u32(acls.len() as u32);
            for acl in acls {
                write_acl(&mut writer, &acl.to_stored());
            }
        }
        ControllerRequest::DeleteAcls(filters) => {
            writer.u8(tag::DELETE_ACLS);
            writer.u32(filters.len() as u32);
            for filter in filters {
                write_filter(&mut writer, filter);
            }
        }
        ControllerRequest::AlterScramCredentials {
            deletions,
            upsertions,
        } => {
            writer.u8(tag::ALTER_SCRAM_CREDENTIALS);
            writer.u32(deletions.len() as u32);
            for deletion in deletions {
                writer.str(&deletion.user);
                writer.u8(deletion.mechanism as u8);
            }
            writer.u32(upsertions.len() as u32);
            for upsertion in upsertions {
                writer.str(&upsertion.user);
                writer.u8(upsertion.mechanism as u8);
                writer.i32(upsertion.iterations);
                writer.blob(&upsertion.salt);
                writer.blob(&upsertion.stored_key);
                writer.blob(&upsertion.server_key);
            }
        }
    }
    writer.bytes
}

pub fn decode_request(bytes: &[u8]) -> Result<ControllerRequest, DecodeError> {
    let mut reader = Reader::new(bytes);
    let request = match reader.u8()? {
        tag::CREATE_TOPICS => {
            // A topic is at least a name, counts and a flag: 19 bytes.
            let count = reader.count(19)?;
            let mut topics = Vec::with_capacity(count);
            for _ in 0..count {
                let name = reader.str()?;
                let partitions = reader.i32()?;
                let replication_factor = reader.u16()? as i16;
                let lists = reader.count(4)?;
                let mut assignments = Vec::with_capacity(lists);
                for _ in 0..lists {
                    assignments.push(reader.i32s()?);
                }
                let configs = read_configs(&mut reader)?;
                let validate_only = reader.bool()?;
                topics.push(NewTopic {
                    name,
                    partitions,
                    replication_factor,
                    assignments,
                    configs,
                    validate_only,
                });
            }
            ControllerRequest::CreateTopics(topics)
        }
        tag::DELETE_TOPICS => {
            let count = reader.count(4)?;
            let names = (0..count)
                .map(|_| reader.str())
                .collect::<Result<Vec<String>, DecodeError>>()?;
            ControllerRequest::DeleteTopics(names)
        }
        tag::CREATE_PARTITIONS => ControllerRequest::CreatePartitions {
            topic: reader.str()?,
            count: reader.i32()?,
            validate_only: reader.bool()?,
        },
        tag::ALTER_TOPIC_CONFIGS => {
            let topic = reader.str()?;
            let count = reader.count(6)?;
            let mut changes = Vec::with_capacity(count);
            for _ in 0..count {
                changes.push(ConfigChange {
                    name: reader.str()?,
                    operation: reader.u8()? as i8,
                    value: reader.opt_str()?,
                });
            }
            ControllerRequest::AlterTopicConfigs {
                topic,
                changes,
                validate_only: reader.bool()?,
            }
        }
        tag::ALLOCATE_PRODUCER_ID => ControllerRequest::AllocateProducerId,
        tag::ALTER_PARTITIONS => {
            // A name length, four numbers and an ISR count: 24 bytes.
            let count = reader.count(24)?;
            let mut changes = Vec::with_capacity(count);
            for _ in 0..count {
                changes.push(IsrChange {
                    topic: reader.str()?,
                    partition: reader.i32()?,
                    leader: reader.i32()?,
                    leader_epoch: reader.i32()?,
                    partition_epoch: reader.i32()?,
                    isr: reader.i32s()?,
                });
            }
            ControllerRequest::AlterPartitions(changes)
        }
        tag::SHUT_DOWN_BROKER => ControllerRequest::ShutDownBroker { id: reader.i32()? },
        tag::RESIGN_REPLICAS => {
            let id = reader.i32()?;
            // A name length and a partition: 8 bytes at least.
            let count = reader.count(8)?;
            let mut partitions = Vec::with_capacity(count);
            for _ in 0..count {
                partitions.push((reader.str()?, reader.i32()?));
            }
            ControllerRequest::ResignReplicas { id, partitions }
        }
        tag::ALTER_REASSIGNMENTS => {
            // A name length, a partition and a flag: 9 bytes at least.
            let count = reader.count(9)?;
            let mut reassignments = Vec::with_capacity(count);
            for _ in 0..count {
                let topic = reader.str()?;
                let partition = reader.i32()?;
                let replicas = if reader.bool()? {
                    Some(reader.i32s()?)
                } else {
                    None
                };
                reassignments.push(Reassignment {
                    topic,
                    partition,
                    replicas,
                });
            }
            ControllerRequest::AlterReassignments(reassignments)
        }
        tag::ELECT_LEADERS => {
            let id = reader.u8()? as i8;
            let election = ElectionType::from_id(id)
                .ok_or_else(|| DecodeError(format!("unknown election type {id}")))?;
            let topics = if reader.bool()? {
                // A name length and a partition count: 8 bytes at least.
                let count = reader.count(8)?;
                let mut topics = Vec::with_capacity(count);
                for _ in 0..count {
                    topics.push(ElectionTopic {
                        topic: reader.str()?,
                        partitions: reader.i32s()?,
                    });
                }
                Some(topics)
            } else {
                None
            };
            ControllerRequest::ElectLeaders { election, topics }
        }
        tag::ALTER_CLIENT_QUOTAS => {
            // Two absent entity parts and a change count: 6 bytes at least.
            let count = reader.count(6)?;
            let mut alterations = Vec::with_capacity(count);
            for _ in 0..count {
                let entity = sluice_engine::QuotaEntity {
                    user: read_quota_name(&mut reader)?,
                    client_id: read_quota_name(&mut reader)?,
                };
                // A key length and a flag: 5 bytes at least.
                let changes_count = reader.count(5)?;
                let mut changes = Vec::with_capacity(changes_count);
                for _ in 0..changes_count {
                    let key = reader.str()?;
                    let value = if reader.bool()? {
                        Some(f64::from_bits(reader.u64()?))
                    } else {
                        None
                    };
                    changes.push((key, value));
                }
                alterations.push(QuotaAlteration { entity, changes });
            }
            ControllerRequest::AlterClientQuotas(alterations)
        }
        tag::CREATE_ACLS => {
            let count = reader.count(ACL_BYTES_MIN)?;
            let mut acls = Vec::with_capacity(count);
            for _ in 0..count {
                acls.push(read_binding(&mut reader)?);
            }
            ControllerRequest::CreateAcls(acls)
        }
        tag::DELETE_ACLS => {
            // Four codes and three absent strings' flags: 7 bytes at least.
            let count = reader.count(7)?;
            let mut filters = Vec::with_capacity(count);
            for _ in 0..count {
                filters.push(read_filter(&mut reader)?);
            }
            ControllerRequest::DeleteAcls(filters)
        }
        tag::ALTER_SCRAM_CREDENTIALS => {
            // A name length and a mechanism: 5 bytes at least.
            let count = reader.count(5)?;
            let mut deletions = Vec::with_capacity(count);
            for _ in 0..count {
                deletions.push(Deletion {
                    user: reader.str()?,
                    mechanism: reader.u8()? as i8,
                });
            }
            // A name length, a mechanism, iterations and three blob
            // lengths: 21 bytes at least.
            let count = reader.count(21)?;
            let mut upsertions = Vec::with_capacity(count);
            for _ in 0..count {
                upsertions.push(Upsertion {
                    user: reader.str()?,
                    mechanism: reader.u8()? as i8,
                    iterations: reader.i32()?,
                    salt: reader.blob()?.to_vec(),
                    stored_key: reader.blob()?.to_vec(),
                    server_key: reader.blob()?.to_vec(),
                });
            }
            ControllerRequest::AlterScramCredentials {
                deletions,
                upsertions,
            }
        }
        other => return Err(DecodeError(format!("unknown controller request {other}"))),
    };
    reader.finish()?;
    Ok(request)
}

pub fn encode_response(response: &ShardResponse) -> Vec<u8> {
    let mut writer = Writer::default();
    match response {
        ShardResponse::Topics(outcomes) => {
            writer.u8(tag::TOPICS);
            writer.u32(outcomes.len() as u32);
            for outcome in outcomes {
                writer.str(&outcome.name);
                writer.u16(outcome.error_code as u16);
                writer.opt_str(outcome.error_message.as_deref());
                writer.raw(&outcome.topic_id);
                writer.i32(outcome.partitions);
                writer.u16(outcome.replication_factor as u16);
            }
        }
        ShardResponse::ProducerId(id) => {
            writer.u8(tag::PRODUCER_ID);
            writer.i64(*id);
        }
        ShardResponse::Partition(outcome) => write_partition_outcome(&mut writer, outcome),
        ShardResponse::Partitions(outcomes) => {
            writer.u8(tag::PARTITIONS);
            writer.u32(outcomes.len() as u32);
            for outcome in outcomes {
                write_partition_outcome(&mut writer, outcome);
            }
        }
        ShardResponse::Reassignments(outcomes) => {
            writer.u8(tag::REASSIGNMENTS);
            writer.u32(outcomes.len() as u32);
            for outcome in outcomes {
                writer.u16(outcome.error_code as u16);
                writer.opt_str(outcome.error_message.as_deref());
            }
        }
        ShardResponse::Elections(Ok(outcomes)) => {
            writer.u8(tag::ELECTIONS);
            writer.u32(outcomes.len() as u32);
            for outcome in outcomes {
                writer.str(&outcome.topic);
                writer.i32(outcome.partition);
                writer.u16(outcome.error_code as u16);
                writer.opt_str(outcome.error_message.as_deref());
            }
        }
        ShardResponse::Elections(Err(failure)) => {
            write_refusal(&mut writer, tag::ELECTIONS_FAILED, failure)
        }
        ShardResponse::ClientQuotas(Ok(())) => writer.u8(tag::CLIENT_QUOTAS_WRITTEN),
        ShardResponse::ClientQuotas(Err(failure)) => {
            write_refusal(&mut writer, tag::CLIENT_QUOTAS_REFUSED, failure)
        }
        ShardResponse::AclsCreated(Ok(outcomes)) => {
            writer.u8(tag::ACLS_CREATED);
            writer.u32(outcomes.len() as u32);
            for outcome in outcomes {
                writer.opt_str(outcome.as_deref());
            }
        }
        ShardResponse::AclsDeleted(Ok(removed)) => {
            writer.u8(tag::ACLS_DELETED);
            writer.u32(removed.len() as u32);
            for acls in removed {
                writer.u32(acls.len() as u32);
                for acl in acls {
                    write_acl(&mut writer, &acl.to_stored());
                }
            }
        }
        ShardResponse::ScramCredentials(Ok(outcomes)) => {
            writer.u8(tag::SCRAM_ALTERED);
            writer.u32(outcomes.len() as u32);
            for outcome in outcomes {
                writer.str(&outcome.user);
                writer.u16(outcome.error_code as u16);
                writer.opt_str(outcome.message.as_deref());
            }
        }
        ShardResponse::AclsCreated(Err(failure)) => {
            write_refusal(&mut writer, tag::ACLS_CREATE_REFUSED, failure)
        }
        ShardResponse::AclsDeleted(Err(failure)) => {
            write_refusal(&mut writer, tag::ACLS_DELETE_REFUSED, failure)
        }
        ShardResponse::ScramCredentials(Err(failure)) => {
            write_refusal(&mut writer, tag::SCRAM_REFUSED, failure)
        }
        _ => writer.u8(tag::NONE),
    }
    writer.bytes
}

/// An answer that is a refusal: its tag, a Kafka error code and a message.
fn write_refusal(writer: &mut Writer, tag: u8, (error_code, message): &(i16, String)) {
    writer.u8(tag);
    writer.u16(*error_code as u16);
    writer.str(message);
}

fn write_partition_outcome(
    writer: &mut Writer,
    outcome: &Result<sluice_engine::PartitionState, i16>,
) {
    match outcome {
        Ok(state) => {
            writer.u8(tag::PARTITION);
            writer.i32s(&state.replicas);
            writer.i32s(&state.isr);
            writer.i32(state.leader);
            writer.i32(state.leader_epoch);
            writer.i32(state.partition_epoch);
            writer.i32s(&state.adding);
            writer.i32s(&state.removing);
        }
        Err(error_code) => {
            writer.u8(tag::PARTITION_ERROR);
            writer.u16(*error_code as u16);
        }
    }
}

fn read_partition_outcome(
    kind: u8,
    reader: &mut Reader<'_>,
) -> Result<Result<sluice_engine::PartitionState, i16>, DecodeError> {
    match kind {
        tag::PARTITION => Ok(Ok(sluice_engine::PartitionState {
            replicas: reader.i32s()?,
            isr: reader.i32s()?,
            leader: reader.i32()?,
            leader_epoch: reader.i32()?,
            partition_epoch: reader.i32()?,
            adding: reader.i32s()?,
            removing: reader.i32s()?,
        })),
        tag::PARTITION_ERROR => Ok(Err(reader.u16()? as i16)),
        other => Err(DecodeError(format!(
            "a partition outcome of unknown kind {other}"
        ))),
    }
}

pub fn decode_response(bytes: &[u8]) -> Result<ShardResponse, DecodeError> {
    let mut reader = Reader::new(bytes);
    let response = match reader.u8()? {
        tag::TOPICS => {
            // Name length, code, flag, id, partitions, factor: 29 bytes.
            let count = reader.count(29)?;
            let mut outcomes = Vec::with_capacity(count);
            for _ in 0..count {
                outcomes.push(TopicOutcome {
                    name: reader.str()?,
                    error_code: reader.u16()? as i16,
                    error_message: reader.opt_str()?,
                    topic_id: reader.id()?,
                    partitions: reader.i32()?,
                    replication_factor: reader.u16()? as i16,
                });
            }
            ShardResponse::Topics(outcomes)
        }
        tag::PRODUCER_ID => ShardResponse::ProducerId(reader.i64()?),
        tag::NONE => ShardResponse::Done,
        kind @ (tag::PARTITION | tag::PARTITION_ERROR) => {
            ShardResponse::Partition(read_partition_outcome(kind, &mut reader)?)
        }
        tag::PARTITIONS => {
            // A tag and an error code at least: 3 bytes.
            let count = reader.count(3)?;
            let mut outcomes = Vec::with_capacity(count);
            for _ in 0..count {
                let kind = reader.u8()?;
                outcomes.push(read_partition_outcome(kind, &mut reader)?);
            }
            ShardResponse::Partitions(outcomes)
        }
        tag::REASSIGNMENTS => {
            // A code and a flag: 3 bytes at least.
            let count = reader.count(3)?;
            let mut outcomes = Vec::with_capacity(count);
            for _ in 0..count {
                outcomes.push(ReassignmentOutcome {
                    error_code: reader.u16()? as i16,
                    error_message: reader.opt_str()?,
                });
            }
            ShardResponse::Reassignments(outcomes)
        }
        tag::ELECTIONS => {
            // A name length, a partition, a code and a flag: 11 bytes at least.
            let count = reader.count(11)?;
            let mut outcomes = Vec::with_capacity(count);
            for _ in 0..count {
                outcomes.push(ElectionOutcome {
                    topic: reader.str()?,
                    partition: reader.i32()?,
                    error_code: reader.u16()? as i16,
                    error_message: reader.opt_str()?,
                });
            }
            ShardResponse::Elections(Ok(outcomes))
        }
        tag::ELECTIONS_FAILED => {
            ShardResponse::Elections(Err((reader.u16()? as i16, reader.str()?)))
        }
        tag::CLIENT_QUOTAS_WRITTEN => ShardResponse::ClientQuotas(Ok(())),
        tag::CLIENT_QUOTAS_REFUSED => {
            ShardResponse::ClientQuotas(Err((reader.u16()? as i16, reader.str()?)))
        }
        tag::ACLS_CREATED => {
            // One flag at least.
            let count = reader.count(1)?;
            let mut outcomes = Vec::with_capacity(count);
            for _ in 0..count {
                outcomes.push(reader.opt_str()?);
            }
            ShardResponse::AclsCreated(Ok(outcomes))
        }
        tag::ACLS_DELETED => {
            // A count at least.
            let count = reader.count(4)?;
            let mut removed = Vec::with_capacity(count);
            for _ in 0..count {
                let acls_count = reader.count(ACL_BYTES_MIN)?;
                let mut acls = Vec::with_capacity(acls_count);
                for _ in 0..acls_count {
                    acls.push(read_binding(&mut reader)?);
                }
                removed.push(acls);
            }
            ShardResponse::AclsDeleted(Ok(removed))
        }
        tag::ACLS_CREATE_REFUSED => {
            ShardResponse::AclsCreated(Err((reader.u16()? as i16, reader.str()?)))
        }
        tag::ACLS_DELETE_REFUSED => {
            ShardResponse::AclsDeleted(Err((reader.u16()? as i16, reader.str()?)))
        }
        tag::SCRAM_ALTERED => {
            // A name length, a code and a flag: 7 bytes at least.
            let count = reader.count(7)?;
            let mut outcomes = Vec::with_capacity(count);
            for _ in 0..count {
                outcomes.push(UserOutcome {
                    user: reader.str()?,
                    error_code: reader.u16()? as i16,
                    message: reader.opt_str()?,
                });
            }
            ShardResponse::ScramCredentials(Ok(outcomes))
        }
        tag::SCRAM_REFUSED => {
            ShardResponse::ScramCredentials(Err((reader.u16()? as i16, reader.str()?)))
        }
        other => return Err(DecodeError(format!("unknown controller answer {other}"))),
    };
    reader.finish()?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn sample_acl() -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            pattern_type: PatternType::Prefixed,
            resource_name: "orders-".into(),
            principal: "User:alice".into(),
            host: "*".into(),
            operation: Operation::Write,
            permission: Permission::Deny,
        }
    }

    #[test]
    fn requests_and_answers_round_trip_and_truncations_are_refused() {
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_string(), "60000".to_string());
        let request = ControllerRequest::CreateTopics(vec![NewTopic {
            name: "t".into(),
            partitions: 3,
            replication_factor: -1,
            assignments: vec![vec![1, 2], vec![2, 3], vec![3, 1]],
            configs,
            validate_only: true,
        }]);
        let bytes = encode_request(&request);
        assert_eq!(
            format!("{:?}", decode_request(&bytes).unwrap()),
            format!("{request:?}")
        );
        for len in 0..bytes.len() {
            assert!(decode_request(&bytes[..len]).is_err(), "cut at {len}");
        }
        let answer = ShardResponse::Topics(vec![TopicOutcome {
            name: "t".into(),
            error_code: 41,
            error_message: Some("not the controller".into()),
            topic_id: [9; 16],
            partitions: 3,
            replication_factor: 2,
        }]);
        let bytes = encode_response(&answer);
        assert_eq!(
            format!("{:?}", decode_response(&bytes).unwrap()),
            format!("{answer:?}")
        );
        let changes = ControllerRequest::AlterTopicConfigs {
            topic: "t".into(),
            changes: vec![ConfigChange {
                name: "retention.ms".into(),
                operation: 1,
                value: None,
            }],
            validate_only: false,
        };
        let bytes = encode_request(&changes);
        assert_eq!(
            format!("{:?}", decode_request(&bytes).unwrap()),
            format!("{changes:?}")
        );
        let alter = ControllerRequest::AlterPartitions(vec![
            IsrChange {
                topic: "t".into(),
                partition: 2,
                leader: 3,
                leader_epoch: 7,
                partition_epoch: 11,
                isr: vec![3, 1],
            },
            IsrChange {
                topic: "u".into(),
                partition: 0,
                leader: 1,
                leader_epoch: 2,
                partition_epoch: 3,
                isr: vec![1],
            },
        ]);
        let reassign = ControllerRequest::AlterReassignments(vec![
            Reassignment {
                topic: "t".into(),
                partition: 1,
                replicas: Some(vec![4, 2, 3]),
            },
            Reassignment {
                topic: "u".into(),
                partition: 0,
                replicas: None,
            },
        ]);
        let elect_named = ControllerRequest::ElectLeaders {
            election: ElectionType::Unclean,
            topics: Some(vec![
                ElectionTopic {
                    topic: "t".into(),
                    partitions: vec![0, 2],
                },
                ElectionTopic {
                    topic: "u".into(),
                    partitions: Vec::new(),
                },
            ]),
        };
        let elect_all = ControllerRequest::ElectLeaders {
            election: ElectionType::Preferred,
            topics: None,
        };
        for request in [
            alter,
            ControllerRequest::ShutDownBroker { id: 3 },
            ControllerRequest::ResignReplicas {
                id: 2,
                partitions: vec![("t".into(), 0), ("u".into(), 7)],
            },
            reassign,
            elect_named,
            elect_all,
            ControllerRequest::AlterClientQuotas(vec![QuotaAlteration {
                entity: sluice_engine::QuotaEntity {
                    user: Some(sluice_engine::QuotaName::Named("u".into())),
                    client_id: Some(sluice_engine::QuotaName::Default),
                },
                changes: vec![
                    ("producer_byte_rate".into(), Some(1024.0)),
                    ("request_percentage".into(), None),
                ],
            }]),
            ControllerRequest::CreateAcls(vec![sample_acl(), sample_acl()]),
            ControllerRequest::AlterScramCredentials {
                deletions: vec![Deletion {
                    user: "bob".into(),
                    mechanism: 2,
                }],
                upsertions: vec![Upsertion::from_salted_password(
                    "alice".into(),
                    1,
                    4096,
                    vec![5; 16],
                    &[6; 32],
                )],
            },
            ControllerRequest::DeleteAcls(vec![
                AclFilter::any(),
                AclFilter {
                    resource_name: Some("t".into()),
                    principal: Some("User:alice".into()),
                    host: Some("*".into()),
                    ..AclFilter::any()
                },
            ]),
        ] {
            let bytes = encode_request(&request);
            assert_eq!(
                format!("{:?}", decode_request(&bytes).unwrap()),
                format!("{request:?}")
            );
            for len in 0..bytes.len() {
                assert!(decode_request(&bytes[..len]).is_err(), "cut at {len}");
            }
        }
        for answer in [
            ShardResponse::Partition(Ok(sluice_engine::PartitionState {
                replicas: vec![3, 1, 2],
                isr: vec![3, 1],
                leader: 3,
                leader_epoch: 7,
                partition_epoch: 12,
                adding: vec![2],
                removing: vec![4],
            })),
            ShardResponse::Partition(Err(108)),
            ShardResponse::ClientQuotas(Ok(())),
            ShardResponse::ClientQuotas(Err((41, "not the controller".into()))),
            ShardResponse::AclsCreated(Ok(vec![None, Some("Invalid operation ANY".into())])),
            ShardResponse::AclsCreated(Err((41, "not the controller".into()))),
            ShardResponse::AclsDeleted(Ok(vec![vec![sample_acl()], Vec::new()])),
            ShardResponse::AclsDeleted(Err((7, "timed out".into()))),
            ShardResponse::ScramCredentials(Ok(vec![UserOutcome {
                user: "alice".into(),
                error_code: 0,
                message: None,
            }])),
            ShardResponse::ScramCredentials(Err((41, "not the controller".into()))),
            ShardResponse::Partitions(vec![
                Err(41),
                Ok(sluice_engine::PartitionState {
                    replicas: vec![1, 2],
                    isr: vec![1],
                    leader: 1,
                    leader_epoch: 2,
                    partition_epoch: 4,
                    adding: Vec::new(),
                    removing: Vec::new(),
                }),
            ]),
            ShardResponse::Reassignments(vec![
                ReassignmentOutcome {
                    error_code: 0,
                    error_message: None,
                },
                ReassignmentOutcome {
                    error_code: 85,
                    error_message: Some("none under way".into()),
                },
            ]),
            ShardResponse::Elections(Ok(vec![
                ElectionOutcome {
                    topic: "t".into(),
                    partition: 0,
                    error_code: 0,
                    error_message: None,
                },
                ElectionOutcome {
                    topic: "t".into(),
                    partition: 2,
                    error_code: 84,
                    error_message: Some("the preferred replica 1 already leads".into()),
                },
            ])),
            ShardResponse::Elections(Err((41, "no quorum leader".into()))),
        ] {
            let bytes = encode_response(&answer);
            assert_eq!(
                format!("{:?}", decode_response(&bytes).unwrap()),
                format!("{answer:?}")
            );
            for len in 0..bytes.len() {
                assert!(decode_response(&bytes[..len]).is_err(), "cut at {len}");
            }
        }
        assert!(decode_request(&[0xee]).is_err());
        // An election type the controller does not know is refused.
        let mut unknown_election = encode_request(&ControllerRequest::ElectLeaders {
            election: ElectionType::Preferred,
            topics: None,
        });
        unknown_election[1] = 7;
        assert!(decode_request(&unknown_election).is_err());
    }
}
