//! The machine's own limits, measured in the same session as the broker:
//! the disk's O_DIRECT sequential write bandwidth and fdatasync latency
//! (fio), and loopback TCP bandwidth (iperf3). Every published figure is
//! shown next to these, as a ratio where that makes sense.
//!
//! The disk tests run in the directory the broker's data lives in (its
//! filesystem is what matters), with the access pattern Sluice uses:
//! large O_DIRECT sequential writes, and for acks=all a 4 KiB O_DIRECT
//! write followed by fdatasync.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long each fio job and the iperf3 test run.
pub const BASELINE_SECS_DEFAULT: u64 = 5;
/// Size of the file the write-bandwidth job cycles through.
const FIO_WRITE_FILE: &str = "1G";
/// Size of the file the fdatasync job cycles through.
const FIO_SYNC_FILE: &str = "64M";
/// Queue depth of the bandwidth job: enough to keep a device busy.
const FIO_WRITE_IODEPTH: &str = "16";
/// A port for the private iperf3 server, unlikely to be in use.
const IPERF_PORT: u16 = 52_011;
/// Time the iperf3 server gets to start listening.
const IPERF_SERVER_START: Duration = Duration::from_millis(300);

/// The limits of this machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub disk_dir: String,
    /// O_DIRECT sequential 1 MiB writes, queue depth 16.
    pub disk_write_mb_per_sec: f64,
    /// 4 KiB O_DIRECT write + fdatasync, latency of the fdatasync.
    pub fdatasync_p50_us: f64,
    pub fdatasync_p99_us: f64,
    pub fdatasync_p999_us: f64,
    /// One TCP stream over loopback.
    pub loopback_mb_per_sec: f64,
    /// Two parallel streams (one per core on a two-core box).
    pub loopback_parallel_mb_per_sec: f64,
    pub notes: Vec<String>,
}

impl Baseline {
    pub fn describe(&self) -> String {
        let mut text = String::from("  baselines (same session):\n");
        text.push_str(&format!(
            "    disk ({}): O_DIRECT sequential write {:.0} MB/s; fdatasync p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms\n",
            self.disk_dir,
            self.disk_write_mb_per_sec,
            self.fdatasync_p50_us / 1e3,
            self.fdatasync_p99_us / 1e3,
            self.fdatasync_p999_us / 1e3
        ));
        text.push_str(&format!(
            "    loopback TCP: {:.0} MB/s one stream ({:.1} Gbit/s), {:.0} MB/s two streams\n",
            self.loopback_mb_per_sec,
            self.loopback_mb_per_sec * 8.0 / 1e3,
            self.loopback_parallel_mb_per_sec
        ));
        for note in &self.notes {
            text.push_str(&format!("    note: {note}\n"));
        }
        text
    }
}

