//! `sluice quota set|describe`: client quotas of a running broker over
//! AlterClientQuotas and DescribeClientQuotas (KIP-546), for the entities
//! Kafka's `kafka-configs.sh --entity-type users|clients` names: a user, a
//! client id, or both, each by name or as the default entity.
//!
//! `set` adds or replaces quota values (`--add producer_byte_rate=1048576`)
//! and removes them (`--delete consumer_byte_rate`); the broker checks the
//! keys and values and answers each entity on its own. `describe` prints
//! every quota of the entities that match the flags given (all quotas
//! without a flag).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use sluice_net::client::quotas::{
    QuotaAlteration, QuotaEntityParts, QuotaEntry, QuotaFilterComponent, QuotaMatch,
};
use sluice_net::client::{Admin, ClientError};

use super::args::{self, AdminOptions};
use super::{json_text, table};
use crate::cli::usage_error;

/// Kafka's entity types.
const USER: &str = "user";
const CLIENT_ID: &str = "client-id";
/// How the default entity is shown, as kafka-configs.sh shows it.
const DEFAULT_NAME: &str = "<default>";

/// `sluice quota ACTION ...`: client quotas of a running broker.
#[derive(Debug, Args)]
pub struct QuotaArgs {
    #[command(flatten)]
    options: AdminOptions,
    #[command(subcommand)]
    action: QuotaAction,
}

#[derive(Debug, Subcommand)]
enum QuotaAction {
    /// Sets (--add KEY=VALUE) and removes (--delete KEY) quotas of one entity: a user, a
    /// client id, or a user and client id together. Keys: producer_byte_rate,
    /// consumer_byte_rate, request_percentage, controller_mutation_rate.
    Set(SetFlags),
    /// Prints the quotas of the entities that match the flags (every quota without
    /// one); --strict leaves out entities that also name the other entity type.
    Describe(DescribeFlags),
}

/// Which user and client id an entity or a filter names.
#[derive(Debug, Args)]
struct EntityFlags {
    /// A user (the principal's name, `alice` for User:alice).
    #[arg(long, value_name = "NAME", value_parser = args::name, conflicts_with = "default_user")]
    user: Option<String>,
    /// The default user: every user without a quota of its own.
    #[arg(long)]
    default_user: bool,
    /// A client id.
    #[arg(long, value_name = "ID", value_parser = args::name, conflicts_with = "default_client_id")]
    client_id: Option<String>,
    /// The default client id.
    #[arg(long)]
    default_client_id: bool,
}

#[derive(Debug, Args)]
struct SetFlags {
    #[command(flatten)]
    entity: EntityFlags,
    /// KEY=VALUE: sets a quota (a number); may be given more than once.
    #[arg(long = "add", value_name = "KEY=VALUE", value_parser = quota_value)]
    adds: Vec<(String, f64)>,
    /// KEY: removes a quota; may be given more than once.
    #[arg(long = "delete", value_name = "KEY", value_parser = args::name)]
    deletes: Vec<String>,
}

#[derive(Debug, Args)]
struct DescribeFlags {
    #[command(flatten)]
    entity: EntityFlags,
    /// Only entities that name no entity type beyond the flags given.
    #[arg(long)]
    strict: bool,
}

/// `KEY=VALUE` with a numeric value.
fn quota_value(text: &str) -> Result<(String, f64), String> {
    let (key, value) = text
        .split_once('=')
        .filter(|(key, _)| !key.trim().is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got '{text}'"))?;
    let number: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("{key}: '{value}' is not a number"))?;
    if !number.is_finite() {
        return Err(format!("{key}: '{value}' is not a finite number"));
    }
    Ok((key.trim().to_string(), number))
}

impl EntityFlags {
    /// The entity a `set` changes: at least one entity type named.
    fn entity(&self) -> Result<QuotaEntityParts, String> {
        let mut parts = Vec::new();
        if let Some(user) = &self.user {
            parts.push((USER.to_string(), Some(user.clone())));
        } else if self.default_user {
            parts.push((USER.to_string(), None));
        }
        if let Some(client_id) = &self.client_id {
            parts.push((CLIENT_ID.to_string(), Some(client_id.clone())));
        } else if self.default_client_id {
            parts.push((CLIENT_ID.to_string(), None));
        }
        if parts.is_empty() {
            return Err(
                "'quota set' needs an entity: --user, --default-user, --client-id or \
                        --default-client-id"
                    .to_string(),
            );
        }
        Ok(parts)
    }

