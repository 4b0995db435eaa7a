//! The metadata records: what the metadata log holds, one change each, and
//! how a broker applies them to its [`ClusterMetadata`] image.
//!
//! Every record starts with its type and version bytes. A broker refuses a
//! record of a type or version it does not know (a newer broker wrote it)
//! instead of guessing, and says which. A snapshot is the list of records
//! that rebuilds the image from nothing, so there is one format to decode.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_engine::{
    BrokerInfo, ClusterMetadata, Endpoint, PartitionState, QuotaEntity, QuotaName, QuotaValue,
    QuotaValues, StoredAcl, StoredScram, TopicMetadata,
};

use crate::codec::{DecodeError, Reader, Writer};

/// Every record type is at version 1, except a partition under
/// reassignment.
const RECORD_VERSION: u8 = 1;
/// A partition record that carries a reassignment (its adding and removing
/// replicas). Written only while one runs, so brokers that predate
/// reassignment read every log that never had one.
const PARTITION_REASSIGNING_VERSION: u8 = 2;
/// A broker registration that carries listeners beyond the first. Written
/// only by a broker that has some, so brokers that predate them read the
/// log of every cluster with one listener per broker.
const REGISTER_BROKER_ENDPOINTS_VERSION: u8 = 2;

/// One change to the cluster's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataRecord {
    /// The cluster's id, written once when the quorum is first formed.
    ClusterId {
        id: String,
    },
    /// A broker announced itself (a new incarnation replaces the old).
    RegisterBroker(BrokerInfo),
    /// The broker missed its heartbeats or is shutting down: it leads nothing.
    FenceBroker {
        id: i32,
        incarnation: u64,
    },
    /// The broker caught up with the metadata log and may lead again.
    UnfenceBroker {
        id: i32,
        incarnation: u64,
    },
    /// A new topic; its partitions follow as [`MetadataRecord::Partition`].
    Topic {
        name: String,
        id: [u8; 16],
        configs: BTreeMap<String, String>,
    },
    /// A partition's whole state: created (the next partition number) or
    /// changed (leader, ISR, epochs).
    Partition {
        topic: String,
        partition: i32,
        state: PartitionState,
    },
    RemoveTopic {
        name: String,
    },
    /// A topic's config overrides, replaced whole.
    TopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// Producer ids below `next` are handed out.
    ProducerIds {
        next: i64,
    },
    /// A client quota entity's values, replaced whole; no values removes
    /// the entity.
    ClientQuotas {
        entity: QuotaEntity,
        values: QuotaValues,
    },
    /// An ACL binding was created (CreateAcls).
    CreateAcl(StoredAcl),
    /// An ACL binding was deleted (DeleteAcls).
    RemoveAcl(StoredAcl),
    /// A user's credential for one SCRAM mechanism, replaced whole; none
    /// removes it (AlterUserScramCredentials).
    ScramCredential {
        user: String,
        mechanism: i8,
        credential: Option<StoredScram>,
    },
}

mod kind {
    pub const CLUSTER_ID: u8 = 1;
    pub const REGISTER_BROKER: u8 = 2;
    pub const FENCE_BROKER: u8 = 3;
    pub const UNFENCE_BROKER: u8 = 4;
    pub const TOPIC: u8 = 5;
    pub const PARTITION: u8 = 6;
    pub const REMOVE_TOPIC: u8 = 7;
    pub const TOPIC_CONFIGS: u8 = 8;
    pub const PRODUCER_IDS: u8 = 9;
    pub const CLIENT_QUOTAS: u8 = 10;
    pub const CREATE_ACL: u8 = 11;
    pub const REMOVE_ACL: u8 = 12;
    pub const SCRAM_CREDENTIAL: u8 = 13;
}

/// How a part of a quota entity is written: a tag byte, then the name for
/// a named one.
mod quota_name {
    pub const ABSENT: u8 = 0;
    pub const DEFAULT: u8 = 1;
    pub const NAMED: u8 = 2;
}

/// Writes one part of a quota entity (also used by forwarded requests).
pub fn write_quota_name(writer: &mut Writer, name: Option<&QuotaName>) {
    match name {
        None => writer.u8(quota_name::ABSENT),
        Some(QuotaName::Default) => writer.u8(quota_name::DEFAULT),
        Some(QuotaName::Named(name)) => {
            writer.u8(quota_name::NAMED);
            writer.str(name);
        }
    }
}

