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

use std::process::ExitCode;

use serde_json::json;
use sluice_net::client::{
    Admin, ClientError, KafkaError, ScramDeletion, ScramUpsertion, UserAlteration,
};
use sluice_net::constants::{
    SASL_PASSWORD_BYTES_MAX, SCRAM_ITERATIONS_DEFAULT, SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN,
};
use sluice_net::sasl::credentials::check_user_name;
use sluice_net::sasl::Mechanism;

use super::stream::{self, FlagSpec};
use super::{command_config, emit, json_text, report_failure, table};

pub const USAGE: &str = "\
USER COMMANDS, ONLINE (AlterUserScramCredentials, DescribeUserScramCredentials):
    sluice user create --bootstrap-server HOST:PORT --user NAME
            [--mechanism SCRAM-SHA-256|SCRAM-SHA-512] [--iterations N]
            [--password PASSWORD | --password-file FILE | --password-stdin]
        Creates or replaces NAME's SCRAM credentials (both mechanisms unless --mechanism)
        on the running broker. The password is salted and hashed here; only the salted
        password is sent. Without --password or --password-file it is the first line of
        stdin. Iterations: 4096 (default) to 16384.
    sluice user delete --bootstrap-server HOST:PORT --user NAME [--mechanism M]
        Removes NAME's credential for M, or all of NAME's credentials.
    sluice user list --bootstrap-server HOST:PORT [--user NAME ...] [--json]
        Lists users with their mechanisms and iteration counts (never a salt or key).
    Options: --command-config FILE (Kafka client properties, as for `sluice acl`);
    --bootstrap works as --bootstrap-server.
";

/// Kafka's RESOURCE_NOT_FOUND error code: the user has no credential.
const RESOURCE_NOT_FOUND: i16 = 91;

/// Whether `args` (`user ...`) name the broker to talk to rather than a
/// data directory.
pub fn is_online(args: &[String]) -> bool {
    args.iter().any(|arg| {
        let flag = arg.split_once('=').map_or(arg.as_str(), |(flag, _)| flag);
        matches!(
            flag,
            "--bootstrap-server" | "--bootstrap" | "--command-config"
        )
    })
}

/// Where the password comes from.
#[derive(Clone, PartialEq, Eq)]
enum PasswordSource {
    Given(String),
    File(String),
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

const fn value_flag(long: &'static str) -> FlagSpec {
    FlagSpec {
        long,
        short: None,
        takes_value: true,
    }
}

const fn switch(long: &'static str) -> FlagSpec {
    FlagSpec {
        long,
        short: None,
        takes_value: false,
    }
}

const FLAGS: &[FlagSpec] = &[
    value_flag("bootstrap"),
    value_flag("bootstrap-server"),
    value_flag("command-config"),
    value_flag("user"),
    value_flag("mechanism"),
    value_flag("iterations"),
    value_flag("password"),
    value_flag("password-file"),
    switch("password-stdin"),
    switch("json"),
    // Named only to say that it is the offline form's.
    value_flag("data-dir"),
];

/// The flags each action takes besides the connection's and `--json`.
fn allowed(action: &str) -> &'static [&'static str] {
    match action {
        "create" => &[
            "user",
            "mechanism",
            "iterations",
            "password",
            "password-file",
            "password-stdin",
        ],
        "delete" => &["user", "mechanism"],
        _ => &["user"],
    }
}

/// Refuses a flag given a second time.
fn once<T>(flag: &str, slot: &Option<T>) -> Result<(), String> {
    match slot {
        Some(_) => Err(format!("--{flag} is given twice")),
        None => Ok(()),
    }
}