fn run_json(command: &mut Command) -> Result<serde_json::Value, String> {
    let output = command
        .output()
        .map_err(|error| format!("cannot run {command:?}: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        ));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|error| format!("{command:?} printed no JSON: {error}"))
}

fn number(value: &serde_json::Value, path: &[&str]) -> Option<f64> {
    path.iter()
        .try_fold(value, |value, key| value.get(key))?
        .as_f64()
}

fn fio(dir: &Path, name: &str, args: &[&str], seconds: u64) -> Result<serde_json::Value, String> {
    let mut command = Command::new("fio");
    command
        .arg(format!("--name={name}"))
        .arg(format!("--directory={}", dir.display()))
        .arg(format!("--runtime={seconds}"))
        .args(["--time_based", "--direct=1", "--output-format=json"])
        .args(args)
        .stdin(Stdio::null());
    let value = run_json(&mut command);
    // fio leaves its test file behind.
    let _ = std::fs::remove_file(dir.join(format!("{name}.0.0")));
    value
}

/// Sequential O_DIRECT write bandwidth in MB/s.
fn disk_write(dir: &Path, seconds: u64) -> Result<f64, String> {
    let json = fio(
        dir,
        "sluice-perf-seqwrite",
        &[
            "--rw=write",
            "--bs=1M",
            "--ioengine=libaio",
            &format!("--iodepth={FIO_WRITE_IODEPTH}"),
            &format!("--size={FIO_WRITE_FILE}"),
        ],
        seconds,
    )?;
    let bytes = json
        .get("jobs")
        .and_then(|jobs| jobs.get(0))
        .and_then(|job| number(job, &["write", "bw_bytes"]))
        .ok_or("fio reported no write bandwidth")?;
    Ok(bytes / 1e6)
}

/// fdatasync latency percentiles (p50, p99, p99.9) in microseconds.
fn fdatasync(dir: &Path, seconds: u64) -> Result<(f64, f64, f64), String> {
    let json = fio(
        dir,
        "sluice-perf-fdatasync",
        &[
            "--rw=write",
            "--bs=4k",
            "--ioengine=sync",
            "--fdatasync=1",
            &format!("--size={FIO_SYNC_FILE}"),
        ],
        seconds,
    )?;
    let percentiles = json
        .get("jobs")
        .and_then(|jobs| jobs.get(0))
        .and_then(|job| job.get("sync"))
        .and_then(|sync| sync.get("lat_ns"))
        .and_then(|lat| lat.get("percentile"))
        .ok_or("fio reported no fdatasync latencies")?;
    let at = |key: &str| {
        percentiles
            .get(key)
            .and_then(|value| value.as_f64())
            .map(|nanos| nanos / 1e3)
    };
    match (at("50.000000"), at("99.000000"), at("99.900000")) {
        (Some(p50), Some(p99), Some(p999)) => Ok((p50, p99, p999)),
        _ => Err("fio's fdatasync percentiles are incomplete".to_string()),
    }
}

/// Stops the private iperf3 server however the test ends.
struct ServerGuard(Child);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Loopback TCP bandwidth in MB/s with `streams` parallel streams.
fn loopback(seconds: u64, streams: u32) -> Result<f64, String> {
    let server = Command::new("iperf3")
        .args(["-s", "-1", "-p", &IPERF_PORT.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|error| format!("cannot start iperf3: {error}"))?;
    let _guard = ServerGuard(server);
    std::thread::sleep(IPERF_SERVER_START);
    let json = run_json(Command::new("iperf3").args([
        "-c",
        "127.0.0.1",
        "-p",
        &IPERF_PORT.to_string(),
        "-t",
        &seconds.to_string(),
        "-P",
        &streams.to_string(),
        "-J",
    ]))?;
    let bits = number(&json, &["end", "sum_received", "bits_per_second"])
        .ok_or("iperf3 reported no bandwidth")?;
    Ok(bits / 8.0 / 1e6)
}

/// Measures every baseline; a tool that is missing or fails leaves its
/// figures at zero with a note, so a run can still go ahead.
pub fn measure(dir: &Path, seconds: u64) -> Baseline {
    let mut baseline = Baseline {
        disk_dir: dir.display().to_string(),
        ..Baseline::default()
    };
    match disk_write(dir, seconds) {
        Ok(mb) => baseline.disk_write_mb_per_sec = mb,
        Err(error) => baseline.notes.push(format!(
            "disk write: {error} (install fio: perf/baseline.sh)"
        )),
    }
    match fdatasync(dir, seconds) {
        Ok((p50, p99, p999)) => {
            baseline.fdatasync_p50_us = p50;
            baseline.fdatasync_p99_us = p99;
            baseline.fdatasync_p999_us = p999;
        }
        Err(error) => baseline.notes.push(format!("fdatasync: {error}")),
    }
    match loopback(seconds, 1) {
        Ok(mb) => baseline.loopback_mb_per_sec = mb,
        Err(error) => baseline.notes.push(format!(
            "loopback: {error} (install iperf3: perf/baseline.sh)"
        )),
    }
    match loopback(seconds, 2) {
        Ok(mb) => baseline.loopback_parallel_mb_per_sec = mb,
        Err(error) => baseline
            .notes
            .push(format!("loopback, two streams: {error}")),
    }
    baseline
}

/// Where the disk baseline runs when no broker data directory is known.
pub fn default_dir() -> PathBuf {
    std::env::temp_dir()
}
