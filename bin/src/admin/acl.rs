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

use super::stream::{self, FlagSpec};
use super::{command_config, emit, json_text, report_failure, table};

pub const USAGE: &str = "\
ACL COMMANDS (CreateAcls, DeleteAcls, DescribeAcls; the broker runs with --authorizer acl):
    sluice acl add (--allow-principal P ... | --deny-principal P ...) --operation OP ...
            RESOURCE ... [--allow-host H ...] [--deny-host H ...]
            [--resource-pattern-type literal|prefixed]
        Adds an ACL for every resource, principal, host and operation given: ALLOW for
        --allow-principal, DENY for --deny-principal. Hosts default to * (every host).
    sluice acl remove RESOURCE ... [--allow-principal P ...] [--deny-principal P ...]
            [--principal P ...] [--allow-host H ...] [--deny-host H ...] [--operation OP ...]
            [--resource-pattern-type literal|prefixed|match|any]
        Removes the ACLs of the resources that match every flag given (a flag not given
        matches anything; --principal matches ALLOW and DENY ACLs) and prints them.
    sluice acl list [RESOURCE ...] [same filters as remove]
        Prints one line per ACL; without a resource, every ACL of the broker.
    RESOURCE: --topic NAME | --group NAME | --transactional-id NAME | --cluster
    P: a principal, User:NAME (User:* for every user). OP: Read, Write, Create, Delete,
    Alter, Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, All.
    The pattern type defaults to literal when a resource is given; list without a resource
    shows every pattern type. match selects the ACLs that apply to the named resource
    (literal, * and prefixed ones); any the ACLs of exactly that name, of any pattern type.
    Options: --bootstrap-server HOST:PORT (or --bootstrap), --command-config FILE (Kafka
    client properties: security.protocol, sasl.mechanism, sasl.jaas.config or
    sasl.username and sasl.password), --json.
";

/// Flags that take a value, and may be repeated where the usage says so.
const VALUE_FLAGS: &[&str] = &[
    "bootstrap",
    "bootstrap-server",
    "command-config",
    "allow-principal",
    "deny-principal",
    "principal",
    "allow-host",
    "deny-host",
    "operation",
    "topic",
    "group",
    "transactional-id",
    "resource-pattern-type",
];

/// Flags without a value.
const SWITCHES: &[&str] = &["cluster", "json"];

/// Flags given once at most.
const SINGLE_FLAGS: &[&str] = &[
    "bootstrap",
    "bootstrap-server",
    "command-config",
    "resource-pattern-type",
    "cluster",
    "json",
];