/// Reads what [`write_quota_name`] wrote.
pub fn read_quota_name(reader: &mut Reader<'_>) -> Result<Option<QuotaName>, DecodeError> {
    match reader.u8()? {
        quota_name::ABSENT => Ok(None),
        quota_name::DEFAULT => Ok(Some(QuotaName::Default)),
        quota_name::NAMED => Ok(Some(QuotaName::Named(reader.str()?))),
        other => Err(DecodeError(format!(
            "unknown quota entity name tag {other}"
        ))),
    }
}

/// Writes a quota entity and its values: the user, the client id, then a
/// count of (key, value as IEEE-754 bits) pairs.
fn write_client_quotas(writer: &mut Writer, entity: &QuotaEntity, values: &QuotaValues) {
    write_quota_name(writer, entity.user.as_ref());
    write_quota_name(writer, entity.client_id.as_ref());
    writer.u32(values.len() as u32);
    for (key, value) in values {
        writer.str(key);
        writer.u64(value.0.to_bits());
    }
}

fn read_client_quotas(reader: &mut Reader<'_>) -> Result<MetadataRecord, DecodeError> {
    let entity = QuotaEntity {
        user: read_quota_name(reader)?,
        client_id: read_quota_name(reader)?,
    };
    // A value is at least an empty key (its u32 length) and eight bytes.
    let count = reader.count(12)?;
    let mut values = QuotaValues::new();
    for _ in 0..count {
        let key = reader.str()?;
        values.insert(key, QuotaValue(f64::from_bits(reader.u64()?)));
    }
    Ok(MetadataRecord::ClientQuotas { entity, values })
}

/// Writes an ACL binding: its codes, then its three strings.
pub fn write_acl(writer: &mut Writer, acl: &StoredAcl) {
    for code in [
        acl.resource_type,
        acl.pattern_type,
        acl.operation,
        acl.permission,
    ] {
        writer.u8(code as u8);
    }
    writer.str(&acl.resource_name);
    writer.str(&acl.principal);
    writer.str(&acl.host);
}

pub fn read_acl(reader: &mut Reader<'_>) -> Result<StoredAcl, DecodeError> {
    let resource_type = reader.u8()? as i8;
    let pattern_type = reader.u8()? as i8;
    let operation = reader.u8()? as i8;
    let permission = reader.u8()? as i8;
    Ok(StoredAcl {
        resource_type,
        pattern_type,
        resource_name: reader.str()?,
        principal: reader.str()?,
        host: reader.str()?,
        operation,
        permission,
    })
}

fn write_scram(writer: &mut Writer, user: &str, mechanism: i8, credential: Option<&StoredScram>) {
    writer.str(user);
    writer.u8(mechanism as u8);
    writer.bool(credential.is_some());
    if let Some(credential) = credential {
        writer.blob(&credential.salt);
        writer.u32(credential.iterations);
        writer.blob(&credential.stored_key);
        writer.blob(&credential.server_key);
    }
}

fn read_scram(reader: &mut Reader<'_>) -> Result<MetadataRecord, DecodeError> {
    let user = reader.str()?;
    let mechanism = reader.u8()? as i8;
    let credential = if reader.bool()? {
        Some(StoredScram {
            salt: reader.blob()?.to_vec(),
            iterations: reader.u32()?,
            stored_key: reader.blob()?.to_vec(),
            server_key: reader.blob()?.to_vec(),
        })
    } else {
        None
    };
    Ok(MetadataRecord::ScramCredential {
        user,
        mechanism,
        credential,
    })
}

/// The smallest encoding of any record (type and version bytes).
const RECORD_BYTES_MIN: usize = 2;

/// Writes a config map: count, then name and value strings.
pub fn write_configs(writer: &mut Writer, configs: &BTreeMap<String, String>) {
    writer.u32(configs.len() as u32);
    for (name, value) in configs {
        writer.str(name);
        writer.str(value);
    }
}

/// Reads what [`write_configs`] wrote.
fn write_endpoints(writer: &mut Writer, endpoints: &[Endpoint]) {
    writer.u32(endpoints.len() as u32);
    for endpoint in endpoints {
        writer.str(&endpoint.listener);
        writer.str(&endpoint.host);
        writer.u16(endpoint.port);
    }
}

