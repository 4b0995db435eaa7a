//! `sluice user create|delete|list --bootstrap-server ...`: SCRAM users of
//! a running broker over AlterUserScramCredentials and
//! DescribeUserScramCredentials (KIP-554), beside the offline form of
//! [`crate::user`], which edits a stopped broker's credential file.
//!
//! The password is salted (a fresh salt from the OS's CSPRNG) and hashed
//! here; only the salted password is sent. It comes from `--password`,
//! from the first line of `--password-file`, or from stdin, and is never
//! printed. A broker refuses every change of a user named twice in one
//! request, so each mechanism of a user is changed by its own request.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;
use sluice_net::client::{
    Admin, ClientError, KafkaError, ScramDeletion, ScramUpsertion, UserAlteration,
};
use sluice_net::constants::SASL_PASSWORD_BYTES_MAX;
use sluice_net::sasl::Mechanism;

use super::{json_text, table};
use crate::user::{Target, UserAction};

/// Kafka's RESOURCE_NOT_FOUND error code: the user has no credential.
const RESOURCE_NOT_FOUND: i16 = 91;

/// Where the password comes from.
#[derive(Clone, PartialEq, Eq)]
enum PasswordSource {
    Given(String),
    File(PathBuf),
    Stdin,
}

/// The password stays out of `Debug` output (test failures print it).
impl std::fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordSource::Given(_) => f.write_str("Given(..)"),
            PasswordSource::File(path) => write!(f, "File({path:?})"),
            PasswordSource::Stdin => f.write_str("Stdin"),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Action {
    Create {
        user: String,
        mechanisms: Vec<Mechanism>,
        iterations: u32,
        password: PasswordSource,
    },
    Delete {
        user: String,
        mechanism: Option<Mechanism>,
    },
    List {
        users: Vec<String>,
    },
}

#[derive(Debug, PartialEq, Eq)]
struct Invocation {
    bootstrap: String,
    command_config: Option<String>,
    json: bool,
    action: Action,
}

/// The online invocation `action` asks for.
fn online(target: Target, action: UserAction) -> Invocation {
    let (json, action) = match action {
        UserAction::Create(create) => {
            let password = match (create.password, create.password_file) {
                (Some(password), _) => PasswordSource::Given(password),
                (None, Some(path)) => PasswordSource::File(path),
                (None, None) => PasswordSource::Stdin,
            };
            let action = Action::Create {
                mechanisms: create.mechanism.mechanisms(),
                user: create.user.name,
                iterations: create.iterations,
                password,
            };
            (false, action)
        }
        UserAction::Delete { user, mechanism } => {
            let action = Action::Delete {
                user: user.name,
                mechanism: mechanism.only,
            };
            (false, action)
        }
        UserAction::List { users, json } => (json, Action::List { users }),
    };
    Invocation {
        bootstrap: target
            .bootstrap
            .unwrap_or_else(|| super::BOOTSTRAP_DEFAULT.to_string()),
        command_config: target.command_config,
        json,
        action,
    }
}

/// The password of a create, checked as the offline form checks it.
fn read_password(source: &PasswordSource) -> Result<String, String> {
    match source {
        PasswordSource::Given(password) => {
            if password.is_empty() || password.len() > SASL_PASSWORD_BYTES_MAX {
                return Err(format!(
                    "--password takes 1 to {SASL_PASSWORD_BYTES_MAX} bytes"
                ));
            }
            Ok(password.clone())
        }
        PasswordSource::File(path) => crate::user::read_password(Some(path)),
        PasswordSource::Stdin => crate::user::read_password(None),
    }
}

/// Runs an online `sluice user ...`.
pub fn run(target: Target, action: UserAction) -> ExitCode {
    let invocation = online(target, action);
    let doing = match &invocation.action {
        Action::Create { user, .. } => format!("create user '{user}'"),
        Action::Delete { user, .. } => format!("delete user '{user}'"),
        Action::List { .. } => "list users".to_string(),
    };
    // The password and the command config first: a bad one connects to
    // nothing. The credentials are derived before connecting, so the
    // password is not kept while the broker is talked to.
    let upsertions = match &invocation.action {
        Action::Create {
            user,
            mechanisms,
            iterations,
            password,
        } => match upsertions_of(user, mechanisms, *iterations, password) {
            Ok(upsertions) => upsertions,
            Err(message) => {
                eprintln!("sluice: {message}");
                return ExitCode::from(super::EXIT_FAILED);
            }
        },
        _ => Vec::new(),
    };
    super::run_against_broker(
        &invocation.bootstrap,
        invocation.command_config.as_deref(),
        &doing,
        |admin| match &invocation.action {
            Action::Create { user, .. } => create(admin, user, &upsertions),
            Action::Delete { user, mechanism } => delete(admin, user, *mechanism),
            Action::List { users } => list(admin, users, invocation.json),
        },
    )
}

