//! `sluice user ...`: SASL users, offline. (With `--bootstrap-server` the
//! same commands manage a running cluster's users instead: see
//! [`crate::admin::users`].) The offline commands stage credentials in a
//! file in a broker's first data directory while the broker is stopped (as
//! Kafka's `kafka-storage format --add-scram` does before a first start),
//! so the first user exists before any client connects: the broker writes
//! them to the cluster's metadata log when it starts and renames the file,
//! so offline `list` and `delete` see only credentials staged since. Only
//! salted SCRAM credentials are stored, never the password, and the
//! password is read from a file or stdin, never from the command line
//! (where `ps` and shell history would show it).
//!
//! Exit status: 0 on success, 1 when the data directory or the password
//! cannot be used, 2 for usage errors.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;
use sluice_engine::DmaStorage;
use sluice_net::constants::{
    SASL_PASSWORD_BYTES_MAX, SCRAM_ITERATIONS_DEFAULT, SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN,
};
use sluice_net::sasl::credentials::check_user_name;
use sluice_net::sasl::{CredentialStore, Mechanism, ScramCredential};

use crate::cli::usage_error;

/// `sluice user ACTION`: SCRAM users, offline with `--data-dir` (the
/// broker stopped; it moves staged users into the metadata log when it
/// starts) or online with
/// `--bootstrap-server` (AlterUserScramCredentials,
/// DescribeUserScramCredentials).
#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Creates or replaces a user's SCRAM credentials (both mechanisms unless
    /// --mechanism; PLAIN logins check either).
    ///
    /// Offline, the credentials are staged in DIR, the broker's first data directory,
    /// created if needed; the broker moves them into the cluster's metadata log when it
    /// starts. Online, the password is salted and hashed here; only the salted
    /// password is sent. The password is the first line of --password-file, or of
    /// stdin.
    Create(CreateArgs),
    /// Removes a user's credential for one mechanism, or all of its credentials.
    Delete {
        #[command(flatten)]
        user: UserName,
        #[command(flatten)]
        mechanism: MechanismArg,
    },
    /// Lists users with their mechanisms and iteration counts (never a salt or key);
    /// offline, only the users staged since the broker last started.
    List {
        /// Only this user (online only); may be given more than once.
        #[arg(long = "user", value_name = "NAME", value_parser = user_name)]
        users: Vec<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// The arguments of `user create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub user: UserName,
    #[command(flatten)]
    pub mechanism: MechanismArg,
    /// SCRAM iterations, 4096 to 16384.
    #[arg(
        long,
        value_name = "N",
        default_value_t = SCRAM_ITERATIONS_DEFAULT,
        value_parser = clap::value_parser!(u32)
            .range(i64::from(SCRAM_ITERATIONS_MIN)..=i64::from(SCRAM_ITERATIONS_MAX))
    )]
    pub iterations: u32,
    /// The password itself (online only; ps and shell history show it).
    #[arg(long, group = "password_source")]
    pub password: Option<String>,
    /// Reads the password from the first line of FILE.
    #[arg(long, value_name = "FILE", group = "password_source")]
    pub password_file: Option<PathBuf>,
    /// Reads the password from the first line of stdin (the default).
    #[arg(long, group = "password_source")]
    pub password_stdin: bool,
}

/// Where the users are: a stopped broker's data directory, or a running
/// broker. Given after the action (`user create --data-dir DIR`), as every
/// action takes them. Their ids are their own: a global argument's value
/// reaches the top-level matches too, where `data_dir` is the broker's
/// setting.
#[derive(Debug, Args)]
pub struct Target {
    /// The stopped broker's first data directory (offline).
    #[arg(
        id = "user_data_dir",
        long = "data-dir",
        value_name = "DIR",
        conflicts_with_all = ["user_bootstrap", "user_command_config"],
        global = true
    )]
    data_dir: Option<PathBuf>,
    /// The running broker (online).
    #[arg(
        id = "user_bootstrap",
        long = "bootstrap",
        visible_alias = "bootstrap-server",
        value_name = "HOST:PORT",
        global = true
    )]
    pub bootstrap: Option<String>,
    /// Kafka client properties of the online form (how to log in).
    #[arg(
        id = "user_command_config",
        long = "command-config",
        value_name = "FILE",
        global = true
    )]
    pub command_config: Option<String>,
}

impl Target {
    /// Whether the command names the broker to talk to rather than a data
    /// directory.
    pub fn is_online(&self) -> bool {
        self.bootstrap.is_some() || self.command_config.is_some()
    }
}

/// `--user NAME`.
#[derive(Debug, Args)]
pub struct UserName {
    /// The user's name.
    #[arg(long = "user", value_name = "NAME", value_parser = user_name)]
    pub name: String,
}

