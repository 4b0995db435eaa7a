//! `sluice acl add|remove|list`: ACLs of a running broker over CreateAcls,
//! DeleteAcls and DescribeAcls, with flags modelled on Kafka's
//! `kafka-acls.sh` (`--allow-principal User:alice --operation Read
//! --topic orders`).
//!
//! `add` makes one ACL per resource, principal, host and operation given
//! (ALLOW for the `--allow-*` flags, DENY for the `--deny-*` ones).
//! `remove` and `list` turn the same flags into filters: a flag that is
//! not given matches anything, except that `remove` needs a resource, so
//! that a forgotten flag cannot remove every ACL of the broker.
//!
//! Each ACL and filter is answered on its own; the command prints every
//! answer, and exits with status 1 when any was refused, naming Kafka's
//! error (CLUSTER_AUTHORIZATION_FAILED for a principal that may not manage
//! ACLs).

use std::process::ExitCode;

use serde_json::{json, Value};
use sluice_net::acl::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType, CLUSTER_NAME,
    WILDCARD_HOST,
};
use sluice_net::client::{Admin, ClientError, KafkaError};

use clap::{Args, Subcommand};

use super::args::{self, AdminOptions};
use super::{emit, json_text, table};
use crate::cli::usage_error;

/// `sluice acl ACTION ...`: ACLs of a running broker (CreateAcls,
/// DeleteAcls, DescribeAcls; the broker runs with --authorizer acl).
#[derive(Debug, Args)]
pub struct AclArgs {
    #[command(flatten)]
    options: AdminOptions,
    #[command(subcommand)]
    action: AclAction,
}

#[derive(Debug, Subcommand)]
enum AclAction {
    /// Adds an ACL for every resource, principal, host and operation given: ALLOW for
    /// --allow-principal, DENY for --deny-principal. Hosts default to * (every host).
    Add(AclFlags),
    /// Removes the ACLs of the resources that match every flag given (a flag not given
    /// matches anything; --principal matches ALLOW and DENY ACLs) and prints them.
    Remove(AclFlags),
    /// Prints one line per ACL; without a resource, every ACL of the broker.
    List(AclFlags),
}

/// What the resource flags mean, after an ACL command's flags.
const ACL_HELP: &str = "\
P: a principal, User:NAME (User:* for every user). OP: Read, Write, Create, Delete, Alter,
Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, All. The pattern type
defaults to literal when a resource is given; list without a resource shows every pattern type.
match selects the ACLs that apply to the named resource (literal, * and prefixed ones); any the
ACLs of exactly that name, of any pattern type.";

/// The resources, principals, hosts and operations an ACL command names.
#[derive(Debug, Args)]
#[command(after_help = ACL_HELP)]
struct AclFlags {
    /// A topic (resource); may be given more than once.
    #[arg(long = "topic", value_name = "NAME", value_parser = args::name)]
    topics: Vec<String>,
    /// A consumer group (resource); may be given more than once.
    #[arg(long = "group", value_name = "NAME", value_parser = args::name)]
    groups: Vec<String>,
    /// A transactional id (resource); may be given more than once.
    #[arg(long = "transactional-id", value_name = "NAME", value_parser = args::name)]
    transactional_ids: Vec<String>,
    /// The cluster (resource).
    #[arg(long)]
    cluster: bool,
    /// A principal the ACLs allow; may be given more than once.
    #[arg(long = "allow-principal", value_name = "P", value_parser = principal_of)]
    allow_principals: Vec<String>,
    /// A principal the ACLs deny; may be given more than once.
    #[arg(long = "deny-principal", value_name = "P", value_parser = principal_of)]
    deny_principals: Vec<String>,
    /// A principal to match, allowed or denied (remove and list only).
    #[arg(long = "principal", value_name = "P", value_parser = principal_of)]
    principals: Vec<String>,
    /// A host the allowing ACLs are for (* for every host).
    #[arg(
        long = "allow-host",
        value_name = "H",
        value_parser = args::name,
        requires = "allow_principals"
    )]
    allow_hosts: Vec<String>,
    /// A host the denying ACLs are for (* for every host).
    #[arg(
        long = "deny-host",
        value_name = "H",
        value_parser = args::name,
        requires = "deny_principals"
    )]
    deny_hosts: Vec<String>,
    /// An operation; may be given more than once.
    #[arg(long = "operation", value_name = "OP", value_parser = operation_of)]
    operations: Vec<Operation>,
    /// How resource names match: literal or prefixed (add), also match or any (remove,
    /// list).
    #[arg(long, value_name = "literal|prefixed|match|any", value_parser = pattern_type_of)]
    resource_pattern_type: Option<PatternType>,
}