fn flag_specs() -> Vec<FlagSpec> {
    VALUE_FLAGS
        .iter()
        .map(|&long| FlagSpec {
            long,
            short: None,
            takes_value: true,
        })
        .chain(SWITCHES.iter().map(|&long| FlagSpec {
            long,
            short: None,
            takes_value: false,
        }))
        .collect()
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

/// The flags' values, by flag, in the order given.
struct Flags(Vec<(&'static str, String)>);

impl Flags {
    fn all(&self, flag: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(name, _)| *name == flag)
            .map(|(_, value)| value.clone())
            .collect()
    }

    fn one(&self, flag: &str) -> Option<String> {
        self.all(flag).pop()
    }

    fn has(&self, flag: &str) -> bool {
        self.0.iter().any(|(name, _)| *name == flag)
    }
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
        .ok_or_else(|| format!("--operation: unknown operation '{text}'"))
}

/// A principal is `Type:name`, as Kafka parses it.
fn principal_of(flag: &str, text: &str) -> Result<String, String> {
    match text.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(text.to_string()),
        _ => Err(format!(
            "--{flag} expects a principal such as User:alice, got '{text}'"
        )),
    }
}

fn resources_of(flags: &Flags) -> Result<Vec<(ResourceType, String)>, String> {
    let mut resources = Vec::new();
    for (flag, resource_type) in [
        ("topic", ResourceType::Topic),
        ("group", ResourceType::Group),
        ("transactional-id", ResourceType::TransactionalId),
    ] {
        for name in flags.all(flag) {
            if name.is_empty() {
                return Err(format!("--{flag} expects a name"));
            }
            resources.push((resource_type, name));
        }
    }
    if flags.has("cluster") {
        resources.push((ResourceType::Cluster, CLUSTER_NAME.to_string()));
    }
    Ok(resources)
}

/// One side of the principals: who, from where, with which permission.
struct Side {
    permission: Permission,
    principals: Vec<String>,
    /// Empty: the default (`*` for add, any host for a filter).
    hosts: Vec<String>,
}

fn sides_of(flags: &Flags) -> Result<Vec<Side>, String> {
    let mut sides = Vec::new();
    for (side, permission) in [("allow", Permission::Allow), ("deny", Permission::Deny)] {
        let principal_flag = format!("{side}-principal");
        let host_flag = format!("{side}-host");
        let principals = flags
            .all(&principal_flag)
            .iter()
            .map(|text| principal_of(&principal_flag, text))
            .collect::<Result<Vec<_>, _>>()?;
        let hosts = flags.all(&host_flag);
        if hosts.iter().any(String::is_empty) {
            return Err(format!("--{host_flag} expects a host or *"));
        }
        if principals.is_empty() && !hosts.is_empty() {
            return Err(format!("--{host_flag} needs --{principal_flag}"));
        }
        if !principals.is_empty() {
            sides.push(Side {
                permission,
                principals,
                hosts,
            });
        }
    }
    Ok(sides)
}

fn pattern_type_of(flags: &Flags) -> Result<Option<PatternType>, String> {
    flags
        .one("resource-pattern-type")
        .map(|text| {
            PatternType::of_name(&text).ok_or_else(|| {
                format!(
                    "--resource-pattern-type expects literal, prefixed, match or any, got '{text}'"
                )
            })
        })
        .transpose()
}

fn parse(args: &[String]) -> Result<Invocation, String> {
    let action = match args.first().map(String::as_str) {
        Some(action @ ("add" | "remove" | "list")) => action,
        Some(other) => return Err(format!("unknown command 'acl {other}'")),
        None => return Err("'acl' needs a subcommand: add, remove or list".to_string()),
    };
    let command = format!("acl {action}");
    let specs = flag_specs();
    let split = stream::split(&command, &args[1..], &specs)?;
    if let Some(extra) = split.positionals.first() {
        return Err(format!("'{command}' takes no argument '{extra}'"));
    }
    for flag in SINGLE_FLAGS {
        if split.flags.iter().filter(|(name, _)| name == flag).count() > 1 {
            return Err(format!("--{flag} is given twice"));
        }
    }
    let flags = Flags(split.flags);
    let operations = flags
        .all("operation")
        .iter()
        .map(|text| operation_of(text))
        .collect::<Result<Vec<_>, _>>()?;
    let resources = resources_of(&flags)?;
    let sides = sides_of(&flags)?;
    let pattern_type = pattern_type_of(&flags)?;
    let action = match action {
        "add" => {
            if flags.has("principal") {
                return Err("'acl add' takes --allow-principal or --deny-principal".to_string());
            }
            Action::Add(bindings_of(&resources, &sides, &operations, pattern_type)?)
        }
        "remove" => {
            if resources.is_empty() {
                return Err("'acl remove' needs a resource: --topic, --group, \
                            --transactional-id or --cluster"
                    .to_string());
            }
            Action::Remove(filters_of(
                &flags,
                &resources,
                &sides,
                &operations,
                pattern_type,
            )?)
        }
        _ => Action::List(filters_of(
            &flags,
            &resources,
            &sides,
            &operations,
            pattern_type,
        )?),
    };
    Ok(Invocation {
        bootstrap: flags
            .one("bootstrap-server")
            .or_else(|| flags.one("bootstrap"))
            .unwrap_or_else(|| super::BOOTSTRAP_DEFAULT.to_string()),
        command_config: flags.one("command-config"),
        json: flags.has("json"),
        action,
    })
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
    flags: &Flags,
    resources: &[(ResourceType, String)],
    sides: &[Side],
    operations: &[Operation],
    pattern_type: Option<PatternType>,
) -> Result<Vec<AclFilter>, String> {
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
    for text in flags.all("principal") {
        principals.push((
            Permission::Any,
            Some(principal_of("principal", &text)?),
            vec![None],
        ));
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
    Ok(filters)
}

/// Runs `sluice acl ARGS` (`args` after the word `acl`).
pub(super) fn main(args: &[String]) -> ExitCode {
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        emit(USAGE);
        return ExitCode::SUCCESS;
    }
    let invocation = match parse(args) {
        Ok(invocation) => invocation,
        Err(message) => {
            eprintln!("sluice: {message}\n\n{USAGE}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    let doing = match &invocation.action {
        Action::Add(_) => "add ACLs",
        Action::Remove(_) => "remove ACLs",
        Action::List(_) => "list ACLs",
    };
    let options = match command_config::client_options(invocation.command_config.as_deref()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("sluice: {message}");
            return ExitCode::from(super::EXIT_FAILED);
        }
    };
    let result = Admin::connect(&invocation.bootstrap, options).and_then(|mut admin| {
        match &invocation.action {
            Action::Add(bindings) => add(&mut admin, bindings, invocation.json),
            Action::Remove(filters) => remove(&mut admin, filters, invocation.json),
            Action::List(filters) => list(&mut admin, filters, invocation.json),
        }
    });
    match result {
        Ok(output) => {
            emit(&output);
            ExitCode::SUCCESS
        }
        Err(error) => report_failure(doing, &error),
    }
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

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
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
            ("add --allow-principal User:a --topic t --operation Read --allow-host", "needs a value"),
            ("add --deny-host 1.2.3.4 --allow-principal User:a --topic t --operation Read", "--deny-host needs --deny-principal"),
            ("remove --allow-principal User:a", "needs a resource"),
            ("list --resource-pattern-type sometimes", "'sometimes'"),
            ("list --cluster --cluster", "given twice"),
            ("list extra", "takes no argument 'extra'"),
            ("list --force", "no option --force"),
            ("rename", "unknown command 'acl rename'"),
            ("", "needs a subcommand"),
        ] {
            let error = parse(&args(line)).unwrap_err();
            assert!(error.contains(says), "{line}: {error}");
        }
    }
}