/// The one answer for `user`, or the broker's refusal.
fn outcome_for(user: &str, answers: Vec<UserAlteration>) -> Result<(), ClientError> {
    match answers.into_iter().find(|answer| answer.user == user) {
        Some(answer) => answer.result.map_err(ClientError::Broker),
        None => Err(ClientError::Broker(KafkaError::new(
            -1,
            Some(format!("the broker's answer does not name user '{user}'")),
        ))),
    }
}

fn names(mechanisms: &[Mechanism]) -> String {
    let names: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
    names.join(" and ")
}

/// One upsertion per mechanism, each with its own salt.
fn upsertions_of(
    user: &str,
    mechanisms: &[Mechanism],
    iterations: u32,
    password: &PasswordSource,
) -> Result<Vec<ScramUpsertion>, String> {
    let password = read_password(password)?;
    mechanisms
        .iter()
        .map(|mechanism| {
            ScramUpsertion::from_password(user, *mechanism, password.as_bytes(), iterations)
        })
        .collect()
}

fn create(
    admin: &mut Admin,
    user: &str,
    upsertions: &[ScramUpsertion],
) -> Result<String, ClientError> {
    for upsertion in upsertions {
        let answers = admin.alter_user_scram_credentials(&[], std::slice::from_ref(upsertion))?;
        outcome_for(user, answers)?;
    }
    let mechanisms: Vec<Mechanism> = upsertions.iter().map(|u| u.mechanism).collect();
    let iterations = upsertions.first().map_or(0, |u| u.iterations);
    Ok(format!(
        "stored {} credentials for user '{user}' ({iterations} iterations)\n",
        names(&mechanisms)
    ))
}

fn delete(
    admin: &mut Admin,
    user: &str,
    mechanism: Option<Mechanism>,
) -> Result<String, ClientError> {
    let mechanisms = match mechanism {
        Some(mechanism) => vec![mechanism],
        None => {
            let described = admin.describe_user_scram_credentials(Some(&[user]))?;
            let credentials = described
                .into_iter()
                .find(|described| described.user == user)
                .map(|described| described.credentials)
                .unwrap_or(Err(KafkaError::new(RESOURCE_NOT_FOUND, None)));
            let mechanisms: Vec<Mechanism> = credentials?
                .into_iter()
                .map(|(mechanism, _)| mechanism)
                .collect();
            if mechanisms.is_empty() {
                return Err(ClientError::Broker(KafkaError::new(
                    RESOURCE_NOT_FOUND,
                    Some(format!("user '{user}' has no credentials")),
                )));
            }
            mechanisms
        }
    };
    for mechanism in &mechanisms {
        let deletion = ScramDeletion {
            user: user.to_string(),
            mechanism: *mechanism,
        };
        let answers = admin.alter_user_scram_credentials(&[deletion], &[])?;
        outcome_for(user, answers)?;
    }
    Ok(format!(
        "removed the {} credentials of user '{user}'\n",
        names(&mechanisms)
    ))
}