/// What the command line asks of the broker.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Add(Vec<AclBinding>),
    Remove(Vec<AclFilter>),
    List(Vec<AclFilter>),
}

#[derive(Debug, PartialEq, Eq)]
struct Invocation {
    bootstrap: String,
    command_config: Option<String>,
    json: bool,
    action: Action,
}

/// An operation by Kafka's Java name (`ClusterAction`) or wire name
/// (`CLUSTER_ACTION`), in any case.
fn operation_of(text: &str) -> Result<Operation, String> {
    let wanted = text.replace(['_', '-'], "");
    Operation::ALL
        .iter()
        .copied()
        .filter(|operation| *operation != Operation::Any)
        .find(|operation| {
            operation
                .name()
                .replace('_', "")
                .eq_ignore_ascii_case(&wanted)
        })
        .ok_or_else(|| format!("unknown operation '{text}'"))
}

/// A principal is `Type:name`, as Kafka parses it.
fn principal_of(text: &str) -> Result<String, String> {
    match text.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(text.to_string()),
        _ => Err(format!(
            "expected a principal such as User:alice, got '{text}'"
        )),
    }
}

fn pattern_type_of(text: &str) -> Result<PatternType, String> {
    PatternType::of_name(text)
        .ok_or_else(|| format!("expected literal, prefixed, match or any, got '{text}'"))
}

impl AclFlags {
    fn resources(&self) -> Vec<(ResourceType, String)> {
        let mut resources = Vec::new();
        for (names, resource_type) in [
            (&self.topics, ResourceType::Topic),
            (&self.groups, ResourceType::Group),
            (&self.transactional_ids, ResourceType::TransactionalId),
        ] {
            resources.extend(names.iter().map(|name| (resource_type, name.clone())));
        }
        if self.cluster {
            resources.push((ResourceType::Cluster, CLUSTER_NAME.to_string()));
        }
        resources
    }

    /// The allowing side, then the denying side, each if it names a principal.
    fn sides(&self) -> Vec<Side> {
        [
            (Permission::Allow, &self.allow_principals, &self.allow_hosts),
            (Permission::Deny, &self.deny_principals, &self.deny_hosts),
        ]
        .into_iter()
        .filter(|(_, principals, _)| !principals.is_empty())
        .map(|(permission, principals, hosts)| Side {
            permission,
            principals: principals.clone(),
            hosts: hosts.clone(),
        })
        .collect()
    }
}

impl AclAction {
    /// What the broker is asked; the error is a usage error.
    fn action(self) -> Result<Action, String> {
        let (AclAction::Add(flags) | AclAction::Remove(flags) | AclAction::List(flags)) = &self;
        let resources = flags.resources();
        let sides = flags.sides();
        let operations = &flags.operations;
        let pattern_type = flags.resource_pattern_type;
        Ok(match &self {
            AclAction::Add(_) => {
                if !flags.principals.is_empty() {
                    return Err("'acl add' takes --allow-principal or --deny-principal".to_string());
                }
                Action::Add(bindings_of(&resources, &sides, operations, pattern_type)?)
            }
            AclAction::Remove(_) => {
                if resources.is_empty() {
                    return Err("'acl remove' needs a resource: --topic, --group, \
                                --transactional-id or --cluster"
                        .to_string());
                }
                Action::Remove(filters_of(
                    flags,
                    &resources,
                    &sides,
                    operations,
                    pattern_type,
                ))
            }
            AclAction::List(_) => Action::List(filters_of(
                flags,
                &resources,
                &sides,
                operations,
                pattern_type,
            )),
        })
    }
}

