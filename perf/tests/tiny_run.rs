//! End to end: `sluice-perf run` starts the real broker, runs the two-second
//! `tiny` workload (keyed, lz4, two producers, two consumers), stops the
//! broker, and writes a result file whose numbers must add up.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The whole run (broker start, 1 s warm-up, 2 s measured, drain) takes a
/// few seconds; this bounds a hang on a loaded CI machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(50);
/// `tiny.toml`: 2,000 msg/s for 2 measured seconds. The schedule is exact,
/// so exactly this many messages have intended times in the window.
const MEASURED_MESSAGES: u64 = 4_000;

/// The broker binary: `SLUICE_BIN`, or the workspace's debug build (built
/// here if a plain `cargo test -p sluice-perf` has not built it yet).
fn broker_binary() -> PathBuf {
    if let Ok(path) = std::env::var("SLUICE_BIN") {
        return PathBuf::from(path);
    }
    let perf = PathBuf::from(env!("CARGO_BIN_EXE_sluice-perf"));
    let target = perf
        .parent()
        .expect("the binary lives in a target directory")
        .to_path_buf();
    let broker = target.join("sluice");
    if !broker.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = Command::new(cargo)
            .args(["build", "-p", "sluice", "--bin", "sluice"])
            .current_dir(workspace())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the broker failed");
    }
    broker
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("perf/ is inside the workspace")
        .to_path_buf()
}

fn number(value: &Value, path: &[&str]) -> f64 {
    path.iter()
        .try_fold(value, |value, key| value.get(key))
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("result has no number at {path:?}"))
}

/// Runs `sluice-perf run` on the tiny workload with `extra` flags and
/// returns its result file.
fn run_tiny(tag: &str, extra: &[&str]) -> Value {
    let out = std::env::temp_dir().join(format!("sluice-perf-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("output directory");
    let broker = broker_binary();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-perf"))
        .args(["run", "--workload"])
        .arg(workspace().join("perf/workloads/tiny.toml"))
        .arg("--sluice-bin")
        .arg(&broker)
        .args(["--baseline", "none", "--threads", "2", "--quiet", "--out"])
        .arg(&out)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice-perf starts");
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait works") {
            break status;
        }
        if Instant::now() > deadline {
            // SIGTERM lets sluice-perf stop its broker and clean up.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
            let _ = child.wait();
            panic!("sluice-perf did not finish within {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(POLL);
    };
    let output = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(status.success(), "sluice-perf failed:\n{stdout}\n{stderr}");

    let json = std::fs::read_dir(&out)
        .expect("output directory")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json")
        })
        .expect("a result file was written");
    assert!(json.with_extension("svg").exists(), "a plot was written");
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("readable")).expect("JSON");
    let _ = std::fs::remove_dir_all(&out);
    result
}

#[test]
fn tiny_workload_produces_a_consistent_result() {
    let result = run_tiny("peak", &[]);

    // Nothing lost: everything sent was acknowledged and consumed.
    let sent = number(&result, &["totals", "sent"]);
    assert!(sent > 0.0);
    assert_eq!(number(&result, &["totals", "acked"]), sent, "{result}");
    assert_eq!(number(&result, &["totals", "consumed"]), sent, "{result}");
    assert_eq!(number(&result, &["totals", "failed"]), 0.0);
    // The open-loop schedule puts exactly the expected messages in the
    // window, and each of them has an ack and an end-to-end latency.
    let measured = MEASURED_MESSAGES as f64;
    assert_eq!(
        number(&result, &["produce", "messages"]),
        measured,
        "{result}"
    );
    assert_eq!(number(&result, &["ack_latency", "count"]), measured);
    assert_eq!(number(&result, &["e2e_latency", "count"]), measured);
    for latency in ["ack_latency", "e2e_latency"] {
        let values: Vec<f64> = [
            "p50_us", "p90_us", "p99_us", "p999_us", "p9999_us", "max_us",
        ]
        .iter()
        .map(|key| number(&result, &[latency, key]))
        .collect();
        assert!(values[0] > 0.0, "{latency}: {values:?}");
        assert!(
            values.windows(2).all(|pair| pair[0] <= pair[1]),
            "{latency} percentiles ordered: {values:?}"
        );
    }
    // The Produce requests' round trips, one per acknowledged record: each
    // lies inside its record's ack latency (the record waited for its batch
    // and its request before the trip began), so no percentile can exceed
    // the ack latency's.
    assert_eq!(number(&result, &["request_latency", "count"]), measured);
    assert!(number(&result, &["request_latency", "p50_us"]) > 0.0);
    for key in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
        let trip = number(&result, &["request_latency", key]);
        let ack = number(&result, &["ack_latency", key]);
        assert!(
            trip <= ack,
            "request trip {key} {trip} above the ack's {ack}"
        );
    }
    let curve = result["e2e_curve"].as_array().expect("curve");
    assert!(curve.len() > 10);
    assert!(
        result["errors"].as_array().is_some_and(Vec::is_empty),
        "{}",
        result["errors"]
    );

    // A second run at half of what this one measured (`--rate-of`).
    let rate_of =
        std::env::temp_dir().join(format!("sluice-perf-test-{}-peak.json", std::process::id()));
    std::fs::write(&rate_of, result.to_string()).expect("write the first result");
    let spec = format!("{}:0.5", rate_of.display());
    let half = run_tiny("half", &["--rate-of", &spec, "--duration", "1"]);
    let _ = std::fs::remove_file(&rate_of);
    let wanted = (number(&result, &["produce", "msg_per_sec"]) * 0.5).round();
    assert_eq!(
        number(&half, &["workload", "producer_rate"]),
        wanted,
        "--rate-of ran at a different rate"
    );
    assert_eq!(number(&half, &["totals", "failed"]), 0.0);
}
