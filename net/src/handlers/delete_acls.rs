//! DeleteAcls (31): removes what each filter selects and answers, per
//! filter, the ACLs it removed. Takes ALTER on the cluster. The controller
//! applies the filters to the metadata's ACLs and writes the removal to the
//! metadata log before the answer.

use std::rc::Rc;

use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse, RequestHeader};

use super::describe_acls::{filter_of, NO_AUTHORIZER};
use super::{encode, str_bytes, Session};
use crate::acl::{AclBinding, AclFilter, Operation};
use crate::broker::{Broker, ControllerRequest, ShardResponse};
use crate::errors::code;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (1, 3);

/// One filter's answer: an error, or the ACLs it removed.
type FilterOutcome = Result<Vec<AclBinding>, (i16, String)>;

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: DeleteAclsRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let count = request.filters.len();
    let outcomes: Vec<FilterOutcome> = match broker.config.authorizer.as_ref() {
        None => vec![Err((code::SECURITY_DISABLED, NO_AUTHORIZER.into())); count],
        Some(_) if !session.may_on_cluster(broker, Operation::Alter) => vec![
            Err((
                code::CLUSTER_AUTHORIZATION_FAILED,
                "deleting ACLs takes ALTER on the cluster".into(),
            ));
            count
        ],
        Some(_) => {
            let parsed: Vec<Result<AclFilter, String>> = request
                .filters
                .iter()
                .map(|filter| {
                    filter_of(
                        filter.resource_type_filter,
                        filter.resource_name_filter.as_deref(),
                        filter.pattern_type_filter,
                        filter.principal_filter.as_deref(),
                        filter.host_filter.as_deref(),
                        filter.operation,
                        filter.permission_type,
                    )
                })
                .collect();
            let valid: Vec<AclFilter> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
            let deleted = if valid.is_empty() {
                Ok(Vec::new())
            } else {
                match broker
                    .controller_call(ControllerRequest::DeleteAcls(valid))
                    .await
                {
                    Some(ShardResponse::AclsDeleted(deleted)) => deleted,
                    _ => Err((
                        code::UNKNOWN_SERVER_ERROR,
                        "the controller did not answer".to_string(),
                    )),
                }
            };
            match deleted {
                Err(failure) => vec![Err(failure); count],
                Ok(removed) => {
                    let mut removed = removed.into_iter();
                    parsed
                        .into_iter()
                        .map(|parsed| match parsed {
                            Err(reason) => Err((code::INVALID_REQUEST, reason)),
                            Ok(_) => Ok(removed.next().unwrap_or_default()),
                        })
                        .collect()
                }
            }
        }
    };
    let mut response = DeleteAclsResponse::default();
    response.filter_results = outcomes
        .into_iter()
        .map(|outcome| {
            let mut result = DeleteAclsFilterResult::default();
            match outcome {
                Err((error_code, message)) => {
                    result.error_code = error_code;
                    result.error_message = Some(str_bytes(&message));
                }
                Ok(acls) => {
                    for acl in &acls {
                        tracing::info!(%acl, principal = %session.requester().principal, "ACL deleted");
                    }
                    result.matching_acls = acls.iter().map(matching).collect();
                }
            }
            result
        })
        .collect();
    Some(encode(&response, version))
}

fn matching(acl: &AclBinding) -> DeleteAclsMatchingAcl {
    let mut matching = DeleteAclsMatchingAcl::default();
    matching.resource_type = acl.resource_type.code();
    matching.resource_name = str_bytes(&acl.resource_name);
    matching.pattern_type = acl.pattern_type.code();
    matching.principal = str_bytes(&acl.principal);
    matching.host = str_bytes(&acl.host);
    matching.operation = acl.operation.code();
    matching.permission_type = acl.permission.code();
    matching
}