/// One side of the principals: who, from where, with which permission.
struct Side {
    permission: Permission,
    principals: Vec<String>,
    /// Empty: the default (`*` for add, any host for a filter).
    hosts: Vec<String>,
}

fn bindings_of(
    resources: &[(ResourceType, String)],
    sides: &[Side],
    operations: &[Operation],
    pattern_type: Option<PatternType>,
) -> Result<Vec<AclBinding>, String> {
    let pattern_type = pattern_type.unwrap_or(PatternType::Literal);
    if !matches!(pattern_type, PatternType::Literal | PatternType::Prefixed) {
        return Err(format!(
            "'acl add' takes --resource-pattern-type literal or prefixed, not {}",
            pattern_type.name().to_ascii_lowercase()
        ));
    }
    if sides.is_empty() {
        return Err("'acl add' needs --allow-principal or --deny-principal".to_string());
    }
    if resources.is_empty() {
        return Err(
            "'acl add' needs a resource: --topic, --group, --transactional-id or --cluster"
                .to_string(),
        );
    }
    if operations.is_empty() {
        return Err("'acl add' needs --operation (All must be named)".to_string());
    }
    let mut bindings = Vec::new();
    for (resource_type, name) in resources {
        for side in sides {
            let hosts = if side.hosts.is_empty() {
                vec![WILDCARD_HOST.to_string()]
            } else {
                side.hosts.clone()
            };
            for principal in &side.principals {
                for host in &hosts {
                    for operation in operations {
                        let binding = AclBinding {
                            resource_type: *resource_type,
                            pattern_type,
                            resource_name: name.clone(),
                            principal: principal.clone(),
                            host: host.clone(),
                            operation: *operation,
                            permission: side.permission,
                        };
                        binding.validate()?;
                        if !bindings.contains(&binding) {
                            bindings.push(binding);
                        }
                    }
                }
            }
        }
    }
    Ok(bindings)
}

fn filters_of(
    flags: &AclFlags,
    resources: &[(ResourceType, String)],
    sides: &[Side],
    operations: &[Operation],
    pattern_type: Option<PatternType>,
) -> Vec<AclFilter> {
    // (resource type, name, pattern type)
    let patterns: Vec<(ResourceType, Option<String>, PatternType)> = if resources.is_empty() {
        vec![(
            ResourceType::Any,
            None,
            pattern_type.unwrap_or(PatternType::Any),
        )]
    } else {
        resources
            .iter()
            .map(|(resource_type, name)| {
                (
                    *resource_type,
                    Some(name.clone()),
                    pattern_type.unwrap_or(PatternType::Literal),
                )
            })
            .collect()
    };
    // (permission, principal, hosts): `None` matches any.
    let mut principals: Vec<(Permission, Option<String>, Vec<Option<String>>)> = Vec::new();
    for side in sides {
        let hosts: Vec<Option<String>> = if side.hosts.is_empty() {
            vec![None]
        } else {
            side.hosts.iter().cloned().map(Some).collect()
        };
        for principal in &side.principals {
            principals.push((side.permission, Some(principal.clone()), hosts.clone()));
        }
    }
    for principal in &flags.principals {
        principals.push((Permission::Any, Some(principal.clone()), vec![None]));
    }
    if principals.is_empty() {
        principals.push((Permission::Any, None, vec![None]));
    }
    let operations = if operations.is_empty() {
        vec![Operation::Any]
    } else {
        operations.to_vec()
    };
    let mut filters = Vec::new();
    for (resource_type, name, pattern_type) in &patterns {
        for (permission, principal, hosts) in &principals {
            for host in hosts {
                for operation in &operations {
                    let filter = AclFilter {
                        resource_type: *resource_type,
                        pattern_type: *pattern_type,
                        resource_name: name.clone(),
                        principal: principal.clone(),
                        host: host.clone(),
                        operation: *operation,
                        permission: *permission,
                    };
                    if !filters.contains(&filter) {
                        filters.push(filter);
                    }
                }
            }
        }
    }
    filters
}