fn read_endpoints(reader: &mut Reader<'_>) -> Result<Vec<Endpoint>, DecodeError> {
    // Two empty strings (two u32 lengths) and a port.
    let count = reader.count(10)?;
    let mut endpoints = Vec::with_capacity(count);
    for _ in 0..count {
        endpoints.push(Endpoint {
            listener: reader.str()?,
            host: reader.str()?,
            port: reader.u16()?,
        });
    }
    Ok(endpoints)
}

pub fn read_configs(reader: &mut Reader<'_>) -> Result<BTreeMap<String, String>, DecodeError> {
    // A config entry is at least two empty strings (two u32 lengths).
    let count = reader.count(8)?;
    let mut configs = BTreeMap::new();
    for _ in 0..count {
        let name = reader.str()?;
        let value = reader.str()?;
        configs.insert(name, value);
    }
    Ok(configs)
}

fn write_partition_state(writer: &mut Writer, state: &PartitionState) {
    writer.i32s(&state.replicas);
    writer.i32s(&state.isr);
    writer.i32(state.leader);
    writer.i32(state.leader_epoch);
    writer.i32(state.partition_epoch);
    if state.reassigning() {
        writer.i32s(&state.adding);
        writer.i32s(&state.removing);
    }
}

fn read_partition_state(
    reader: &mut Reader<'_>,
    version: u8,
) -> Result<PartitionState, DecodeError> {
    let mut state = PartitionState {
        replicas: reader.i32s()?,
        isr: reader.i32s()?,
        leader: reader.i32()?,
        leader_epoch: reader.i32()?,
        partition_epoch: reader.i32()?,
        adding: Vec::new(),
        removing: Vec::new(),
    };
    if version >= PARTITION_REASSIGNING_VERSION {
        state.adding = reader.i32s()?;
        state.removing = reader.i32s()?;
    }
    Ok(state)
}

impl MetadataRecord {
    pub fn encode(&self, writer: &mut Writer) {
        let kind = match self {
            MetadataRecord::ClusterId { .. } => kind::CLUSTER_ID,
            MetadataRecord::RegisterBroker(_) => kind::REGISTER_BROKER,
            MetadataRecord::FenceBroker { .. } => kind::FENCE_BROKER,
            MetadataRecord::UnfenceBroker { .. } => kind::UNFENCE_BROKER,
            MetadataRecord::Topic { .. } => kind::TOPIC,
            MetadataRecord::Partition { .. } => kind::PARTITION,
            MetadataRecord::RemoveTopic { .. } => kind::REMOVE_TOPIC,
            MetadataRecord::TopicConfigs { .. } => kind::TOPIC_CONFIGS,
            MetadataRecord::ProducerIds { .. } => kind::PRODUCER_IDS,
            MetadataRecord::ClientQuotas { .. } => kind::CLIENT_QUOTAS,
            MetadataRecord::CreateAcl(_) => kind::CREATE_ACL,
            MetadataRecord::RemoveAcl(_) => kind::REMOVE_ACL,
            MetadataRecord::ScramCredential { .. } => kind::SCRAM_CREDENTIAL,
        };
        writer.u8(kind);
        writer.u8(match self {
            MetadataRecord::Partition { state, .. } if state.reassigning() => {
                PARTITION_REASSIGNING_VERSION
            }
            MetadataRecord::RegisterBroker(broker) if !broker.endpoints.is_empty() => {
                REGISTER_BROKER_ENDPOINTS_VERSION
            }
            _ => RECORD_VERSION,
        });
        match self {
            MetadataRecord::ClusterId { id } => writer.str(id),
            MetadataRecord::RegisterBroker(broker) => {
                writer.i32(broker.id);
                writer.u64(broker.incarnation);
                writer.str(&broker.host);
                writer.u16(broker.port);
                writer.opt_str(broker.rack.as_deref());
                writer.bool(broker.fenced);
                if !broker.endpoints.is_empty() {
                    write_endpoints(writer, &broker.endpoints);
                }
            }
            MetadataRecord::FenceBroker { id, incarnation }
            | MetadataRecord::UnfenceBroker { id, incarnation } => {
                writer.i32(*id);
                writer.u64(*incarnation);
            }
            MetadataRecord::Topic { name, id, configs } => {
                writer.str(name);
                writer.raw(id);
                write_configs(writer, configs);
            }
            MetadataRecord::Partition {
                topic,
                partition,
                state,
            } => {
                writer.str(topic);
                writer.i32(*partition);
                write_partition_state(writer, state);
            }
            MetadataRecord::RemoveTopic { name } => writer.str(name),
            MetadataRecord::TopicConfigs { name, configs } => {
                writer.str(name);
                write_configs(writer, configs);
            }
            MetadataRecord::ProducerIds { next } => writer.i64(*next),
            MetadataRecord::ClientQuotas { entity, values } => {
                write_client_quotas(writer, entity, values)
            }
            MetadataRecord::CreateAcl(acl) | MetadataRecord::RemoveAcl(acl) => {
                write_acl(writer, acl)
            }
            MetadataRecord::ScramCredential {
                user,
                mechanism,
                credential,
            } => write_scram(writer, user, *mechanism, credential.as_ref()),
        }
    }

