//! The command line, parsed by clap: the broker's flags (made from the
//! settings table in [`crate::config`]) when no subcommand is given, else
//! one subcommand per area. Each subcommand's arguments are declared beside
//! the code that runs it; this file only gathers them.

use std::io::Write;

use clap::{CommandFactory, Parser, Subcommand};

use crate::admin::acl::AclArgs;
use crate::admin::args::{AdminArgs, ClusterAction, GroupAction, TopicAction, TxnAction};
use crate::admin::consume::ConsumeCommand;
use crate::admin::produce::ProduceCommand;
use crate::admin::quota::QuotaArgs;
use crate::config::BrokerArgs;
use crate::user::{Target, UserAction};

/// Said after the broker's own help: where settings come from.
const SETTINGS_HELP: &str = "\
Without a subcommand, runs a broker (default: 127.0.0.1:9092, data in ./data). Settings come from
the embedded defaults, then --config FILE (TOML), then SLUICE_* environment variables, then flags;
each has one name in all three: data_dir in TOML, SLUICE_DATA_DIR, --data-dir.

Every subcommand has its own --help. `sluice completions bash` prints a completion script.";

/// sluice: a Kafka-compatible streaming log broker, and an admin client
/// for any Kafka-compatible broker.
#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    args_conflicts_with_subcommands = true,
    after_help = SETTINGS_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Topics of a running broker: create, list, describe, delete, alter-config, trim,
    /// reassign, reassignments.
    Topic(AdminArgs<TopicAction>),
    /// Consumer groups of a running broker: list, describe, delete, reset-offsets.
    Group(AdminArgs<GroupAction>),
    /// Transactions of a running broker: list, describe.
    Txn(AdminArgs<TxnAction>),
    /// The cluster: info, rebalance, elect-leaders.
    Cluster(AdminArgs<ClusterAction>),
    /// Sends each line of stdin (or --file) as one record.
    ///
    /// With a key delimiter the part of a line before it is the key (a line without it
    /// has no key). Keyed records go to murmur2(key) % partitions, as Kafka's Java
    /// client and librdkafka's murmur2_random partitioner place them; records without
    /// a key are spread over the partitions (the sticky partitioner). Shows progress
    /// on stderr when it is a terminal, and the totals (records, MB/s) at the end.
    Produce(ProduceCommand),
    /// Prints a topic's records, by default each value on its own line, up to the end
    /// offsets seen at the start.
    ///
    /// Starts at --offset or the first record at or after --timestamp, else at
    /// GROUP's committed offsets, else at the earliest. Reads uncommitted
    /// transactional records too.
    Consume(ConsumeCommand),
    /// ACLs of a running broker (its authorizer set to acl): add, remove, list.
    Acl(AclArgs),
    /// Client quotas of a running broker (byte rates per user and client id): set,
    /// describe.
    Quota(QuotaArgs),
    /// SASL users: offline in a stopped broker's data directory (--data-dir), or of a
    /// running broker (--bootstrap-server).
    User {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        action: UserAction,
    },
    /// Prints a shell completion script for sluice on stdout.
    Completions {
        /// The shell the script is for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Runs a subcommand.
pub fn run(command: Command) -> std::process::ExitCode {
    match command {
        Command::Topic(args) => crate::admin::run(args.invocation()),
        Command::Group(args) => crate::admin::run(args.invocation()),
        Command::Txn(args) => crate::admin::run(args.invocation()),
        Command::Cluster(args) => crate::admin::run(args.invocation()),
        Command::Produce(command) => crate::admin::produce::run(command),
        Command::Consume(command) => crate::admin::consume::run(command),
        Command::Acl(args) => crate::admin::acl::run(args),
        Command::Quota(args) => crate::admin::quota::run(args),
        Command::User { target, action } => crate::user::run(target, action),
        Command::Completions { shell } => {
            completions(shell, &mut std::io::stdout().lock());
            std::process::ExitCode::SUCCESS
        }
    }
}

/// Writes the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "sluice", out);
}

/// The command line, or the process leaves: help on stdout with status 0,
/// a usage error on stderr with status 2.
pub fn parse() -> Cli {
    Cli::try_parse().unwrap_or_else(|error| leave(&error))
}

/// Leaves with clap's usage error (exit status 2) for a check that clap's
/// declarations cannot express, such as a header key given twice; `path`
/// names the subcommand (`["user", "create"]`) whose usage is shown.
pub fn usage_error(path: &[&str], message: impl std::fmt::Display) -> ! {
    let mut command = Cli::command();
    // Built, each subcommand knows its whole name (`sluice user create`).
    command.build();
    for name in path {
        match command.find_subcommand(name) {
            Some(subcommand) => command = subcommand.clone(),
            None => break,
        }
    }
    let error = command.error(clap::error::ErrorKind::ValueValidation, message);
    leave(&error)
}

/// Prints what clap made of the command line and exits with its status.
/// Errors start with `sluice: `, as every other error of the command does,
/// rather than clap's `error: `.
fn leave(error: &clap::Error) -> ! {
    let text = error.render().to_string();
    let result = match text.strip_prefix("error: ") {
        Some(text) => write!(std::io::stderr(), "sluice: {text}"),
        // A command that needs a subcommand and was given none: its help.
        None if error.use_stderr() => {
            write!(
                std::io::stderr(),
                "sluice: a subcommand is needed\n\n{text}"
            )
        }
        None => write!(std::io::stdout(), "{text}"),
    };
    // A closed stdout or stderr loses the text, not the exit status.
    drop(result);
    std::process::exit(error.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse_line(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sluice").chain(line.split_whitespace()))
    }

    #[test]
    fn the_command_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_typo_gets_a_suggestion() {
        let error = parse_line("topci list").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidSubcommand);
        let text = error.render().to_string();
        assert!(
            text.contains("similar subcommand exists: 'topic'"),
            "{text}"
        );
        let text = parse_line("--shrads 2").unwrap_err().render().to_string();
        assert!(
            text.contains("similar argument exists: '--shards'"),
            "{text}"
        );
        let text = parse_line("topic creat t")
            .unwrap_err()
            .render()
            .to_string();
        assert!(text.contains("'create'"), "{text}");
    }

    #[test]
    fn every_subcommand_has_help() {
        let command = Cli::command();
        let names: Vec<&str> = command
            .get_subcommands()
            .map(|sub| sub.get_name())
            .collect();
        for expected in [
            "topic", "group", "txn", "cluster", "produce", "consume", "acl", "quota",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        for name in names.iter().chain(&["user", "completions"]) {
            let error = parse_line(&format!("{name} --help")).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::DisplayHelp, "{name}");
            let help = error.render().to_string();
            assert!(help.contains(&format!("Usage: sluice {name}")), "{help}");
        }
        for sub in command.get_subcommands() {
            assert!(sub.get_about().is_some(), "{} has no about", sub.get_name());
            for nested in sub.get_subcommands() {
                assert!(
                    nested.get_about().is_some(),
                    "{} {} has no about",
                    sub.get_name(),
                    nested.get_name()
                );
            }
        }
    }

    #[test]
    fn the_bash_completion_knows_the_subcommands() {
        let mut script = Vec::new();
        completions(clap_complete::Shell::Bash, &mut script);
        let script = String::from_utf8_lossy(&script);
        for word in ["topic", "consume", "reset-offsets", "--data-dir"] {
            assert!(script.contains(word), "{word} missing");
        }
    }
}
