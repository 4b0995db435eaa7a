//! The command line, parsed by clap: the broker's flags (made from the
//! settings table in [`crate::config`]) when no subcommand is given, else
//! one subcommand per area. Each subcommand's arguments are declared beside
//! the code that runs it; this file only gathers them.

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::BrokerArgs;

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
    args_override_self = true,
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
    /// Prints a shell completion script for sluice on stdout.
    Completions {
        /// The shell the script is for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Writes the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "sluice", out);
}
