//! DescribeAcls (29): the ACLs a filter selects, grouped by resource
//! pattern. Takes DESCRIBE on the cluster; without an authorizer there are
//! no ACLs to show and the answer is SECURITY_DISABLED, as Kafka's.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse, RequestHeader};

use super::{encode, str_bytes, Session};
use crate::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};
use crate::broker::Broker;
use crate::errors::code;
use crate::wire::Pieces;

pub const VERSIONS: (i16, i16) = (1, 3);

/// Kafka's answer when no authorizer is configured.
pub const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

pub async fn handle(
    broker: &Rc<Broker>,
    session: &Session,
    header: &RequestHeader,
    request: DescribeAclsRequest,
) -> Option<Pieces> {
    let version = header.request_api_version;
    let mut response = DescribeAclsResponse::default();
    let refuse = |mut response: DescribeAclsResponse, error_code: i16, message: String| {
        response.error_code = error_code;
        response.error_message = Some(str_bytes(&message));
        Some(encode(&response, version))
    };
    let Some(authorizer) = broker.config.authorizer.as_ref() else {
        return refuse(response, code::SECURITY_DISABLED, NO_AUTHORIZER.into());
    };
    if !session.may_on_cluster(broker, Operation::Describe) {
        return refuse(
            response,
            code::CLUSTER_AUTHORIZATION_FAILED,
            "describing ACLs takes DESCRIBE on the cluster".into(),
        );
    }
    let filter = match filter_of(
        request.resource_type_filter,
        request.resource_name_filter.as_deref(),
        request.pattern_type_filter,
        request.principal_filter.as_deref(),
        request.host_filter.as_deref(),
        request.operation,
        request.permission_type,
    ) {
        Ok(filter) => filter,
        Err(reason) => return refuse(response, code::INVALID_REQUEST, reason),
    };
    let mut by_pattern: BTreeMap<(ResourceType, PatternType, String), Vec<AclBinding>> =
        BTreeMap::new();
    for acl in authorizer.acls.read().iter() {
        if filter.matches(acl) {
            by_pattern
                .entry((
                    acl.resource_type,
                    acl.pattern_type,
                    acl.resource_name.clone(),
                ))
                .or_default()
                .push(acl.clone());
        }
    }
    response.error_code = code::NONE;
    response.resources = by_pattern
        .into_iter()
        .map(|((resource_type, pattern_type, name), acls)| {
            let mut resource = DescribeAclsResource::default();
            resource.resource_type = resource_type.code();
            resource.resource_name = str_bytes(&name);
            resource.pattern_type = pattern_type.code();
            resource.acls = acls
                .iter()
                .map(|acl| {
                    let mut description = AclDescription::default();
                    description.principal = str_bytes(&acl.principal);
                    description.host = str_bytes(&acl.host);
                    description.operation = acl.operation.code();
                    description.permission_type = acl.permission.code();
                    description
                })
                .collect();
            resource
        })
        .collect();
    Some(encode(&response, version))
}

/// A filter from its wire fields, refused as Kafka refuses it: every code
/// must name a type (UNKNOWN, 0, is refused).
pub fn filter_of(
    resource_type: i8,
    resource_name: Option<&str>,
    pattern_type: i8,
    principal: Option<&str>,
    host: Option<&str>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    let unknown = |what: &str, value: i8| format!("unknown {what} {value} in the ACL filter");
    Ok(AclFilter {
        resource_type: ResourceType::of_code(resource_type)
            .ok_or_else(|| unknown("resource type", resource_type))?,
        pattern_type: PatternType::of_code(pattern_type)
            .ok_or_else(|| unknown("pattern type", pattern_type))?,
        resource_name: resource_name.map(str::to_string),
        principal: principal.map(str::to_string),
        host: host.map(str::to_string),
        operation: Operation::of_code(operation).ok_or_else(|| unknown("operation", operation))?,
        permission: Permission::of_code(permission)
            .ok_or_else(|| unknown("permission type", permission))?,
    })
}