    pub fn decode(reader: &mut Reader<'_>) -> Result<MetadataRecord, DecodeError> {
        let kind = reader.u8()?;
        let version = reader.u8()?;
        let known = version == RECORD_VERSION
            || (kind == kind::PARTITION && version == PARTITION_REASSIGNING_VERSION)
            || (kind == kind::REGISTER_BROKER && version == REGISTER_BROKER_ENDPOINTS_VERSION);
        if !(kind::CLUSTER_ID..=kind::SCRAM_CREDENTIAL).contains(&kind) || !known {
            return Err(DecodeError(format!(
                "metadata record type {kind} version {version} is unknown to this broker; \
                 a newer Sluice wrote it: upgrade this broker"
            )));
        }
        let record = match kind {
            kind::CLUSTER_ID => MetadataRecord::ClusterId { id: reader.str()? },
            kind::REGISTER_BROKER => MetadataRecord::RegisterBroker(BrokerInfo {
                id: reader.i32()?,
                incarnation: reader.u64()?,
                host: reader.str()?,
                port: reader.u16()?,
                rack: reader.opt_str()?,
                fenced: reader.bool()?,
                endpoints: if version == REGISTER_BROKER_ENDPOINTS_VERSION {
                    read_endpoints(reader)?
                } else {
                    Vec::new()
                },
            }),
            kind::FENCE_BROKER => MetadataRecord::FenceBroker {
                id: reader.i32()?,
                incarnation: reader.u64()?,
            },
            kind::UNFENCE_BROKER => MetadataRecord::UnfenceBroker {
                id: reader.i32()?,
                incarnation: reader.u64()?,
            },
            kind::TOPIC => MetadataRecord::Topic {
                name: reader.str()?,
                id: reader.id()?,
                configs: read_configs(reader)?,
            },
            kind::PARTITION => MetadataRecord::Partition {
                topic: reader.str()?,
                partition: reader.i32()?,
                state: read_partition_state(reader, version)?,
            },
            kind::REMOVE_TOPIC => MetadataRecord::RemoveTopic {
                name: reader.str()?,
            },
            kind::TOPIC_CONFIGS => MetadataRecord::TopicConfigs {
                name: reader.str()?,
                configs: read_configs(reader)?,
            },
            kind::PRODUCER_IDS => MetadataRecord::ProducerIds {
                next: reader.i64()?,
            },
            kind::CLIENT_QUOTAS => read_client_quotas(reader)?,
            kind::CREATE_ACL => MetadataRecord::CreateAcl(read_acl(reader)?),
            kind::REMOVE_ACL => MetadataRecord::RemoveAcl(read_acl(reader)?),
            _ => read_scram(reader)?,
        };
        Ok(record)
    }

