//! A broker given a relative data directory (as the default `./data` is)
//! starts, keeps its data there, and serves: the directory is resolved
//! against the working directory it was started in. It used to stop the
//! start with "Bad file descriptor" at the first write of its metadata.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the broker may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the broker may take to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// The listening line `sluice` prints on stdout once it accepts connections.
const LISTENING_PREFIX: &str = "sluice listening on ";

#[test]
fn a_relative_data_directory_is_resolved_against_the_working_directory() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |time| time.as_nanos());
    let root = std::env::temp_dir().join(format!(
        "sluice-relative-data-dir-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&root).expect("create the working directory");
    let mut broker = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(&root)
        .args(["--data-dir", "data", "--listen", "127.0.0.1:0"])
        .args(["--shards", "1", "--pin-shards", "false"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the sluice broker");
    let stdout = broker.stdout.take().expect("piped stdout");
    let stderr = broker.stderr.take().expect("piped stderr");
    let (lines, listening) = mpsc::channel();
    // Both pipes are read to their ends, so the broker never blocks on one.
    let out = lines.clone();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out.send(line);
        }
    });
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    let mut seen = Vec::new();
    let address = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match listening.recv_timeout(left) {
            Ok(line) => match line.strip_prefix(LISTENING_PREFIX) {
                Some(address) => break Some(address.trim().to_string()),
                None => seen.push(line),
            },
            Err(_) => break None,
        }
    };
    let created = address.as_ref().map(|address| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["topic", "create", "kept", "--bootstrap", address])
            .stdin(Stdio::null())
            .output()
            .expect("run the sluice CLI")
    });
    let partition_dir = root.join("data").join("kept-0").exists();
    // SAFETY: signalling our own child process by its pid.
    unsafe {
        libc::kill(broker.id() as libc::pid_t, libc::SIGTERM);
    }
    let stop_deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < stop_deadline {
        if let Ok(Some(_)) = broker.try_wait() {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = broker.kill();
    let _ = broker.wait();
    let _ = std::fs::remove_dir_all(&root);

    assert!(
        address.is_some(),
        "the broker did not start; it said:\n{}",
        seen.join("\n")
    );
    let created = created.expect("the CLI ran");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(partition_dir, "the topic's partition is under ./data");
}