/// `--mechanism`: one SCRAM mechanism.
#[derive(Debug, Args)]
pub struct MechanismArg {
    /// Only this mechanism (default: both).
    #[arg(long = "mechanism", value_name = "SCRAM-SHA-256|SCRAM-SHA-512", value_parser = scram)]
    pub only: Option<Mechanism>,
}

impl MechanismArg {
    /// The mechanism named, or every SCRAM mechanism.
    pub fn mechanisms(&self) -> Vec<Mechanism> {
        self.only
            .map_or(Mechanism::SCRAM.to_vec(), |mechanism| vec![mechanism])
    }
}

fn user_name(text: &str) -> Result<String, String> {
    check_user_name(text)?;
    Ok(text.to_string())
}

fn scram(text: &str) -> Result<Mechanism, String> {
    Mechanism::from_name(text)
        .filter(|mechanism| mechanism.is_scram())
        .ok_or_else(|| format!("expected SCRAM-SHA-256 or SCRAM-SHA-512, got '{text}'"))
}

const EXIT_FAILED: u8 = 1;

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Create {
        user: String,
        mechanisms: Vec<Mechanism>,
        iterations: u32,
        password_file: Option<PathBuf>,
    },
    Delete {
        user: String,
        mechanism: Option<Mechanism>,
    },
    List {
        json: bool,
    },
}

#[derive(Debug, PartialEq, Eq)]
struct Invocation {
    data_dir: PathBuf,
    command: Command,
}

/// The offline invocation `action` asks for; the error is a usage error.
fn offline(target: Target, action: UserAction) -> Result<Invocation, String> {
    let command = match action {
        UserAction::Create(create) => {
            if create.password.is_some() {
                return Err("--password is for the online form (--bootstrap-server); \
                            offline, give --password-file or stdin"
                    .to_string());
            }
            Command::Create {
                mechanisms: create.mechanism.mechanisms(),
                user: create.user.name,
                iterations: create.iterations,
                password_file: create.password_file,
            }
        }
        UserAction::Delete { user, mechanism } => Command::Delete {
            user: user.name,
            mechanism: mechanism.only,
        },
        UserAction::List { users, json } => {
            if !users.is_empty() {
                return Err("--user is for the online form (--bootstrap-server)".to_string());
            }
            Command::List { json }
        }
    };
    let data_dir = target
        .data_dir
        .ok_or("give --data-dir DIR (offline, the broker stopped) or --bootstrap-server")?;
    Ok(Invocation { data_dir, command })
}

/// The password: the first line of the file or of stdin, without its line
/// end. Bounded, UTF-8 (clients send the password's UTF-8 bytes), not
/// empty.
pub(crate) fn read_password(file: Option<&Path>) -> Result<String, String> {
    let source = file.map_or("stdin".to_string(), |path| path.display().to_string());
    let mut bytes = Vec::new();
    // One more than a password and its line end, to see a longer one.
    let limit = (SASL_PASSWORD_BYTES_MAX + 3) as u64;
    let read = match file {
        Some(path) => {
            std::fs::File::open(path).and_then(|file| file.take(limit).read_to_end(&mut bytes))
        }
        None => std::io::stdin().lock().take(limit).read_to_end(&mut bytes),
    };
    read.map_err(|error| format!("cannot read the password from {source}: {error}"))?;
    let line = bytes
        .split(|byte| *byte == b'\n')
        .next()
        .unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(format!("no password in {source} (its first line is empty)"));
    }
    if line.len() > SASL_PASSWORD_BYTES_MAX {
        return Err(format!(
            "the password in {source} is longer than {SASL_PASSWORD_BYTES_MAX} bytes"
        ));
    }
    String::from_utf8(line.to_vec()).map_err(|_| format!("the password in {source} is not UTF-8"))
}

/// Makes `data_dir` a Sluice data directory if it is new or empty, the way
/// the broker does at start, and refuses one that belongs to something else.
fn prepare(data_dir: &Path) -> Result<(), String> {
    let dir = data_dir.to_path_buf();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            sluice_engine::metadata::prepare_data_dir(&DmaStorage, &dir).await
        })
        .map_err(|error| format!("starting the runtime failed: {error}"))?
        .join()
        .map_err(|error| format!("checking the data directory failed: {error}"))?
        .map_err(|error| error.to_string())
}

fn load(data_dir: &Path) -> Result<CredentialStore, String> {
    match CredentialStore::load(data_dir)? {
        Some(store) => Ok(store),
        None => CredentialStore::empty(),
    }
}