    /// Applies the record to the image. A record that does not fit the
    /// image (a partition of a topic that is gone) changes nothing and
    /// returns why; every broker applies the same log, so every broker
    /// skips it alike.
    pub fn apply(&self, image: &mut ClusterMetadata) -> Result<(), String> {
        match self {
            // The first id written is the cluster's: two leaders that both
            // saw none cannot change it after brokers have seen it.
            MetadataRecord::ClusterId { id } => {
                if !image.cluster_id.is_empty() {
                    return Err(format!("the cluster id is already {}", image.cluster_id));
                }
                image.cluster_id = id.clone();
            }
            MetadataRecord::RegisterBroker(broker) => {
                image.brokers.insert(broker.id, broker.clone());
            }
            MetadataRecord::FenceBroker { id, incarnation }
            | MetadataRecord::UnfenceBroker { id, incarnation } => {
                let fenced = matches!(self, MetadataRecord::FenceBroker { .. });
                match image.brokers.get_mut(id) {
                    Some(broker) if broker.incarnation == *incarnation => broker.fenced = fenced,
                    _ => {
                        return Err(format!(
                            "broker {id} incarnation {incarnation} is not registered"
                        ))
                    }
                }
            }
            MetadataRecord::Topic { name, id, configs } => {
                image.topics.insert(
                    name.clone(),
                    TopicMetadata {
                        name: name.clone(),
                        id: *id,
                        partitions: 0,
                        configs: configs.clone(),
                        placement: Vec::new(),
                    },
                );
            }
            MetadataRecord::Partition {
                topic,
                partition,
                state,
            } => {
                let Some(described) = image.topics.get_mut(topic) else {
                    return Err(format!("partition {topic}-{partition} of an unknown topic"));
                };
                let index = usize::try_from(*partition).unwrap_or(usize::MAX);
                if index < described.placement.len() {
                    described.placement[index] = state.clone();
                } else if index == described.placement.len() {
                    described.placement.push(state.clone());
                    described.partitions += 1;
                } else {
                    return Err(format!(
                        "partition {topic}-{partition} skips partitions after {}",
                        described.placement.len()
                    ));
                }
            }
            MetadataRecord::RemoveTopic { name } => {
                if image.topics.remove(name).is_none() {
                    return Err(format!("topic {name} is not there to remove"));
                }
            }
            MetadataRecord::TopicConfigs { name, configs } => match image.topics.get_mut(name) {
                Some(described) => described.configs = configs.clone(),
                None => return Err(format!("configs of an unknown topic {name}")),
            },
            MetadataRecord::ProducerIds { next } => {
                image.next_producer_id = image.next_producer_id.max(*next);
            }
            MetadataRecord::ClientQuotas { entity, values } => {
                if entity.user.is_none() && entity.client_id.is_none() {
                    return Err("client quotas of an empty entity".to_string());
                }
                if values.is_empty() {
                    image.client_quotas.remove(entity);
                } else {
                    image.client_quotas.insert(entity.clone(), values.clone());
                }
            }
            MetadataRecord::CreateAcl(acl) => {
                Arc::make_mut(&mut image.acls).insert(acl.clone());
            }
            MetadataRecord::RemoveAcl(acl) => {
                if !Arc::make_mut(&mut image.acls).remove(acl) {
                    return Err(format!("ACL {acl:?} is not there to remove"));
                }
            }
            MetadataRecord::ScramCredential {
                user,
                mechanism,
                credential,
            } => {
                let key = (user.clone(), *mechanism);
                let credentials = Arc::make_mut(&mut image.scram_credentials);
                match credential {
                    Some(credential) => {
                        credentials.insert(key, credential.clone());
                    }
                    None => {
                        credentials.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Encodes a group of records that commit together (one log entry).
pub fn encode_records(records: &[MetadataRecord]) -> Vec<u8> {
    let mut writer = Writer::default();
    writer.u32(records.len() as u32);
    for record in records {
        let mut one = Writer::default();
        record.encode(&mut one);
        writer.blob(&one.bytes);
    }
    writer.bytes
}

/// Decodes what [`encode_records`] wrote; every record must be whole.
pub fn decode_records(bytes: &[u8]) -> Result<Vec<MetadataRecord>, DecodeError> {
    let mut reader = Reader::new(bytes);
    // Each record is a u32 length and at least its type and version.
    let count = reader.count(4 + RECORD_BYTES_MIN)?;
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        let mut one = Reader::new(reader.blob()?);
        records.push(MetadataRecord::decode(&mut one)?);
        one.finish()?;
    }
    reader.finish()?;
    Ok(records)
}

/// The records that rebuild `image` from nothing: a snapshot's contents.
pub fn image_records(image: &ClusterMetadata) -> Vec<MetadataRecord> {
    let mut records = vec![MetadataRecord::ClusterId {
        id: image.cluster_id.clone(),
    }];
    for broker in image.brokers.values() {
        records.push(MetadataRecord::RegisterBroker(broker.clone()));
    }
    for topic in image.topics.values() {
        records.push(MetadataRecord::Topic {
            name: topic.name.clone(),
            id: topic.id,
            configs: topic.configs.clone(),
        });
        for (partition, state) in topic.placement.iter().enumerate() {
            records.push(MetadataRecord::Partition {
                topic: topic.name.clone(),
                partition: partition as i32,
                state: state.clone(),
            });
        }
    }
    records.push(MetadataRecord::ProducerIds {
        next: image.next_producer_id,
    });
    for (entity, values) in &image.client_quotas {
        records.push(MetadataRecord::ClientQuotas {
            entity: entity.clone(),
            values: values.clone(),
        });
    }
    records.extend(image.acls.iter().cloned().map(MetadataRecord::CreateAcl));
    for ((user, mechanism), credential) in image.scram_credentials.iter() {
        records.push(MetadataRecord::ScramCredential {
            user: user.clone(),
            mechanism: *mechanism,
            credential: Some(credential.clone()),
        });
    }
    records
}

/// The records that turn image `old` into image `new` (the controller
/// computes a whole new image for an operation; the log stores what
/// changed). Applying them to `old` gives `new`, the version aside.
pub fn diff_records(old: &ClusterMetadata, new: &ClusterMetadata) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    if old.cluster_id != new.cluster_id {
        records.push(MetadataRecord::ClusterId {
            id: new.cluster_id.clone(),
        });
    }
    for (id, broker) in &new.brokers {
        match old.brokers.get(id) {
            Some(known) if known == broker => {}
            Some(known)
                if known.incarnation == broker.incarnation
                    && BrokerInfo {
                        fenced: broker.fenced,
                        ..known.clone()
                    } == *broker =>
            {
                records.push(if broker.fenced {
                    MetadataRecord::FenceBroker {
                        id: *id,
                        incarnation: broker.incarnation,
                    }
                } else {
                    MetadataRecord::UnfenceBroker {
                        id: *id,
                        incarnation: broker.incarnation,
                    }
                });
            }
            _ => records.push(MetadataRecord::RegisterBroker(broker.clone())),
        }
    }
    for name in old.topics.keys() {
        if !new.topics.contains_key(name) {
            records.push(MetadataRecord::RemoveTopic { name: name.clone() });
        }
    }
    for (name, topic) in &new.topics {
        let known = old.topics.get(name).filter(|known| known.id == topic.id);
        let Some(known) = known else {
            if old.topics.contains_key(name) {
                records.push(MetadataRecord::RemoveTopic { name: name.clone() });
            }
            records.push(MetadataRecord::Topic {
                name: name.clone(),
                id: topic.id,
                configs: topic.configs.clone(),
            });
            for (partition, state) in topic.placement.iter().enumerate() {
                records.push(MetadataRecord::Partition {
                    topic: name.clone(),
                    partition: partition as i32,
                    state: state.clone(),
                });
            }
            continue;
        };
        if known.configs != topic.configs {
            records.push(MetadataRecord::TopicConfigs {
                name: name.clone(),
                configs: topic.configs.clone(),
            });
        }
        for (partition, state) in topic.placement.iter().enumerate() {
            if known.placement.get(partition) != Some(state) {
                records.push(MetadataRecord::Partition {
                    topic: name.clone(),
                    partition: partition as i32,
                    state: state.clone(),
                });
            }
        }
    }
    if old.next_producer_id != new.next_producer_id {
        records.push(MetadataRecord::ProducerIds {
            next: new.next_producer_id,
        });
    }
    for entity in old.client_quotas.keys() {
        if !new.client_quotas.contains_key(entity) {
            records.push(MetadataRecord::ClientQuotas {
                entity: entity.clone(),
                values: QuotaValues::new(),
            });
        }
    }
    for (entity, values) in &new.client_quotas {
        if old.client_quotas.get(entity) != Some(values) {
            records.push(MetadataRecord::ClientQuotas {
                entity: entity.clone(),
                values: values.clone(),
            });
        }
    }
    // Most operations leave both sets shared with the old image: then
    // there is nothing to compare.
    if !Arc::ptr_eq(&old.acls, &new.acls) {
        records.extend(
            old.acls
                .difference(&new.acls)
                .cloned()
                .map(MetadataRecord::RemoveAcl),
        );
        records.extend(
            new.acls
                .difference(&old.acls)
                .cloned()
                .map(MetadataRecord::CreateAcl),
        );
    }
    if !Arc::ptr_eq(&old.scram_credentials, &new.scram_credentials) {
        for key in old.scram_credentials.keys() {
            if !new.scram_credentials.contains_key(key) {
                records.push(MetadataRecord::ScramCredential {
                    user: key.0.clone(),
                    mechanism: key.1,
                    credential: None,
                });
            }
        }
        for (key, credential) in new.scram_credentials.iter() {
            if old.scram_credentials.get(key) != Some(credential) {
                records.push(MetadataRecord::ScramCredential {
                    user: key.0.clone(),
                    mechanism: key.1,
                    credential: Some(credential.clone()),
                });
            }
        }
    }
    records
}

/// Rebuilds an image from a snapshot's records.
pub fn image_from_records(records: &[MetadataRecord]) -> ClusterMetadata {
    let mut image = ClusterMetadata::default();
    for record in records {
        if let Err(reason) = record.apply(&mut image) {
            tracing::warn!(%reason, "a snapshot record was skipped");
        }
    }
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<MetadataRecord> {
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_string(), "1000".to_string());
        vec![
            MetadataRecord::ClusterId { id: "c1".into() },
            MetadataRecord::RegisterBroker(BrokerInfo {
                id: 2,
                incarnation: 99,
                host: "127.0.0.1".into(),
                port: 9092,
                rack: Some("r1".into()),
                fenced: true,
                endpoints: Vec::new(),
            }),
            MetadataRecord::RegisterBroker(BrokerInfo {
                id: 3,
                incarnation: 7,
                host: "10.0.0.3".into(),
                port: 9092,
                rack: None,
                fenced: false,
                endpoints: vec![
                    Endpoint {
                        listener: "SSL".into(),
                        host: "broker-3.example".into(),
                        port: 9093,
                    },
                    Endpoint {
                        listener: "EXTERNAL".into(),
                        host: "broker-3.example".into(),
                        port: 9094,
                    },
                ],
            }),
            MetadataRecord::UnfenceBroker {
                id: 2,
                incarnation: 99,
            },
            MetadataRecord::Topic {
                name: "t".into(),
                id: [3; 16],
                configs,
            },
            MetadataRecord::Partition {
                topic: "t".into(),
                partition: 0,
                state: PartitionState {
                    replicas: vec![2, 1, 3],
                    isr: vec![2],
                    leader: 2,
                    leader_epoch: 4,
                    partition_epoch: 7,
                    adding: Vec::new(),
                    removing: Vec::new(),
                },
            },
            MetadataRecord::Partition {
                topic: "t".into(),
                partition: 1,
                state: PartitionState {
                    replicas: vec![4, 1, 3],
                    isr: vec![1, 3],
                    leader: 1,
                    leader_epoch: 2,
                    partition_epoch: 5,
                    adding: vec![4],
                    removing: vec![3],
                },
            },
            MetadataRecord::ProducerIds { next: 1000 },
            MetadataRecord::ClientQuotas {
                entity: QuotaEntity {
                    user: Some(QuotaName::Named("alice".into())),
                    client_id: Some(QuotaName::Default),
                },
                values: QuotaValues::from([
                    ("producer_byte_rate".to_string(), QuotaValue(1048576.0)),
                    ("request_percentage".to_string(), QuotaValue(12.5)),
                ]),
            },
            MetadataRecord::CreateAcl(acl("t", "User:alice")),
            MetadataRecord::CreateAcl(acl("t", "User:bob")),
            MetadataRecord::RemoveAcl(acl("t", "User:bob")),
            MetadataRecord::ScramCredential {
                user: "alice".into(),
                mechanism: 1,
                credential: Some(scram(1)),
            },
            MetadataRecord::ScramCredential {
                user: "alice".into(),
                mechanism: 2,
                credential: Some(scram(2)),
            },
            MetadataRecord::ScramCredential {
                user: "alice".into(),
                mechanism: 2,
                credential: None,
            },
        ]
    }

    fn acl(topic: &str, principal: &str) -> StoredAcl {
        StoredAcl {
            resource_type: 2,
            pattern_type: 3,
            resource_name: topic.into(),
            principal: principal.into(),
            host: "*".into(),
            operation: 3,
            permission: 3,
        }
    }

    fn scram(fill: u8) -> StoredScram {
        StoredScram {
            salt: vec![fill; 16],
            iterations: 4096,
            stored_key: vec![fill; 32],
            server_key: vec![fill + 1; 32],
        }
    }

    #[test]
    fn records_round_trip_and_rebuild_the_image() {
        let records = sample();
        let decoded = decode_records(&encode_records(&records)).unwrap();
        assert_eq!(decoded, records);
        let image = image_from_records(&decoded);
        assert_eq!(image.cluster_id, "c1");
        assert!(!image.brokers[&2].fenced);
        assert_eq!(image.topics["t"].partitions, 2);
        assert_eq!(image.partition("t", 0).unwrap().leader_epoch, 4);
        assert_eq!(image.partition("t", 1).unwrap().adding, vec![4]);
        assert_eq!(image.next_producer_id, 1000);
        assert_eq!(image.client_quotas.len(), 1);
        assert_eq!(*image.acls, [acl("t", "User:alice")].into());
        assert_eq!(
            image.scram_credentials.keys().collect::<Vec<_>>(),
            [&("alice".to_string(), 1)]
        );
        let again = image_from_records(&image_records(&image));
        assert_eq!(again, image);
        // Only a partition under reassignment and a broker with more than
        // one listener need the newer version, so brokers that predate
        // them read every other log.
        let versions: Vec<u8> = records
            .iter()
            .map(|record| {
                let mut writer = Writer::default();
                record.encode(&mut writer);
                writer.bytes[1]
            })
            .collect();
        assert_eq!(versions.iter().filter(|version| **version == 2).count(), 2);
        assert_eq!(image.brokers[&3].endpoints.len(), 2);
    }

    #[test]
    fn unknown_versions_and_truncations_are_refused() {
        let bytes = encode_records(&sample());
        for len in 0..bytes.len() {
            assert!(decode_records(&bytes[..len]).is_err(), "cut at {len}");
        }
        let mut newer = Writer::default();
        newer.u32(1);
        newer.blob(&[kind::TOPIC, RECORD_VERSION + 1]);
        let error = decode_records(&newer.bytes).unwrap_err().to_string();
        assert!(error.contains("upgrade"), "{error}");
    }

    #[test]
    fn a_diff_turns_one_image_into_the_other() {
        let old = image_from_records(&sample());
        let mut new = old.clone();
        new.topics.remove("t");
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_string(), "compact".to_string());
        new.topics.insert(
            "u".into(),
            TopicMetadata {
                name: "u".into(),
                id: [5; 16],
                partitions: 2,
                configs,
                placement: vec![PartitionState::led_by(2), PartitionState::led_by(1)],
            },
        );
        if let Some(broker) = new.brokers.get_mut(&2) {
            broker.fenced = true;
        }
        new.next_producer_id = 2000;
        new.client_quotas.clear();
        new.client_quotas.insert(
            QuotaEntity {
                user: None,
                client_id: Some(QuotaName::Named("c".into())),
            },
            QuotaValues::from([("consumer_byte_rate".to_string(), QuotaValue(2.0))]),
        );
        let acls = Arc::make_mut(&mut new.acls);
        acls.remove(&acl("t", "User:alice"));
        acls.insert(acl("u", "User:carol"));
        let credentials = Arc::make_mut(&mut new.scram_credentials);
        credentials.insert(("alice".into(), 1), scram(7));
        credentials.insert(("bob".into(), 2), scram(8));
        let records = diff_records(&old, &new);
        assert!(records.contains(&MetadataRecord::RemoveAcl(acl("t", "User:alice"))));
        assert!(records.contains(&MetadataRecord::FenceBroker {
            id: 2,
            incarnation: 99
        }));
        let mut applied = old.clone();
        for record in &records {
            record.apply(&mut applied).unwrap();
        }
        assert_eq!(applied, new);
        assert!(diff_records(&new, &new).is_empty());
        // Removing the last credential of a user is written too.
        let mut fewer = new.clone();
        Arc::make_mut(&mut fewer.scram_credentials).remove(&("bob".to_string(), 2));
        let mut applied = new.clone();
        for record in diff_records(&new, &fewer) {
            record.apply(&mut applied).unwrap();
        }
        assert_eq!(applied, fewer);
    }

    #[test]
    fn a_record_that_does_not_fit_changes_nothing() {
        let mut image = ClusterMetadata::default();
        let record = MetadataRecord::Partition {
            topic: "gone".into(),
            partition: 0,
            state: PartitionState::led_by(1),
        };
        assert!(record.apply(&mut image).is_err());
        assert_eq!(image, ClusterMetadata::default());
    }
}
