//! A broker holds a file open per partition, so it raises its own open-file
//! limit at start: the soft limit to the hard one, and both where the
//! process may (root); a limit still low is said once on stderr.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The limits the broker is started with: far below what it asks for.
const SOFT_AT_START: u64 = 1024;
const HARD_AT_START: u64 = 4096;
/// Below this the broker must have warned (its `NOFILE_WARN_BELOW`).
const WARN_BELOW: u64 = 100_000;
/// How long the broker may take to get past its start-up checks.
const RAISED_WITHIN: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

/// The soft limit on open files of process `pid`, from /proc.
fn soft_open_files(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[test]
fn the_broker_raises_its_open_file_limit() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |time| time.as_nanos());
    let base = std::env::temp_dir().join(format!("sluice-nofile-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&base).expect("test directory");
    let stderr_path = base.join("stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .arg("--data-dir")
        .arg(base.join("data"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "1",
            "--pin-shards",
            "false",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: SOFT_AT_START,
                rlim_max: HARD_AT_START,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("start sluice");
    let deadline = Instant::now() + RAISED_WITHIN;
    let mut soft = soft_open_files(child.id());
    while soft.is_some_and(|soft| soft <= SOFT_AT_START) && Instant::now() < deadline {
        std::thread::sleep(POLL);
        soft = soft_open_files(child.id());
    }
    let _ = child.kill();
    let _ = child.wait();
    let said = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&base);
    let soft = soft.expect("the broker's limits in /proc");
    assert!(
        soft >= HARD_AT_START,
        "the soft limit stayed at {soft}, below the hard limit {HARD_AT_START}"
    );
    if soft < WARN_BELOW {
        assert!(
            said.contains("RLIMIT_NOFILE is"),
            "a limit of {soft} open files was not said: {said}"
        );
    }
}
