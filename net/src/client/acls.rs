//! ACL calls (`sluice acl ...`): CreateAcls, DescribeAcls and DeleteAcls
//! (KIP-140, with KIP-290's pattern types), in the broker's own ACL model
//! ([`crate::acl`]), so a binding the CLI builds is the one the broker
//! checks. They go to the bootstrap broker: a Kafka broker forwards them
//! to its controller.

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{ApiKey, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;

use super::admin::Admin;
use super::error::{ClientError, KafkaError};
use crate::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};

/// One ACL a DeleteAcls filter matched, and whether it was removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletedAcl {
    pub binding: AclBinding,
    pub result: Result<(), KafkaError>,
}

/// A filter's answer: the ACLs it matched, or why it was refused.
pub type FilterDeletion = Result<Vec<DeletedAcl>, KafkaError>;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// The codes of a binding from a response, in the broker's model.
struct WireBinding<'a> {
    resource_type: i8,
    resource_name: &'a str,
    pattern_type: i8,
    principal: &'a str,
    host: &'a str,
    operation: i8,
    permission: i8,
}

impl Admin {
    fn unexpected(&mut self, api: ApiKey, message: String) -> ClientError {
        ClientError::Protocol {
            address: self.bootstrap().address().to_string(),
            api,
            message,
        }
    }

    fn binding_of(
        &mut self,
        api: ApiKey,
        wire: WireBinding<'_>,
    ) -> Result<AclBinding, ClientError> {
        let decoded = (|| {
            Some(AclBinding {
                resource_type: ResourceType::of_code(wire.resource_type)?,
                pattern_type: PatternType::of_code(wire.pattern_type)?,
                resource_name: wire.resource_name.to_string(),
                principal: wire.principal.to_string(),
                host: wire.host.to_string(),
                operation: Operation::of_code(wire.operation)?,
                permission: Permission::of_code(wire.permission)?,
            })
        })();
        decoded.ok_or_else(|| {
            self.unexpected(
                api,
                format!(
                    "an ACL with unknown codes (resource type {}, pattern type {}, operation {}, \
                     permission {})",
                    wire.resource_type, wire.pattern_type, wire.operation, wire.permission
                ),
            )
        })
    }

    /// Creates `bindings`; one result per binding, in order (each is
    /// checked on its own: some may be created while others are refused).
    pub fn create_acls(
        &mut self,
        bindings: &[AclBinding],
    ) -> Result<Vec<Result<(), KafkaError>>, ClientError> {
        let connection = self.bootstrap();
        let version = connection.version(ApiKey::CreateAcls)?;
        let mut request = CreateAclsRequest::default();
        request.creations = bindings
            .iter()
            .map(|binding| {
                let mut creation = AclCreation::default();
                creation.resource_type = binding.resource_type.code();
                creation.resource_name = text(&binding.resource_name);
                creation.resource_pattern_type = binding.pattern_type.code();
                creation.principal = text(&binding.principal);
                creation.host = text(&binding.host);
                creation.operation = binding.operation.code();
                creation.permission_type = binding.permission.code();
                creation
            })
            .collect();
        let response = connection.send(&request, version)?;
        if response.results.len() != bindings.len() {
            let message = format!(
                "{} results for {} ACLs",
                response.results.len(),
                bindings.len()
            );
            return Err(self.unexpected(ApiKey::CreateAcls, message));
        }
        Ok(response
            .results
            .into_iter()
            .map(|result| {
                KafkaError::check(
                    result.error_code,
                    result.error_message.map(|message| message.to_string()),
                )
            })
            .collect())
    }

    /// The ACLs `filter` selects, sorted.
    pub fn describe_acls(&mut self, filter: &AclFilter) -> Result<Vec<AclBinding>, ClientError> {
        let connection = self.bootstrap();
        let version = connection.version(ApiKey::DescribeAcls)?;
        let mut request = DescribeAclsRequest::default();
        request.resource_type_filter = filter.resource_type.code();
        request.resource_name_filter = filter.resource_name.as_deref().map(text);
        request.pattern_type_filter = filter.pattern_type.code();
        request.principal_filter = filter.principal.as_deref().map(text);
        request.host_filter = filter.host.as_deref().map(text);
        request.operation = filter.operation.code();
        request.permission_type = filter.permission.code();
        let response = connection.send(&request, version)?;
        KafkaError::check(
            response.error_code,
            response.error_message.map(|message| message.to_string()),
        )?;
        let mut bindings = Vec::new();
        for resource in &response.resources {
            for acl in &resource.acls {
                let binding = self.binding_of(
                    ApiKey::DescribeAcls,
                    WireBinding {
                        resource_type: resource.resource_type,
                        resource_name: resource.resource_name.as_str(),
                        pattern_type: resource.pattern_type,
                        principal: acl.principal.as_str(),
                        host: acl.host.as_str(),
                        operation: acl.operation,
                        permission: acl.permission_type,
                    },
                )?;
                bindings.push(binding);
            }
        }
        bindings.sort();
        Ok(bindings)
    }

    /// Removes what each filter selects; one answer per filter, in order.
    pub fn delete_acls(
        &mut self,
        filters: &[AclFilter],
    ) -> Result<Vec<FilterDeletion>, ClientError> {
        let connection = self.bootstrap();
        let version = connection.version(ApiKey::DeleteAcls)?;
        let mut request = DeleteAclsRequest::default();
        request.filters = filters
            .iter()
            .map(|filter| {
                let mut wire = DeleteAclsFilter::default();
                wire.resource_type_filter = filter.resource_type.code();
                wire.resource_name_filter = filter.resource_name.as_deref().map(text);
                wire.pattern_type_filter = filter.pattern_type.code();
                wire.principal_filter = filter.principal.as_deref().map(text);
                wire.host_filter = filter.host.as_deref().map(text);
                wire.operation = filter.operation.code();
                wire.permission_type = filter.permission.code();
                wire
            })
            .collect();
        let response = connection.send(&request, version)?;
        if response.filter_results.len() != filters.len() {
            let message = format!(
                "{} results for {} filters",
                response.filter_results.len(),
                filters.len()
            );
            return Err(self.unexpected(ApiKey::DeleteAcls, message));
        }
        let mut answers = Vec::with_capacity(filters.len());
        for result in response.filter_results {
            let checked = KafkaError::check(
                result.error_code,
                result.error_message.map(|message| message.to_string()),
            );
            if let Err(error) = checked {
                answers.push(Err(error));
                continue;
            }
            let mut matched = Vec::with_capacity(result.matching_acls.len());
            for acl in result.matching_acls {
                let binding = self.binding_of(
                    ApiKey::DeleteAcls,
                    WireBinding {
                        resource_type: acl.resource_type,
                        resource_name: acl.resource_name.as_str(),
                        pattern_type: acl.pattern_type,
                        principal: acl.principal.as_str(),
                        host: acl.host.as_str(),
                        operation: acl.operation,
                        permission: acl.permission_type,
                    },
                )?;
                matched.push(DeletedAcl {
                    binding,
                    result: KafkaError::check(
                        acl.error_code,
                        acl.error_message.map(|message| message.to_string()),
                    ),
                });
            }
            answers.push(Ok(matched));
        }
        Ok(answers)
    }
}