/// The invocation `sluice acl` asks for; the error is a usage error.
fn invocation(args: AclArgs) -> Result<Invocation, String> {
    Ok(Invocation {
        bootstrap: args.options.connection.bootstrap,
        command_config: args.options.connection.command_config,
        json: args.options.json,
        action: args.action.action()?,
    })
}

/// Runs `sluice acl`.
pub fn run(args: AclArgs) -> ExitCode {
    let invocation = invocation(args).unwrap_or_else(|message| usage_error(&["acl"], message));
    let doing = match &invocation.action {
        Action::Add(_) => "add ACLs",
        Action::Remove(_) => "remove ACLs",
        Action::List(_) => "list ACLs",
    };
    super::run_against_broker(
        &invocation.bootstrap,
        invocation.command_config.as_deref(),
        doing,
        |admin| match &invocation.action {
            Action::Add(bindings) => add(admin, bindings, invocation.json),
            Action::Remove(filters) => remove(admin, filters, invocation.json),
            Action::List(filters) => list(admin, filters, invocation.json),
        },
    )
}

fn binding_json(binding: &AclBinding) -> Value {
    json!({
        "resource_type": binding.resource_type.name(),
        "resource_name": binding.resource_name,
        "pattern_type": binding.pattern_type.name(),
        "principal": binding.principal,
        "host": binding.host,
        "operation": binding.operation.name(),
        "permission": binding.permission.name(),
    })
}

fn error_json(result: &Result<(), KafkaError>) -> Value {
    match result {
        Ok(()) => Value::Null,
        Err(error) => json!({
            "code": error.code,
            "name": error.name(),
            "message": error.message,
        }),
    }
}

/// `NAME (code): message`.
fn refusal_text(error: &KafkaError) -> String {
    super::elect::refusal_text(error)
}

/// The error the command exits with when `refused` of `total` answers
/// were refusals: the first refusal's code, with the count.
fn partly_refused(what: &str, refused: &[&KafkaError], total: usize) -> Option<ClientError> {
    let first = refused.first()?;
    let message = match &first.message {
        Some(message) => format!("{} of {total} {what} refused: {message}", refused.len()),
        None => format!("{} of {total} {what} refused", refused.len()),
    };
    Some(ClientError::Broker(KafkaError::new(
        first.code,
        Some(message),
    )))
}

fn add(admin: &mut Admin, bindings: &[AclBinding], json: bool) -> Result<String, ClientError> {
    let results = admin.create_acls(bindings)?;
    let mut out = String::new();
    let mut rows = Vec::new();
    for (binding, result) in bindings.iter().zip(&results) {
        match result {
            Ok(()) => out.push_str(&format!("added {binding}\n")),
            Err(error) => out.push_str(&format!("refused {binding}: {}\n", refusal_text(error))),
        }
        rows.push(json!({ "acl": binding_json(binding), "error": error_json(result) }));
    }
    if json {
        out = json_text(&json!({ "added": rows }));
    }
    let refused: Vec<&KafkaError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    match partly_refused("ACLs", &refused, bindings.len()) {
        None => Ok(out),
        Some(error) => {
            emit(&out);
            Err(error)
        }
    }
}