fn parse(args: &[String]) -> Result<Invocation, String> {
    let action = match args.get(1).map(String::as_str) {
        Some(action @ ("create" | "delete" | "list")) => action,
        Some(other) => return Err(format!("unknown user command '{other}'")),
        None => return Err("'user' needs a subcommand: create, delete or list".to_string()),
    };
    let command = format!("user {action}");
    let split = stream::split(&command, &args[2..], FLAGS)?;
    if let Some(extra) = split.positionals.first() {
        return Err(format!("'{command}' takes no argument '{extra}'"));
    }
    let mut bootstrap = None;
    let mut command_config = None;
    let mut json = false;
    let mut users = Vec::new();
    let mut mechanism = None;
    let mut iterations = None;
    let mut password = None;
    for (flag, value) in split.flags {
        let common = matches!(
            flag,
            "bootstrap" | "bootstrap-server" | "command-config" | "json"
        );
        if flag == "data-dir" {
            return Err(
                "give --data-dir (offline, the broker stopped) or --bootstrap-server \
                        (online), not both"
                    .to_string(),
            );
        }
        if !common && !allowed(action).contains(&flag) {
            return Err(format!("'{command}' takes no --{flag}"));
        }
        match flag {
            "bootstrap" | "bootstrap-server" => {
                once(flag, &bootstrap)?;
                bootstrap = Some(value);
            }
            "command-config" => {
                once(flag, &command_config)?;
                command_config = Some(value);
            }
            "json" if action == "list" => json = true,
            "json" => return Err(format!("'{command}' takes no --json")),
            "user" => {
                check_user_name(&value).map_err(|reason| format!("--user: {reason}"))?;
                users.push(value);
            }
            "mechanism" => {
                once(flag, &mechanism)?;
                mechanism = Some(
                    Mechanism::from_name(&value)
                        .filter(|mechanism| mechanism.is_scram())
                        .ok_or(format!(
                            "--mechanism takes SCRAM-SHA-256 or SCRAM-SHA-512, not '{value}'"
                        ))?,
                );
            }
            "iterations" => {
                once(flag, &iterations)?;
                iterations = Some(
                    value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (SCRAM_ITERATIONS_MIN..=SCRAM_ITERATIONS_MAX).contains(n))
                        .ok_or(format!(
                            "--iterations takes {SCRAM_ITERATIONS_MIN} to \
                             {SCRAM_ITERATIONS_MAX}, not '{value}'"
                        ))?,
                );
            }
            "password" | "password-file" | "password-stdin" => {
                if password.is_some() {
                    return Err(
                        "give one of --password, --password-file and --password-stdin".to_string(),
                    );
                }
                password = Some(match flag {
                    "password" => PasswordSource::Given(value),
                    "password-file" => PasswordSource::File(value),
                    _ => PasswordSource::Stdin,
                });
            }
            _ => unreachable!("every flag of FLAGS is matched above"),
        }
    }
    let bootstrap = bootstrap.unwrap_or_else(|| super::BOOTSTRAP_DEFAULT.to_string());
    let one_user = || match users.as_slice() {
        [user] => Ok(user.clone()),
        [] => Err(format!("'{command}' needs --user NAME")),
        _ => Err(format!("'{command}' takes one --user")),
    };
    let action = match action {
        "create" => Action::Create {
            user: one_user()?,
            mechanisms: mechanism.map_or(Mechanism::SCRAM.to_vec(), |m| vec![m]),
            iterations: iterations.unwrap_or(SCRAM_ITERATIONS_DEFAULT),
            password: password.unwrap_or(PasswordSource::Stdin),
        },
        "delete" => Action::Delete {
            user: one_user()?,
            mechanism,
        },
        _ => Action::List { users },
    };
    Ok(Invocation {
        bootstrap,
        command_config,
        json,
        action,
    })
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
        PasswordSource::File(path) => crate::user::read_password(Some(std::path::Path::new(path))),
        PasswordSource::Stdin => crate::user::read_password(None),
    }
}

/// Runs an online `sluice user ...` (`args` from the word `user`).
pub fn main(args: &[String]) -> ExitCode {
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
    let options = match command_config::client_options(invocation.command_config.as_deref()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("sluice: {message}");
            return ExitCode::from(super::EXIT_FAILED);
        }
    };
    let result = Admin::connect(&invocation.bootstrap, options).and_then(|mut admin| {
        match &invocation.action {
            Action::Create { user, .. } => create(&mut admin, user, &upsertions),
            Action::Delete { user, mechanism } => delete(&mut admin, user, *mechanism),
            Action::List { users } => list(&mut admin, users, invocation.json),
        }
    });
    match result {
        Ok(output) => {
            emit(&output);
            ExitCode::SUCCESS
        }
        Err(error) => report_failure(&doing, &error),
    }
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

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn online_commands_are_told_from_offline_ones() {
        assert!(is_online(&args("user list --bootstrap-server h:1")));
        assert!(is_online(&args("user list --bootstrap=h:1")));
        assert!(is_online(&args("user list --command-config c.properties")));
        assert!(!is_online(&args("user list --data-dir /d")));
    }

    #[test]
    fn commands_parse() {
        let invocation = parse(&args(
            "user create --bootstrap-server h:1 --command-config c --user alice \
             --mechanism SCRAM-SHA-512 --iterations 8192 --password s3cret",
        ))
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
        let defaults = parse(&args("user create --bootstrap h:1 --user bob")).unwrap();
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
            parse(&args("user delete --bootstrap h:1 --user bob"))
                .unwrap()
                .action,
            Action::Delete {
                user: "bob".into(),
                mechanism: None
            }
        );
        let list = parse(&args("user list --bootstrap h:1 --user a --user b --json")).unwrap();
        assert!(list.json);
        assert_eq!(
            list.action,
            Action::List {
                users: vec!["a".into(), "b".into()]
            }
        );
    }

    #[test]
    fn bad_command_lines_are_refused() {
        for (line, says) in [
            ("user create --bootstrap h:1", "needs --user"),
            (
                "user create --bootstrap h:1 --user a --password x --password-stdin",
                "give one of",
            ),
            (
                "user create --bootstrap h:1 --user a --iterations 100",
                "--iterations",
            ),
            (
                "user create --bootstrap h:1 --user a --mechanism PLAIN",
                "--mechanism",
            ),
            (
                "user create --bootstrap h:1 --user a --json",
                "takes no --json",
            ),
            (
                "user delete --bootstrap h:1 --user a --password x",
                "takes no --password",
            ),
            ("user list --bootstrap h:1 --data-dir /d", "not both"),
            ("user list --bootstrap h:1 --bootstrap h:2", "given twice"),
            ("user rename --bootstrap h:1", "unknown user command"),
        ] {
            let error = parse(&args(line)).unwrap_err();
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
