#!/usr/bin/env bash
# Proves that the fault harness (bin/tests/chaos.rs) catches a real broker
# defect, not only the planted histories of its own tests: builds the broker
# with the planted defect `planted-defect-drop-acked` (the leader acknowledges
# the batch that would hold offset 1,000 of partition 0 and loses it; see
# net/src/broker/planted_defect.rs),
# runs the harness's keyed-append test against that binary, and passes only
# if the test fails with the lost acknowledged write reported. A harness that
# passed here would pass a broker that loses data.
#
# usage: tests/chaos-broken.sh
#   SLUICE_CHAOS_SECS  seconds of faults (default 20: the harness's partition
#                      0 reaches offset 1,000 about 10 s after it starts)
#   SLUICE_CHAOS_SEED  the schedule (the harness's default when unset)
# Exits 0 only when the harness reported the lost write; otherwise says why.
set -euo pipefail
cd "$(dirname "$0")/.."

# A target directory of its own: the feature changes the engine and net
# crates, and building them with it in target/ would replace the broker
# binary that every other test and the compat script run.
planted_target=target/planted
feature=planted-defect-drop-acked
test_name=faults_leave_no_anomaly_in_the_history
export SLUICE_CHAOS_SECS="${SLUICE_CHAOS_SECS:-20}"
# Bounds the test run (not the builds): a short schedule takes 2 to 3
# minutes, but the chaos tests run one at a time across the machine, so this
# one may first wait for another's (75 s in CI, longer for a soak).
run_timeout_secs=1800
# The file lock the chaos tests take (chaos.rs, ONE_AT_A_TIME_LOCK_FILE).
chaos_lock="${TMPDIR:-/tmp}/sluice-chaos.lock"

say() { printf 'chaos-broken: %s\n' "$*" >&2; }

say "building the broker with the planted defect ($feature) into $planted_target"
cargo build -p sluice --features "$feature" --target-dir "$planted_target"
binary="$PWD/$planted_target/debug/sluice"
[[ -x "$binary" ]] || { say "FAIL: no broker binary at $binary"; exit 1; }

# The harness is the normal build's test; only the broker it starts differs.
# Built first, so that a build failure is told apart from a failed run and
# the timeout below covers the run alone.
say "building the chaos test"
cargo test -p sluice --test chaos --no-run

if command -v flock >/dev/null 2>&1 && ! flock -n "$chaos_lock" true 2>/dev/null; then
    say "another chaos test holds $chaos_lock; this one waits for it"
fi

output="$(mktemp "${TMPDIR:-/tmp}/chaos-broken.XXXXXX")"
trap 'rm -f "$output"' EXIT
say "running $test_name against $binary ($SLUICE_CHAOS_SECS s of faults)"
status=0
# timeout signals its whole process group (cargo and the test); the brokers
# die with the test (PR_SET_PDEATHSIG in bin/tests/common).
SLUICE_TEST_BINARY="$binary" timeout "$run_timeout_secs" \
    cargo test -p sluice --test chaos "$test_name" -- --exact --nocapture 2>&1 \
    | tee "$output" || status=$?

if [[ $status -eq 0 ]]; then
    say "FAIL: the chaos test passed against a broker that loses an acknowledged write"
    exit 1
fi
if [[ $status -eq 124 ]]; then
    say "FAIL: the chaos test did not finish within ${run_timeout_secs} s"
    exit 1
fi
# The checker's verdict as chaos.rs prints it when the test fails: the count,
# then each anomaly's kind (AnomalyKind's name, perf/src/history.rs) on a
# line of its own, followed by the operations that show it.
if ! grep -q 'anomalies in a history of' "$output" || ! grep -q '^LostWrite:$' "$output"; then
    say "FAIL: the chaos test failed (exit $status), but not with a lost write reported: see above"
    exit 1
fi
say "PASS: the harness caught the planted defect: $(grep -m1 'anomalies in a history of' "$output")"
say "anomalies shown, by kind: $(grep -E '^[A-Z][A-Za-z]+:$' "$output" | sort | uniq -c | tr -s ' \n' ' ')"
