//! A Sluice broker started for one run: a temporary data directory, a free
//! port, stopped with SIGTERM (SIGKILL if it does not stop) and cleaned up
//! when dropped, whatever happened in between.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What the broker prints on stdout once it accepts connections.
const READY_PREFIX: &str = "sluice listening on ";
/// How long the broker may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long it may take to stop after SIGTERM: systemd's default
/// `TimeoutStopSec`. A stop right after writing to 100,000 partitions took
/// 21.9 s (2026-11-29), past the 15 s this was, which then killed it.
const STOP_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_POLL: Duration = Duration::from_millis(20);

/// A running broker and its data directory.
pub struct LocalBroker {
    child: Option<Child>,
    pub address: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
}

impl LocalBroker {
    /// Starts `binary` with a fresh data directory under `parent` and
    /// `extra_args` (e.g. `--shards 2`), waiting until it listens.
    pub fn start(
        binary: &Path,
        parent: &Path,
        extra_args: &[String],
    ) -> Result<LocalBroker, String> {
        if !binary.exists() {
            return Err(format!(
                "broker binary {} not found: build it with `cargo build --release -p sluice` or pass --sluice-bin",
                binary.display()
            ));
        }
        let nanos = crate::clock::now_nanos();
        let data_dir = parent.join(format!("sluice-perf-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&data_dir)
            .map_err(|error| format!("cannot create {}: {error}", data_dir.display()))?;
        let log_path = data_dir.with_extension("log");
        let log = std::fs::File::create(&log_path)
            .map_err(|error| format!("cannot create {}: {error}", log_path.display()))?;
        let mut child = Command::new(binary)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err("the broker's stdout was not captured".to_string());
        };
        let mut broker = LocalBroker {
            child: Some(child),
            address: String::new(),
            data_dir,
            log_path,
        };
        // Read stdout on a thread so a silent broker cannot hang us.
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = line.strip_prefix(READY_PREFIX) {
                    let _ = sender.send(address.trim().to_string());
                }
            }
        });
        match receiver.recv_timeout(START_TIMEOUT) {
            Ok(address) => {
                broker.address = address;
                Ok(broker)
            }
            Err(_) => Err(format!(
                "the broker did not start within {} s; its log: {}",
                START_TIMEOUT.as_secs(),
                broker.log_path.display()
            )),
        }
    }

    /// The broker's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the broker: SIGTERM, then SIGKILL after the timeout.
    pub fn stop(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let Ok(pid) = i32::try_from(child.id()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("broker pid out of range".to_string());
        };
        // SAFETY: signalling our own child process by its pid.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("the broker exited with {status}")),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(STOP_POLL),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("the broker did not stop after SIGTERM and was killed".to_string());
                }
            }
        }
    }
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
        match self.stop() {
            Ok(()) => {
                let _ = std::fs::remove_file(&self.log_path);
            }
            // Keep the log of a broker that misbehaved.
            Err(error) => eprintln!(
                "warning: {error}; broker log kept at {}",
                self.log_path.display()
            ),
        }
    }
}
