//! Client quota calls: DescribeClientQuotas and AlterClientQuotas
//! (KIP-546). An entity is a list of (entity type, name) pairs as Kafka
//! sends them: `user`, `client-id`, each with a name or `None` for the
//! default entity.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{AlterClientQuotasRequest, ApiKey, DescribeClientQuotasRequest};

use super::admin::Admin;
use super::error::{ClientError, KafkaError};
use crate::handlers::str_bytes;

/// A quota entity: (entity type, name or `None` for the default).
pub type QuotaEntityParts = Vec<(String, Option<String>)>;

/// How a filter component matches an entity type's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuotaMatch {
    /// This name.
    Exact(String),
    /// The default entity of the type.
    Default,
    /// Any name of the type, the default included.
    Any,
}

/// One component of a DescribeClientQuotas filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaFilterComponent {
    pub entity_type: String,
    pub matching: QuotaMatch,
}

/// An entity and its quota values, as described.
#[derive(Clone, Debug, PartialEq)]
pub struct QuotaEntry {
    pub entity: QuotaEntityParts,
    pub values: BTreeMap<String, f64>,
}

/// Changes to one entity's quotas: each key with its new value, `None` to
/// remove it.
#[derive(Clone, Debug, PartialEq)]
pub struct QuotaAlteration {
    pub entity: QuotaEntityParts,
    pub changes: Vec<(String, Option<f64>)>,
}

impl Admin {
    /// The quotas of the entities that match every component (and, when
    /// `strict`, name no other entity type).
    pub fn describe_client_quotas(
        &mut self,
        components: &[QuotaFilterComponent],
        strict: bool,
    ) -> Result<Vec<QuotaEntry>, ClientError> {
        let connection = self.bootstrap();
        let version = connection.version(ApiKey::DescribeClientQuotas)?;
        let mut request = DescribeClientQuotasRequest::default();
        request.components = components
            .iter()
            .map(|component| {
                let mut wire = ComponentData::default();
                wire.entity_type = str_bytes(&component.entity_type);
                (wire.match_type, wire._match) = match &component.matching {
                    QuotaMatch::Exact(name) => (0, Some(str_bytes(name))),
                    QuotaMatch::Default => (1, None),
                    QuotaMatch::Any => (2, None),
                };
                wire
            })
            .collect();
        request.strict = strict;
        let response = connection.send(&request, version)?;
        KafkaError::check(
            response.error_code,
            response.error_message.map(|message| message.to_string()),
        )?;
        Ok(response
            .entries
            .unwrap_or_default()
            .into_iter()
            .map(|entry| QuotaEntry {
                entity: entry
                    .entity
                    .into_iter()
                    .map(|part| {
                        (
                            part.entity_type.to_string(),
                            part.entity_name.map(|name| name.to_string()),
                        )
                    })
                    .collect(),
                values: entry
                    .values
                    .into_iter()
                    .map(|value| (value.key.to_string(), value.value))
                    .collect(),
            })
            .collect())
    }

    /// Sets and removes quotas; one answer per alteration, in order. With
    /// `validate_only` the broker checks them and changes nothing.
    pub fn alter_client_quotas(
        &mut self,
        alterations: &[QuotaAlteration],
        validate_only: bool,
    ) -> Result<Vec<Result<(), KafkaError>>, ClientError> {
        let connection = self.bootstrap();
        let version = connection.version(ApiKey::AlterClientQuotas)?;
        let mut request = AlterClientQuotasRequest::default();
        request.entries = alterations
            .iter()
            .map(|alteration| {
                let mut entry = EntryData::default();
                entry.entity = alteration
                    .entity
                    .iter()
                    .map(|(entity_type, name)| {
                        let mut part = EntityData::default();
                        part.entity_type = str_bytes(entity_type);
                        part.entity_name = name.as_deref().map(str_bytes);
                        part
                    })
                    .collect();
                entry.ops = alteration
                    .changes
                    .iter()
                    .map(|(key, value)| {
                        let mut op = OpData::default();
                        op.key = str_bytes(key);
                        op.value = value.unwrap_or(0.0);
                        op.remove = value.is_none();
                        op
                    })
                    .collect();
                entry
            })
            .collect();
        request.validate_only = validate_only;
        let response = connection.send(&request, version)?;
        Ok(response
            .entries
            .into_iter()
            .map(|entry| {
                KafkaError::check(
                    entry.error_code,
                    entry.error_message.map(|message| message.to_string()),
                )
            })
            .collect())
    }
}
