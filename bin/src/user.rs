//! `sluice user ...`: SASL users, offline. (With `--bootstrap-server` the
//! same commands manage a running broker's users instead: see
//! [`crate::admin::users`].) The offline commands edit the credential
//! file in a broker's first data directory while the broker is stopped (as
//! Kafka's `kafka-storage format --add-scram` does before a first start),
//! so the first user exists before any client connects; a broker reads the
//! file when it starts. Only salted SCRAM credentials are stored, never the
//! password, and the password is read from a file or stdin, never from the
//! command line (where `ps` and shell history would show it).
//!
//! Exit status: 0 on success, 1 when the data directory or the password
//! cannot be used, 2 for usage errors.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;
use sluice_engine::DmaStorage;
use sluice_net::constants::{
    SASL_PASSWORD_BYTES_MAX, SCRAM_ITERATIONS_DEFAULT, SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN,
};
use sluice_net::sasl::credentials::check_user_name;
use sluice_net::sasl::{CredentialStore, Mechanism, ScramCredential};

pub const USAGE: &str = "\
USER COMMANDS, OFFLINE (run them while the broker is stopped; it reads users at start):
    sluice user create --data-dir DIR --user NAME [--mechanism SCRAM-SHA-256|SCRAM-SHA-512]
            [--iterations N] [--password-file FILE]
        Stores salted SCRAM credentials for NAME (both mechanisms unless --mechanism; PLAIN
        logins check either) in DIR, the broker's first data directory, creating it if
        needed. The password is the first line of FILE, or of stdin without
        --password-file. Iterations: 4096 (default) to 16384. Replaces NAME's credential.
    sluice user delete --data-dir DIR --user NAME [--mechanism SCRAM-SHA-256|SCRAM-SHA-512]
    sluice user list --data-dir DIR [--json]
        Lists users with their mechanisms and iteration counts (no keys).
";

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// Whether the arguments name a user command.
pub fn is_user_command(args: &[String]) -> bool {
    args.first().map(String::as_str) == Some("user")
}

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

fn parse(args: &[String]) -> Result<Option<Invocation>, String> {
    let action = match args.get(1).map(String::as_str) {
        Some("--help" | "-h") | None => return Ok(None),
        Some(action @ ("create" | "delete" | "list")) => action,
        Some(other) => return Err(format!("unknown user command '{other}'")),
    };
    let mut flags: BTreeMap<&str, String> = BTreeMap::new();
    let mut json = false;
    let mut rest = args[2..].iter();
    while let Some(arg) = rest.next() {
        let flag = arg.as_str();
        match flag {
            "--help" | "-h" => return Ok(None),
            "--json" if action == "list" => json = true,
            "--data-dir" | "--user" | "--mechanism" | "--iterations" | "--password-file" => {
                let value = rest
                    .next()
                    .ok_or_else(|| format!("flag {flag} needs a value"))?;
                if flags.insert(flag, value.clone()).is_some() {
                    return Err(format!("flag {flag} given twice"));
                }
            }
            other => return Err(format!("unexpected argument '{other}' for `user {action}`")),
        }
    }
    let allowed: &[&str] = match action {
        "create" => &[
            "--data-dir",
            "--user",
            "--mechanism",
            "--iterations",
            "--password-file",
        ],
        "delete" => &["--data-dir", "--user", "--mechanism"],
        _ => &["--data-dir"],
    };
    if let Some(flag) = flags.keys().find(|flag| !allowed.contains(*flag)) {
        return Err(format!("`user {action}` takes no {flag}"));
    }
    let data_dir = flags
        .remove("--data-dir")
        .map(PathBuf::from)
        .ok_or("--data-dir DIR is required")?;
    let mechanism = flags
        .remove("--mechanism")
        .map(|name| {
            Mechanism::from_name(&name)
                .filter(|mechanism| mechanism.is_scram())
                .ok_or(format!(
                    "--mechanism takes SCRAM-SHA-256 or SCRAM-SHA-512, not '{name}'"
                ))
        })
        .transpose()?;
    let mut user = || -> Result<String, String> {
        let user = flags.remove("--user").ok_or("--user NAME is required")?;
        check_user_name(&user).map_err(|reason| format!("--user: {reason}"))?;
        Ok(user)
    };
    let command = match action {
        "create" => {
            let user = user()?;
            let iterations = match flags.remove("--iterations") {
                None => SCRAM_ITERATIONS_DEFAULT,
                Some(text) => text
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (SCRAM_ITERATIONS_MIN..=SCRAM_ITERATIONS_MAX).contains(n))
                    .ok_or(format!(
                        "--iterations takes {SCRAM_ITERATIONS_MIN} to {SCRAM_ITERATIONS_MAX}, not '{text}'"
                    ))?,
            };
            Command::Create {
                user,
                mechanisms: mechanism.map_or(Mechanism::SCRAM.to_vec(), |m| vec![m]),
                iterations,
                password_file: flags.remove("--password-file").map(PathBuf::from),
            }
        }
        "delete" => Command::Delete {
            user: user()?,
            mechanism,
        },
        _ => Command::List { json },
    };
    Ok(Some(Invocation { data_dir, command }))
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

pub fn main(args: &[String]) -> ExitCode {
    if crate::admin::users::is_online(args) {
        return crate::admin::users::main(args);
    }
    let invocation = match parse(args) {
        Ok(Some(invocation)) => invocation,
        Ok(None) => {
            let both = format!("{USAGE}\n{}", crate::admin::users::USAGE);
            let _ = std::io::stdout().write_all(both.as_bytes());
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "sluice: {message}\n\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
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

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| arg.to_string()).collect()
    }

    #[test]
    fn commands_parse_and_refuse_bad_flags() {
        let parsed = parse(&args(&[
            "user",
            "create",
            "--data-dir",
            "/d",
            "--user",
            "admin",
            "--mechanism",
            "SCRAM-SHA-512",
            "--iterations",
            "8192",
        ]))
        .unwrap()
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
        let both = parse(&args(&[
            "user",
            "create",
            "--data-dir",
            "/d",
            "--user",
            "a",
        ]))
        .unwrap()
        .unwrap();
        assert!(
            matches!(both.command, Command::Create { ref mechanisms, .. } if mechanisms.len() == 2)
        );
        for (bad, says) in [
            (&["user", "create", "--user", "a"][..], "--data-dir"),
            (&["user", "create", "--data-dir", "/d"], "--user"),
            (
                &[
                    "user",
                    "create",
                    "--data-dir",
                    "/d",
                    "--user",
                    "a",
                    "--mechanism",
                    "PLAIN",
                ],
                "--mechanism",
            ),
            (
                &[
                    "user",
                    "create",
                    "--data-dir",
                    "/d",
                    "--user",
                    "a",
                    "--iterations",
                    "10",
                ],
                "--iterations",
            ),
            (
                &[
                    "user",
                    "create",
                    "--data-dir",
                    "/d",
                    "--user",
                    "a",
                    "--password",
                    "x",
                ],
                "--password",
            ),
            (
                &["user", "list", "--data-dir", "/d", "--user", "a"],
                "--user",
            ),
            (&["user", "rename"], "rename"),
            (
                &["user", "create", "--data-dir", "/d", "--user", ""],
                "--user",
            ),
        ] {
            let error = parse(&args(bad)).unwrap_err();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
        assert_eq!(parse(&args(&["user"])).unwrap(), None);
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