fn list(admin: &mut Admin, users: &[String], json: bool) -> Result<String, ClientError> {
    let named: Vec<&str> = users.iter().map(String::as_str).collect();
    let described =
        admin.describe_user_scram_credentials((!named.is_empty()).then_some(named.as_slice()))?;
    let mut described: Vec<_> = described
        .into_iter()
        .map(|user| (user.user, user.credentials.map_err(ClientError::Broker)))
        .collect();
    described.sort_by(|left, right| left.0.cmp(&right.0));
    // A named user that does not exist is an error, as in Kafka's tools.
    let mut found = Vec::with_capacity(described.len());
    for (user, credentials) in described {
        found.push((user, credentials?));
    }
    if json {
        let list: Vec<_> = found
            .iter()
            .map(|(user, credentials)| {
                json!({
                    "user": user,
                    "credentials": credentials.iter().map(|(mechanism, iterations)| json!({
                        "mechanism": mechanism.name(),
                        "iterations": iterations,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        return Ok(json_text(&json!({ "users": list })));
    }
    if found.is_empty() {
        return Ok("No users.\n".to_string());
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|(user, credentials)| {
            let described: Vec<String> = credentials
                .iter()
                .map(|(mechanism, iterations)| format!("{mechanism} ({iterations})"))
                .collect();
            vec![user.clone(), described.join(", ")]
        })
        .collect();
    Ok(table(&["USER", "MECHANISMS (ITERATIONS)"], &rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    use clap::Parser;
    use sluice_net::constants::SCRAM_ITERATIONS_DEFAULT;

    /// The online invocation of a `sluice user ...` line.
    fn parse(line: &str) -> Result<Invocation, String> {
        let words = std::iter::once("sluice").chain(line.split_whitespace());
        match crate::cli::Cli::try_parse_from(words).map_err(|error| error.to_string())? {
            crate::cli::Cli {
                command: Some(crate::cli::Command::User { target, action }),
                ..
            } => Ok(online(target, action)),
            other => panic!("{line}: not a user command: {other:?}"),
        }
    }

    #[test]
    fn commands_parse() {
        let invocation = parse(
            "user create --bootstrap-server h:1 --command-config c --user alice \
             --mechanism SCRAM-SHA-512 --iterations 8192 --password s3cret",
        )
        .unwrap();
        assert_eq!(invocation.bootstrap, "h:1");
        assert_eq!(invocation.command_config.as_deref(), Some("c"));
        assert_eq!(
            invocation.action,
            Action::Create {
                user: "alice".into(),
                mechanisms: vec![Mechanism::ScramSha512],
                iterations: 8192,
                password: PasswordSource::Given("s3cret".into()),
            }
        );
        assert!(!format!("{invocation:?}").contains("s3cret"));
        let defaults = parse("user create --bootstrap h:1 --user bob").unwrap();
        assert_eq!(
            defaults.action,
            Action::Create {
                user: "bob".into(),
                mechanisms: Mechanism::SCRAM.to_vec(),
                iterations: SCRAM_ITERATIONS_DEFAULT,
                password: PasswordSource::Stdin,
            }
        );
        assert_eq!(
            parse("user delete --bootstrap h:1 --user bob")
                .unwrap()
                .action,
            Action::Delete {
                user: "bob".into(),
                mechanism: None
            }
        );
        let list = parse("user list --bootstrap h:1 --user a --user b --json").unwrap();
        assert!(list.json);
        assert_eq!(
            list.action,
            Action::List {
                users: vec!["a".into(), "b".into()]
            }
        );
        let config_only = parse("user list --command-config c.properties").unwrap();
        assert_eq!(config_only.bootstrap, super::super::BOOTSTRAP_DEFAULT);
    }

    #[test]
    fn bad_command_lines_are_refused() {
        for (line, says) in [
            ("user create --bootstrap h:1", "--user"),
            (
                "user create --bootstrap h:1 --user a --password x --password-stdin",
                "cannot be used with",
            ),
            (
                "user create --bootstrap h:1 --user a --iterations 100",
                "--iterations",
            ),
            (
                "user create --bootstrap h:1 --user a --mechanism PLAIN",
                "--mechanism",
            ),
            ("user create --bootstrap h:1 --user a --json", "'--json'"),
            (
                "user delete --bootstrap h:1 --user a --password x",
                "'--password'",
            ),
            (
                "user list --bootstrap h:1 --data-dir /d",
                "cannot be used with",
            ),
            (
                "user list --bootstrap h:1 --bootstrap h:2",
                "cannot be used multiple times",
            ),
            ("user rename --bootstrap h:1", "unrecognized subcommand"),
        ] {
            let error = parse(line).unwrap_err();
            assert!(error.contains(says), "{line}: {error}");
        }
    }

    #[test]
    fn a_given_password_is_bounded() {
        assert!(read_password(&PasswordSource::Given(String::new())).is_err());
        let long = "p".repeat(SASL_PASSWORD_BYTES_MAX + 1);
        assert!(read_password(&PasswordSource::Given(long)).is_err());
        assert_eq!(
            read_password(&PasswordSource::Given("pw".into())).unwrap(),
            "pw"
        );
    }
}
