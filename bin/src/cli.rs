//! The command line, parsed by clap: the broker's flags (made from the
//! settings table in [`crate::config`]) when no subcommand is given, else
//! one subcommand per area. Each subcommand's arguments are declared beside
//! the code that runs it; this file only gathers them.

use clap::{CommandFactory, Parser, Subcommand};

use crate::admin::acl::AclArgs;
use crate::admin::args::{AdminArgs, ClusterAction, GroupAction, TopicAction, TxnAction};
use crate::admin::consume::ConsumeCommand;
use crate::admin::produce::ProduceCommand;
use crate::config::BrokerArgs;
use crate::user::UserAction;

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
    #[command(arg_required_else_help = true)]
    Topic(AdminArgs<TopicAction>),
    /// Consumer groups of a running broker: list, describe, delete, reset-offsets.
    #[command(arg_required_else_help = true)]
    Group(AdminArgs<GroupAction>),
    /// Transactions of a running broker: list, describe.
    #[command(arg_required_else_help = true)]
    Txn(AdminArgs<TxnAction>),
    /// The cluster: info, rebalance, elect-leaders.
    #[command(arg_required_else_help = true)]
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
    #[command(arg_required_else_help = true)]
    Acl(AclArgs),
    /// SASL users: offline in a stopped broker's data directory (--data-dir), or of a
    /// running broker (--bootstrap-server).
    #[command(arg_required_else_help = true)]
    User {
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
        Command::User { action } => crate::user::run(action),
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

/// Leaves with clap's usage error (exit status 2) for a check that clap's
/// declarations cannot express, such as a header key given twice.
pub fn usage_error(message: impl std::fmt::Display) -> ! {
    Cli::command()
        .error(clap::error::ErrorKind::ValueValidation, message)
        .exit()
}