    /// The filter a `describe` sends: one component per entity type named.
    fn filter(&self) -> Vec<QuotaFilterComponent> {
        let mut components = Vec::new();
        for (entity_type, name, default) in [
            (USER, &self.user, self.default_user),
            (CLIENT_ID, &self.client_id, self.default_client_id),
        ] {
            let matching = match (name, default) {
                (Some(name), _) => QuotaMatch::Exact(name.clone()),
                (None, true) => QuotaMatch::Default,
                (None, false) => continue,
            };
            components.push(QuotaFilterComponent {
                entity_type: entity_type.to_string(),
                matching,
            });
        }
        // No component: every entity (an `Any` on one type would leave
        // out the entities that do not name that type).
        components
    }
}

/// What the command line asks of the broker.
#[derive(Debug, PartialEq)]
enum Action {
    Set(QuotaAlteration),
    Describe {
        components: Vec<QuotaFilterComponent>,
        strict: bool,
    },
}

impl QuotaAction {
    /// What the broker is asked; the error is a usage error.
    fn action(self) -> Result<Action, String> {
        match self {
            QuotaAction::Set(flags) => {
                if flags.adds.is_empty() && flags.deletes.is_empty() {
                    return Err("'quota set' needs --add KEY=VALUE or --delete KEY".to_string());
                }
                let mut changes: Vec<(String, Option<f64>)> = Vec::new();
                for (key, value) in flags.adds {
                    changes.push((key, Some(value)));
                }
                for key in flags.deletes {
                    changes.push((key, None));
                }
                let mut keys: Vec<&str> = changes.iter().map(|(key, _)| key.as_str()).collect();
                keys.sort_unstable();
                if let Some(twice) = keys.windows(2).find(|pair| pair[0] == pair[1]) {
                    return Err(format!("'{}' is named twice", twice[0]));
                }
                Ok(Action::Set(QuotaAlteration {
                    entity: flags.entity.entity()?,
                    changes,
                }))
            }
            QuotaAction::Describe(flags) => Ok(Action::Describe {
                components: flags.entity.filter(),
                strict: flags.strict,
            }),
        }
    }
}

/// Runs `sluice quota`.
pub fn run(args: QuotaArgs) -> ExitCode {
    let action = args
        .action
        .action()
        .unwrap_or_else(|message| usage_error(&["quota"], message));
    let connection = args.options.connection;
    let json = args.options.json;
    let doing = match &action {
        Action::Set(_) => "set quotas",
        Action::Describe { .. } => "describe quotas",
    };
    super::run_against_broker(
        &connection.bootstrap,
        connection.command_config.as_deref(),
        doing,
        |admin| match &action {
            Action::Set(alteration) => set(admin, alteration, json),
            Action::Describe { components, strict } => describe(admin, components, *strict, json),
        },
    )
}