fn remove(admin: &mut Admin, filters: &[AclFilter], json: bool) -> Result<String, ClientError> {
    let answers = admin.delete_acls(filters)?;
    let mut out = String::new();
    let mut rows = Vec::new();
    let mut refused: Vec<&KafkaError> = Vec::new();
    let mut removed = 0usize;
    for answer in &answers {
        match answer {
            Err(error) => {
                out.push_str(&format!("refused: {}\n", refusal_text(error)));
                rows.push(json!({ "acl": Value::Null, "error": error_json(&Err(error.clone())) }));
                refused.push(error);
            }
            Ok(matched) => {
                for deleted in matched {
                    match &deleted.result {
                        Ok(()) => {
                            removed += 1;
                            out.push_str(&format!("removed {}\n", deleted.binding));
                        }
                        Err(error) => {
                            out.push_str(&format!(
                                "not removed {}: {}\n",
                                deleted.binding,
                                refusal_text(error)
                            ));
                            refused.push(error);
                        }
                    }
                    rows.push(json!({
                        "acl": binding_json(&deleted.binding),
                        "error": error_json(&deleted.result),
                    }));
                }
            }
        }
    }
    if removed == 0 && refused.is_empty() {
        out.push_str("No ACL matched.\n");
    }
    if json {
        out = json_text(&json!({ "removed": rows }));
    }
    let total = answers
        .iter()
        .map(|answer| answer.as_ref().map_or(1, Vec::len))
        .sum();
    match partly_refused("removals", &refused, total) {
        None => Ok(out),
        Some(error) => {
            emit(&out);
            Err(error)
        }
    }
}

