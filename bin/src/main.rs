//! `sluice`: the broker, and an admin CLI that talks Kafka protocol to any
//! broker.

mod admin;
mod admin_port;
mod cli;
mod config;
mod memory;
mod run;
mod user;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

/// See memory.rs for why jemalloc.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The formatter reports a failed write of its own on stderr with a
    // printing macro, which panics when stderr is what failed (a log file on
    // a full disk): the shard that logged would die. A lost log line is
    // better than a lost shard.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: a journal, a log
        // file or `docker logs` would keep them as escape sequences.
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false)
        .init();
}

/// The one-line reason for exiting, on stderr; an unwritable stderr must not
/// turn a clean error exit into a panic.
fn report(error: &dyn std::fmt::Display) {
    let _ = writeln!(std::io::stderr(), "sluice: {error}");
}

fn main() -> ExitCode {
    let cli = cli::parse();
    if let Some(command) = cli.command {
        return cli::run(command);
    }
    init_logging();
    let config = match cli.broker.resolve() {
        Ok(config) => config,
        Err(error) => {
            report(&error);
            return ExitCode::from(2);
        }
    };
    if let Err(refused) = memory::set_decay_ms(config.allocator_decay_ms) {
        tracing::warn!(%refused, "the allocator refused the decay setting; it keeps its default");
    }
    match run::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report(&error);
            ExitCode::from(1)
        }
    }
}