/// `user=alice,client-id=<default>`.
fn entity_text(entity: &QuotaEntityParts) -> String {
    entity
        .iter()
        .map(|(entity_type, name)| {
            format!("{entity_type}={}", name.as_deref().unwrap_or(DEFAULT_NAME))
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn entity_json(entity: &QuotaEntityParts) -> Value {
    Value::Array(
        entity
            .iter()
            .map(|(entity_type, name)| json!({ "type": entity_type, "name": name }))
            .collect(),
    )
}

fn set(admin: &mut Admin, alteration: &QuotaAlteration, json: bool) -> Result<String, ClientError> {
    let answers = admin.alter_client_quotas(std::slice::from_ref(alteration), false)?;
    let answer = answers.into_iter().next().unwrap_or(Ok(()));
    answer.map_err(ClientError::Broker)?;
    let entity = entity_text(&alteration.entity);
    if json {
        let changes: Vec<Value> = alteration
            .changes
            .iter()
            .map(|(key, value)| json!({ "key": key, "value": value }))
            .collect();
        return Ok(json_text(&json!({
            "entity": entity_json(&alteration.entity),
            "changes": changes,
        })));
    }
    let mut out = String::new();
    for (key, value) in &alteration.changes {
        match value {
            Some(value) => out.push_str(&format!("set {key}={value} for {entity}\n")),
            None => out.push_str(&format!("removed {key} for {entity}\n")),
        }
    }
    Ok(out)
}

fn describe(
    admin: &mut Admin,
    components: &[QuotaFilterComponent],
    strict: bool,
    json: bool,
) -> Result<String, ClientError> {
    let mut entries: Vec<QuotaEntry> = admin.describe_client_quotas(components, strict)?;
    entries.sort_by_key(|entry| entity_text(&entry.entity));
    if json {
        let entries: Vec<Value> = entries
            .iter()
            .map(|entry| json!({ "entity": entity_json(&entry.entity), "quotas": entry.values }))
            .collect();
        return Ok(json_text(&json!({ "quotas": entries })));
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .flat_map(|entry| {
            let entity = entity_text(&entry.entity);
            entry
                .values
                .iter()
                .map(move |(key, value)| vec![entity.clone(), key.clone(), value.to_string()])
        })
        .collect();
    Ok(table(&["ENTITY", "QUOTA", "VALUE"], &rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Test {
        #[command(subcommand)]
        action: QuotaAction,
    }

    fn action(args: &[&str]) -> Result<Action, String> {
        let parsed = Test::try_parse_from(std::iter::once("quota").chain(args.iter().copied()))
            .map_err(|error| error.to_string())?;
        parsed.action.action()
    }

    #[test]
    fn set_names_one_entity_and_its_changes() {
        assert_eq!(
            action(&[
                "set",
                "--user",
                "alice",
                "--default-client-id",
                "--add",
                "producer_byte_rate=1048576",
                "--delete",
                "consumer_byte_rate",
            ]),
            Ok(Action::Set(QuotaAlteration {
                entity: vec![
                    ("user".to_string(), Some("alice".to_string())),
                    ("client-id".to_string(), None),
                ],
                changes: vec![
                    ("producer_byte_rate".to_string(), Some(1_048_576.0)),
                    ("consumer_byte_rate".to_string(), None),
                ],
            }))
        );
        for (args, says) in [
            (
                &["set", "--add", "producer_byte_rate=1"][..],
                "needs an entity",
            ),
            (&["set", "--user", "a"][..], "needs --add"),
            (
                &["set", "--user", "a", "--add", "producer_byte_rate=fast"][..],
                "not a number",
            ),
            (
                &["set", "--user", "a", "--add", "=5"][..],
                "expected KEY=VALUE",
            ),
            (
                &["set", "--user", "a", "--add", "x=inf"][..],
                "not a finite number",
            ),
            (
                &["set", "--user", "a", "--add", "x=1", "--delete", "x"][..],
                "named twice",
            ),
            (
                &["set", "--user", "a", "--default-user", "--add", "x=1"][..],
                "cannot be used",
            ),
        ] {
            let error = action(args).expect_err(&format!("{args:?}"));
            assert!(error.contains(says), "{args:?}: {error}");
        }
    }

    #[test]
    fn describe_filters_by_the_flags_given() {
        assert_eq!(
            action(&["describe"]),
            Ok(Action::Describe {
                components: Vec::new(),
                strict: false
            })
        );
        assert_eq!(
            action(&[
                "describe",
                "--default-user",
                "--client-id",
                "app",
                "--strict"
            ]),
            Ok(Action::Describe {
                components: vec![
                    QuotaFilterComponent {
                        entity_type: "user".to_string(),
                        matching: QuotaMatch::Default,
                    },
                    QuotaFilterComponent {
                        entity_type: "client-id".to_string(),
                        matching: QuotaMatch::Exact("app".to_string()),
                    },
                ],
                strict: true
            })
        );
    }
}