fn list(admin: &mut Admin, filters: &[AclFilter], json: bool) -> Result<String, ClientError> {
    let mut bindings: Vec<AclBinding> = Vec::new();
    for filter in filters {
        for binding in admin.describe_acls(filter)? {
            if !bindings.contains(&binding) {
                bindings.push(binding);
            }
        }
    }
    bindings.sort();
    if json {
        let list: Vec<Value> = bindings.iter().map(binding_json).collect();
        return Ok(json_text(&json!({ "acls": list })));
    }
    if bindings.is_empty() {
        return Ok("No ACLs.\n".to_string());
    }
    let rows: Vec<Vec<String>> = bindings
        .iter()
        .map(|binding| {
            vec![
                binding.principal.clone(),
                binding.host.clone(),
                binding.permission.name().to_string(),
                binding.operation.name().to_string(),
                binding.resource_type.name().to_string(),
                binding.resource_name.clone(),
                binding.pattern_type.name().to_string(),
            ]
        })
        .collect();
    Ok(table(
        &[
            "PRINCIPAL",
            "HOST",
            "PERMISSION",
            "OPERATION",
            "RESOURCE-TYPE",
            "RESOURCE",
            "PATTERN",
        ],
        &rows,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &[String]) -> Result<Invocation, String> {
        super::super::stream::parse_as::<AclArgs>(line).and_then(invocation)
    }

    fn args(line: &str) -> Vec<String> {
        super::super::stream::words(line)
    }

    fn action(line: &str) -> Action {
        match parse(&args(line)) {
            Ok(invocation) => invocation.action,
            Err(error) => panic!("{line}: {error}"),
        }
    }

    fn binding(
        resource_type: ResourceType,
        name: &str,
        principal: &str,
        host: &str,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            pattern_type: PatternType::Literal,
            resource_name: name.into(),
            principal: principal.into(),
            host: host.into(),
            operation,
            permission,
        }
    }

    #[test]
    fn add_makes_every_combination() {
        let invocation = parse(&args(
            "add --bootstrap-server h:1 --command-config admin.properties \
             --allow-principal User:alice --allow-principal User:bob --operation Read \
             --operation describe --topic orders --deny-principal User:eve \
             --deny-host 10.0.0.1 --json",
        ))
        .unwrap();
        assert_eq!(invocation.bootstrap, "h:1");
        assert_eq!(
            invocation.command_config.as_deref(),
            Some("admin.properties")
        );
        assert!(invocation.json);
        let Action::Add(bindings) = invocation.action else {
            panic!("not an add");
        };
        use Operation::{Describe, Read};
        use Permission::{Allow, Deny};
        use ResourceType::Topic;
        assert_eq!(
            bindings,
            vec![
                binding(Topic, "orders", "User:alice", "*", Read, Allow),
                binding(Topic, "orders", "User:alice", "*", Describe, Allow),
                binding(Topic, "orders", "User:bob", "*", Read, Allow),
                binding(Topic, "orders", "User:bob", "*", Describe, Allow),
                binding(Topic, "orders", "User:eve", "10.0.0.1", Read, Deny),
                binding(Topic, "orders", "User:eve", "10.0.0.1", Describe, Deny),
            ]
        );
        let Action::Add(cluster) = action(
            "add --allow-principal User:ops --operation ClusterAction --operation ALTER_CONFIGS \
             --cluster --group g1 --transactional-id tx --resource-pattern-type PREFIXED",
        ) else {
            panic!("not an add");
        };
        assert_eq!(cluster.len(), 6);
        assert!(cluster
            .iter()
            .all(|b| b.pattern_type == PatternType::Prefixed));
        assert!(cluster
            .iter()
            .any(|b| b.resource_type == ResourceType::Cluster
                && b.resource_name == CLUSTER_NAME
                && b.operation == Operation::ClusterAction));
        assert!(cluster
            .iter()
            .any(|b| b.resource_type == ResourceType::TransactionalId
                && b.operation == Operation::AlterConfigs));
    }

    #[test]
    fn filters_match_anything_not_given() {
        assert_eq!(action("list"), Action::List(vec![AclFilter::any()]));
        let Action::List(filters) = action("list --topic orders --principal User:alice") else {
            panic!("not a list");
        };
        assert_eq!(
            filters,
            vec![AclFilter {
                resource_type: ResourceType::Topic,
                pattern_type: PatternType::Literal,
                resource_name: Some("orders".into()),
                principal: Some("User:alice".into()),
                host: None,
                operation: Operation::Any,
                permission: Permission::Any,
            }]
        );
        let Action::Remove(filters) = action(
            "remove --topic orders --allow-principal User:alice --operation Write \
             --resource-pattern-type match",
        ) else {
            panic!("not a remove");
        };
        assert_eq!(
            filters,
            vec![AclFilter {
                resource_type: ResourceType::Topic,
                pattern_type: PatternType::Match,
                resource_name: Some("orders".into()),
                principal: Some("User:alice".into()),
                host: None,
                operation: Operation::Write,
                permission: Permission::Allow,
            }]
        );
        let Action::List(prefixed) = action("list --resource-pattern-type prefixed") else {
            panic!("not a list");
        };
        assert_eq!(prefixed[0].pattern_type, PatternType::Prefixed);
        assert_eq!(prefixed[0].resource_type, ResourceType::Any);
    }

    #[test]
    fn bad_command_lines_are_refused() {
        for (line, says) in [
            ("add --topic t --operation Read", "--allow-principal or --deny-principal"),
            ("add --allow-principal User:a --operation Read", "needs a resource"),
            ("add --allow-principal User:a --topic t", "needs --operation"),
            ("add --allow-principal alice --topic t --operation Read", "User:alice"),
            ("add --allow-principal User:a --topic t --operation Reed", "'Reed'"),
            ("add --allow-principal User:a --topic t --operation Any", "'Any'"),
            (
                "add --allow-principal User:a --topic t --operation Read --resource-pattern-type match",
                "literal or prefixed",
            ),
            ("add --allow-principal User:a --topic t --operation Read --allow-host", "a value is required"),
            ("add --deny-host 1.2.3.4 --allow-principal User:a --topic t --operation Read", "--deny-principal"),
            ("remove --allow-principal User:a", "needs a resource"),
            ("list --resource-pattern-type sometimes", "'sometimes'"),
            ("list --cluster --cluster", "cannot be used multiple times"),
            ("list extra", "unexpected argument 'extra'"),
            ("list --force", "unexpected argument '--force'"),
            ("rename", "unrecognized subcommand 'rename'"),
            ("", "Usage:"),
        ] {
            let error = parse(&args(line)).unwrap_err();
            assert!(error.contains(says), "{line}: {error}");
        }
    }
}
