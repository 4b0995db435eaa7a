//! AlterClientQuotas (49, KIP-546): sets and removes client quotas. Every
//! entry is checked here (entity types, keys, values, as Kafka's
//! controller checks them); the valid ones go to the controller, which
//! writes them to the metadata log in one entry, so they hold on every
//! broker and survive restarts. Needs ALTER_CONFIGS on the cluster, as
//! Kafka asks. With `validate_only` nothing is written.

use std::rc::Rc;

use kafka_protocol::messages::alter_client_quotas_request::EntryData;
use kafka_protocol::messages::alter_client_quotas_response::{self, EntityData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, RequestHeader,
};

use super::{encode, str_bytes, Session};
use crate::acl::Operation;
use crate::broker::{Broker, ControllerRequest, QuotaAlteration, ShardResponse};
use crate::constants::QUOTA_ENTRIES_MAX;
use crate::errors::code;
use crate::quota;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (0, 1);

/// An entry checked: the change to write, or Kafka's INVALID_REQUEST
/// message.
fn check_entry(entry: &EntryData) -> Result<QuotaAlteration, String> {
    let parts: Vec<(&str, Option<&str>)> = entry
        .entity
        .iter()
        .map(|part| (part.entity_type.as_str(), part.entity_name.as_deref()))
        .collect();
    let entity = quota::entity_of(&parts)?;
    if entry.ops.len() > QUOTA_ENTRIES_MAX {
        return Err(format!(
            "at most {QUOTA_ENTRIES_MAX} quota changes per entity in one request"
        ));
    }
    let mut changes: Vec<(String, Option<f64>)> = Vec::with_capacity(entry.ops.len());
    for op in &entry.ops {
        let key = op.key.as_str();
        let value = (!op.remove).then_some(op.value);
        quota::check_change(key, value)?;
        if changes.iter().any(|(named, _)| named == key) {
            return Err(format!("Duplicate quota key {key} in one entity's changes"));
        }
        changes.push((key.to_string(), value));
    }
    Ok(QuotaAlteration { entity, changes })
}

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: AlterClientQuotasRequest,
) -> Option<Pieces> {
    let allowed = session.may_on_cluster(broker, Operation::AlterConfigs);
    let too_many = request.entries.len() > QUOTA_ENTRIES_MAX;
    let mut outcomes: Vec<Result<(), (i16, String)>> = Vec::with_capacity(request.entries.len());
    let mut alterations = Vec::new();
    let mut written = Vec::new();
    for entry in &request.entries {
        let outcome = if !allowed {
            Err((
                code::CLUSTER_AUTHORIZATION_FAILED,
                "altering client quotas takes ALTER_CONFIGS on the cluster".to_string(),
            ))
        } else if too_many {
            Err((
                code::INVALID_REQUEST,
                format!("at most {QUOTA_ENTRIES_MAX} entities in one request"),
            ))
        } else {
            check_entry(entry).map_err(|message| (code::INVALID_REQUEST, message))
        };
        if let Ok(alteration) = &outcome {
            written.push(outcomes.len());
            alterations.push(alteration.clone());
        }
        outcomes.push(outcome.map(|_| ()));
    }
    if !request.validate_only && !alterations.is_empty() {
        let failure = match broker
            .controller_call(ControllerRequest::AlterClientQuotas(alterations))
            .await
        {
            Some(ShardResponse::ClientQuotas(Ok(()))) => None,
            Some(ShardResponse::ClientQuotas(Err(failure))) => Some(failure),
            _ => Some((
                code::UNKNOWN_SERVER_ERROR,
                "the controller did not answer".to_string(),
            )),
        };
        if let Some(failure) = failure {
            for index in written {
                outcomes[index] = Err(failure.clone());
            }
        } else {
            tracing::info!(entities = written.len(), "client quotas changed");
        }
    }
    let mut response = AlterClientQuotasResponse::default();
    response.entries = request
        .entries
        .iter()
        .zip(outcomes)
        .map(|(entry, outcome)| {
            let mut answered = alter_client_quotas_response::EntryData::default();
            answered.entity = entry
                .entity
                .iter()
                .map(|part| {
                    let mut echoed = EntityData::default();
                    echoed.entity_type = part.entity_type.clone();
                    echoed.entity_name = part.entity_name.clone();
                    echoed
                })
                .collect();
            if let Err((error_code, message)) = outcome {
                answered.error_code = error_code;
                answered.error_message = Some(str_bytes(&message));
            }
            answered
        })
        .collect();
    Some(encode(&response, header.request_api_version))
}