fn execute(invocation: &Invocation) -> Result<String, String> {
    let data_dir = &invocation.data_dir;
    match &invocation.command {
        Command::Create {
            user,
            mechanisms,
            iterations,
            password_file,
        } => {
            // The password first: a bad one changes nothing on disk.
            let password = read_password(password_file.as_deref())?;
            prepare(data_dir)?;
            let mut store = load(data_dir)?;
            for mechanism in mechanisms {
                let credential =
                    ScramCredential::generate(*mechanism, password.as_bytes(), *iterations)?;
                store.insert(user, *mechanism, credential);
            }
            let path = store.save(data_dir)?;
            let names: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
            Ok(format!(
                "stored {} credentials for user '{user}' in {} ({iterations} iterations); \
                 the broker reads them at its next start\n",
                names.join(" and "),
                path.display()
            ))
        }
        Command::Delete { user, mechanism } => {
            let mut store = match CredentialStore::load(data_dir)? {
                Some(store) => store,
                None => return Err(format!("{} holds no users", data_dir.display())),
            };
            if !store.remove(user, *mechanism) {
                return Err(format!("no such user credential: '{user}'"));
            }
            let path = store.save(data_dir)?;
            Ok(format!("removed user '{user}' from {}\n", path.display()))
        }
        Command::List { json } => {
            let store = CredentialStore::load(data_dir)?;
            let mut users: BTreeMap<&str, Vec<(Mechanism, u32)>> = BTreeMap::new();
            if let Some(store) = &store {
                for (user, mechanism, credential) in store.iter() {
                    users
                        .entry(user)
                        .or_default()
                        .push((mechanism, credential.iterations));
                }
            }
            if *json {
                let list: Vec<_> = users
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
                return Ok(format!("{}\n", serde_json::Value::Array(list)));
            }
            let mut out = format!("{:<32} MECHANISMS (ITERATIONS)\n", "USER");
            for (user, credentials) in &users {
                let described: Vec<String> = credentials
                    .iter()
                    .map(|(mechanism, iterations)| format!("{mechanism} ({iterations})"))
                    .collect();
                out.push_str(&format!("{user:<32} {}\n", described.join(", ")));
            }
            Ok(out)
        }
    }
}

/// Runs `sluice user`: online when it names a broker, else offline.
pub fn run(target: Target, action: UserAction) -> ExitCode {
    if target.is_online() {
        return crate::admin::users::run(target, action);
    }
    let invocation =
        offline(target, action).unwrap_or_else(|message| usage_error(&["user"], message));
    match execute(&invocation) {
        Ok(output) => {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout
                .write_all(output.as_bytes())
                .and_then(|()| stdout.flush());
            ExitCode::SUCCESS
        }
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "sluice: {error}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The offline invocation of a `sluice user ...` line.
    pub(crate) fn parse(line: &str) -> Result<Invocation, String> {
        let words = std::iter::once("sluice").chain(line.split_whitespace());
        match crate::cli::Cli::try_parse_from(words).map_err(|error| error.to_string())? {
            crate::cli::Cli {
                command: Some(crate::cli::Command::User { target, action }),
                ..
            } => offline(target, action),
            other => panic!("{line}: not a user command: {other:?}"),
        }
    }

    #[test]
    fn commands_parse_and_refuse_bad_flags() {
        let parsed = parse(
            "user create --data-dir /d --user admin --mechanism SCRAM-SHA-512 --iterations 8192",
        )
        .unwrap();
        assert_eq!(
            parsed,
            Invocation {
                data_dir: PathBuf::from("/d"),
                command: Command::Create {
                    user: "admin".into(),
                    mechanisms: vec![Mechanism::ScramSha512],
                    iterations: 8192,
                    password_file: None,
                },
            }
        );
        let both = parse("user create --data-dir /d --user a").unwrap();
        assert!(
            matches!(both.command, Command::Create { ref mechanisms, .. } if mechanisms.len() == 2)
        );
        for (bad, says) in [
            ("user create --user a", "--data-dir"),
            ("user create --data-dir /d", "--user"),
            (
                "user create --data-dir /d --user a --mechanism PLAIN",
                "--mechanism",
            ),
            (
                "user create --data-dir /d --user a --iterations 10",
                "--iterations",
            ),
            (
                "user create --data-dir /d --user a --password x",
                "--password",
            ),
            ("user list --data-dir /d --user a", "--user"),
            ("user list --data-dir /d --bootstrap h:1", "--bootstrap"),
            ("user rename", "rename"),
            ("user create --data-dir /d --user=", "--user"),
        ] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
    }

    #[test]
    fn the_password_is_the_first_line() {
        let dir = std::env::temp_dir().join(format!("sluice-user-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "s3cret\r\nignored\n").unwrap();
        assert_eq!(read_password(Some(&file)).unwrap(), "s3cret");
        std::fs::write(&file, "\nsecond").unwrap();
        assert!(read_password(Some(&file)).unwrap_err().contains("empty"));
        std::fs::write(&file, "p".repeat(SASL_PASSWORD_BYTES_MAX + 1)).unwrap();
        assert!(read_password(Some(&file)).unwrap_err().contains("longer"));
        std::fs::write(&file, b"\xff\xfe\n").unwrap();
        assert!(read_password(Some(&file)).unwrap_err().contains("UTF-8"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
