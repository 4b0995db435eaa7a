//! `sluice`: the broker, and an admin CLI that talks Kafka protocol to any
//! broker.

mod admin;
mod admin_port;
mod cli;
mod config;
mod memory;
mod run;
mod user;

use std::io::Write;
use std::process::ExitCode;

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
        .log_internal_errors(false)
        .init();
}

/// glibc hands heap memory above its trim threshold back to the kernel on
/// free and serves large requests with fresh mappings, so a broker that
/// allocates a request buffer, frees it and allocates the next one pays a
/// page fault and a page clear per 4 KiB on every request (measured with
/// `perf record`: 54% of broker CPU at 10k produce requests/s). Large
/// thresholds keep that memory in the heap for reuse; the broker's memory is
/// bounded by its own limits (cache budget, in-flight caps), not by trimming.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_MMAP_THRESHOLD_BYTES: libc::c_int = 64 * 1024 * 1024;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_TRIM_THRESHOLD_BYTES: libc::c_int = 512 * 1024 * 1024;

/// Returns which allocator settings were refused: glibc keeps its default
/// for a value it refuses and says so only through mallopt's return value.
fn tune_allocator() -> Vec<&'static str> {
    let mut refused = Vec::new();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called first thing
    // in main, before any other thread exists.
    unsafe {
        if libc::mallopt(libc::M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD_BYTES) != 1 {
            refused.push("M_MMAP_THRESHOLD");
        }
        if libc::mallopt(libc::M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD_BYTES) != 1 {
            refused.push("M_TRIM_THRESHOLD");
        }
    }
    refused
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
    let refused = tune_allocator();
    init_logging();
    if !refused.is_empty() {
        tracing::warn!(
            ?refused,
            "the allocator refused a setting; request buffers may be page-faulted afresh"
        );
    }
    let config = match cli.broker.resolve() {
        Ok(config) => config,
        Err(error) => {
            report(&error);
            return ExitCode::from(2);
        }
    };
    memory::spawn_allocator_keeper(config.allocator_free_bytes_max);
    match run::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report(&error);
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn the_allocator_takes_both_settings() {
        // glibc silently keeps its default for a refused value.
        assert_eq!(super::tune_allocator(), Vec::<&str>::new());
    }
}
