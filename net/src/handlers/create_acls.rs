//! CreateAcls (30): adds ACLs, each checked on its own. Takes ALTER on the
//! cluster. The controller writes them to the metadata log; a new ACL is
//! durable on the quorum before the answer, applies to the next request on
//! every shard of the controller's broker, and reaches the other brokers
//! as they apply the log.

use std::rc::Rc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse, RequestHeader};

use super::describe_acls::NO_AUTHORIZER;
use super::{encode, str_bytes, Session};
use crate::acl::{AclBinding, Operation, PatternType, Permission, ResourceType};
use crate::broker::{Broker, ControllerRequest, ShardResponse};
use crate::errors::code;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (1, 3);

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: CreateAclsRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let count = request.creations.len();
    let outcomes: Vec<(i16, Option<String>)> = match broker.config.authorizer.as_ref() {
        None => vec![(code::SECURITY_DISABLED, Some(NO_AUTHORIZER.into())); count],
        Some(_) if !session.may_on_cluster(broker, Operation::Alter) => vec![
            (
                code::CLUSTER_AUTHORIZATION_FAILED,
                Some("creating ACLs takes ALTER on the cluster".into()),
            );
            count
        ],
        Some(_) => {
            // Codes that name no type fail here; the rest are checked by
            // the controller with Kafka's rules.
            let parsed: Vec<Result<AclBinding, String>> =
                request.creations.iter().map(binding_of).collect();
            let valid: Vec<AclBinding> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
            let created = if valid.is_empty() {
                Ok(Vec::new())
            } else {
                match broker
                    .controller_call(ControllerRequest::CreateAcls(valid))
                    .await
                {
                    Some(ShardResponse::AclsCreated(created)) => created,
                    _ => Err((
                        code::UNKNOWN_SERVER_ERROR,
                        "the controller did not answer".to_string(),
                    )),
                }
            };
            match created {
                Err((error_code, message)) => vec![(error_code, Some(message)); count],
                Ok(stored) => {
                    let mut stored = stored.into_iter();
                    parsed
                        .into_iter()
                        .map(|parsed| match parsed {
                            Err(reason) => (code::INVALID_REQUEST, Some(reason)),
                            Ok(acl) => match stored.next().flatten() {
                                None => {
                                    tracing::info!(%acl, principal = %session.requester().principal, "ACL created");
                                    (code::NONE, None)
                                }
                                Some(reason) => (code::INVALID_REQUEST, Some(reason)),
                            },
                        })
                        .collect()
                }
            }
        }
    };
    let mut response = CreateAclsResponse::default();
    response.results = outcomes
        .into_iter()
        .map(|(error_code, message)| {
            let mut result = AclCreationResult::default();
            result.error_code = error_code;
            result.error_message = message.as_deref().map(str_bytes);
            result
        })
        .collect();
    Some(encode(&response, version))
}

fn binding_of(
    creation: &kafka_protocol::messages::create_acls_request::AclCreation,
) -> Result<AclBinding, String> {
    let unknown = |what: &str, value: i8| format!("unknown {what} {value}");
    Ok(AclBinding {
        resource_type: ResourceType::of_code(creation.resource_type)
            .ok_or_else(|| unknown("resource type", creation.resource_type))?,
        pattern_type: PatternType::of_code(creation.resource_pattern_type)
            .ok_or_else(|| unknown("pattern type", creation.resource_pattern_type))?,
        resource_name: creation.resource_name.to_string(),
        principal: creation.principal.to_string(),
        host: creation.host.to_string(),
        operation: Operation::of_code(creation.operation)
            .ok_or_else(|| unknown("operation", creation.operation))?,
        permission: Permission::of_code(creation.permission_type)
            .ok_or_else(|| unknown("permission type", creation.permission_type))?,
    })
}
