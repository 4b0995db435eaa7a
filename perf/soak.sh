#!/usr/bin/env bash
# A replication soak: hundreds of faults against a local 3-node cluster of
# real `sluice` processes, every one checked. Runs the replication tests of
# bin/tests/replication.rs with their own checks (every acknowledged record
# at its offset, none twice, per-partition order, replicas byte-identical):
#
#   1. `failover_time_over_repeated_kills` with KILLS kill -9s of the broker
#      leading the most partitions, each restarted and caught up before the
#      next (one cluster, one producer throughout);
#   2. the fault scenarios ROUNDS times each: kill -9 of each leader in turn
#      (3 kills), SIGSTOP past the session timeout, SIGTERM, a network
#      partition (needs root), a full disk (needs root), a reassignment
#      under load, a follower killed while cut off and restarted at once
#      (needs root); and the transaction test across kill -9 of its
#      coordinator (bin/tests/coordinators.rs). Ignored tests run too.
#
# Prints each part's outcome and a summary line: faults injected, parts
# passed and failed, and the failover times over the kills. Exit status 1
# if any part failed; every part's output is kept in OUT.
#
#   perf/soak.sh
#
# Environment: KILLS (default 200), ROUNDS (default 10), OUT (result
# directory, default a new one under /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."

KILLS=${KILLS:-200}
ROUNDS=${ROUNDS:-10}
OUT=${OUT:-$(mktemp -d /tmp/sluice-soak.XXXXXX)}
mkdir -p "$OUT"

# Faults each scenario injects, to count them.
declare -A FAULTS=(
    [kill_each_leader_in_turn]=3
    [sigstop_leader_loses_leadership]=1
    [sigterm_hands_leadership_over_first]=1
    [network_partition_cuts_off_a_leader]=1
    [a_full_disk_takes_only_its_broker_out_of_the_isrs]=1
    [reassignment_to_a_new_broker_under_load]=1
    [a_follower_restarted_before_it_was_fenced_leaves_the_isrs_first]=1
)

test_binary() {
    cargo test --test "$1" --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])'
}

cargo test --test replication --test coordinators --no-run >/dev/null
replication=$(test_binary replication)
coordinators=$(test_binary coordinators)

faults=0
passed=0
failed=0
run_part() {
    local name=$1 count=$2
    shift 2
    local log="$OUT/$name.log"
    local started=$SECONDS
    if "$@" >"$log" 2>&1; then
        passed=$((passed + 1))
        faults=$((faults + count))
        echo "ok     $name ($count faults, $((SECONDS - started)) s)"
    else
        failed=$((failed + 1))
        echo "FAILED $name: see $log"
    fi
}

run_part "failover-$KILLS-kills" "$KILLS" \
    env SLUICE_REPLICATION_KILLS="$KILLS" "$replication" --exact failover_time_over_repeated_kills --nocapture
for round in $(seq 1 "$ROUNDS"); do
    for scenario in "${!FAULTS[@]}"; do
        run_part "$scenario-$round" "${FAULTS[$scenario]}" \
            "$replication" --exact "$scenario" --include-ignored --nocapture
    done
    run_part "transactions-coordinator-kill-$round" 1 \
        "$coordinators" --exact transactions_survive_the_loss_of_their_coordinator --include-ignored --nocapture
done
grep -h "failover over" "$OUT"/failover-*.log || true
echo "soak: $faults faults injected; $passed parts passed, $failed failed (logs of failures in $OUT)"
[ "$failed" -eq 0 ]
