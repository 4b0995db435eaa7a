#!/usr/bin/env bash
# What replication costs: starts a local 3-node Sluice cluster (free ports,
# temporary data directories) and runs replicated-rf3-acks-all and its
# baseline replicated-rf1-acks-all against it in the same session, so the
# two ack latencies differ only by the replication, not by the machine or
# the hour. Alongside each run it reads the CPU time of the three broker
# processes (utime + stime from /proc/PID/stat, before and after the run)
# and prints broker CPU seconds per MB produced: replication's other price.
#
#   perf/replication.sh [WORKLOAD.toml ...]
#
# Environment: REPEAT (default 1; rounds alternate which workload goes
# first, so neither always runs on a warmer cluster), WARMUP and DURATION
# (seconds; default: the workloads' own 10 and 30), BASELINE (auto, the
# default: measure the disk and loopback once before the cluster starts,
# or none), BASELINE_SECS (default 3), OUT (result directory), BUILD (1,
# the default, builds the release binaries first; 0 uses them as they
# are), BROKER_ARGS (more flags for every node), EXTRA (more
# `sluice-perf run` flags).
set -euo pipefail
cd "$(dirname "$0")/.."

REPEAT=${REPEAT:-1}
WARMUP=${WARMUP:-}
DURATION=${DURATION:-}
BASELINE=${BASELINE:-auto}
BASELINE_SECS=${BASELINE_SECS:-3}
OUT=${OUT:-perf-results/replication-$(date +%Y%m%d-%H%M%S)}
BUILD=${BUILD:-1}
BROKER_ARGS=${BROKER_ARGS:-}
EXTRA=${EXTRA:-}
if [ $# -gt 0 ]; then
    WORKLOADS=("$@")
else
    WORKLOADS=(
        perf/workloads/replicated-rf3-acks-all.toml
        perf/workloads/replicated-rf1-acks-all.toml
    )
fi

NODES=3
# Seconds the idle cluster's CPU use is measured over, to tell the
# per-MB figures' fixed part (quorum heartbeats, follower fetch polls)
# from the part that grows with the data.
IDLE_SECS=5
BYTES_PER_MB=1000000

SLUICE=target/release/sluice
PERF=target/release/sluice-perf
# shellcheck source=perf/cluster-lib.sh
source perf/cluster-lib.sh
if [ "$BUILD" = 1 ]; then
    cargo build --release -q -p sluice
    cargo build --release -q -p sluice-perf
fi
for binary in "$SLUICE" "$PERF"; do
    [ -x "$binary" ] || {
        echo "missing $binary (run with BUILD=1)" >&2
        exit 1
    }
done
require_jq

mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-replication.XXXXXX")
LOG_DIR=$OUT
trap stop_cluster EXIT
trap 'exit 130' INT TERM

# The machine's limits, measured before the brokers start so that their
# background work does not disturb the disk and loopback figures.
if [ "$BASELINE" = auto ]; then
    if ! command -v fio >/dev/null 2>&1 || ! command -v iperf3 >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq fio iperf3 >/dev/null
    fi
    "$PERF" baseline --dir "$WORK" --secs "$BASELINE_SECS" --out "$OUT/baseline.json"
    baseline_flag=(--baseline "$OUT/baseline.json")
else
    baseline_flag=(--baseline none)
fi

start_cluster

TICKS_PER_SEC=$(getconf CLK_TCK)
# utime + stime of every broker, in clock ticks. The command name in field 2
# may contain spaces, so fields are counted after its closing ')': utime
# and stime (fields 14 and 15) are then the 12th and 13th.
broker_ticks() {
    local pid total=0 fields
    for pid in "${pids[@]}"; do
        fields=$(sed 's/.*) //' "/proc/$pid/stat")
        total=$((total + $(awk '{print $12 + $13}' <<<"$fields")))
    done
    echo "$total"
}

idle_before=$(broker_ticks)
sleep "$IDLE_SECS"
idle_after=$(broker_ticks)
IDLE_CORES=$(awk -v ticks=$((idle_after - idle_before)) -v hz="$TICKS_PER_SEC" -v secs="$IDLE_SECS" \
    'BEGIN { printf "%.3f", ticks / hz / secs }')
echo "idle cluster: brokers use $IDLE_CORES cores"

durations=()
[ -n "$WARMUP" ] && durations+=(--warmup "$WARMUP")
[ -n "$DURATION" ] && durations+=(--duration "$DURATION")
broker_pid_flags=()
for pid in "${pids[@]}"; do
    broker_pid_flags+=(--broker-pid "$pid")
done

# One line per run: the result file, and the brokers' CPU over the whole
# run (topic creation, warm-up, measured window, drain, topic deletion).
CPU_TSV=$OUT/broker-cpu.tsv
printf 'round\tworkload\tresult\tbroker_cpu_secs\twall_secs\tidle_cores\n' >"$CPU_TSV"
for round in $(seq 1 "$REPEAT"); do
    order=("${WORKLOADS[@]}")
    if [ $((round % 2)) -eq 0 ]; then
        order=()
        for ((index = ${#WORKLOADS[@]} - 1; index >= 0; index--)); do
            order+=("${WORKLOADS[index]}")
        done
    fi
    for workload in "${order[@]}"; do
        name=$(basename "$workload" .toml)
        log=$OUT/run-$round-$name.txt
        echo "== round $round/$REPEAT: $name"
        check_alive
        ticks_before=$(broker_ticks)
        started=$(date +%s.%N)
        # Every run creates its own topic (sluice-perf's default prefix is
        # unique per run) and deletes it afterwards, so one cluster serves
        # all runs without one run's data in the next one's partitions.
        # shellcheck disable=SC2086 # EXTRA is a list of flags
        if "$PERF" run --workload "$workload" --bootstrap "$BOOTSTRAP" \
            --broker-name sluice-3-nodes "${broker_pid_flags[@]}" \
            "${durations[@]}" "${baseline_flag[@]}" \
            --out "$OUT" --quiet $EXTRA >"$log" 2>&1; then
            check_alive
            ticks_after=$(broker_ticks)
            ended=$(date +%s.%N)
            result=$(sed -n 's/^wrote \(.*\.json\) and .*/\1/p' "$log")
            awk -v round="$round" -v name="$name" -v result="$result" \
                -v ticks=$((ticks_after - ticks_before)) -v hz="$TICKS_PER_SEC" \
                -v started="$started" -v ended="$ended" -v idle="$IDLE_CORES" \
                'BEGIN { printf "%s\t%s\t%s\t%.3f\t%.3f\t%s\n", round, name, result,
                         ticks / hz, ended - started, idle }' >>"$CPU_TSV"
            echo "   $result"
        else
            echo "   failed; see $log"
        fi
    done
done

# Per run: ack latency, throughput, and the brokers' CPU per MB produced.
# The MB are every acknowledged message of the run (warm-up included), as
# the CPU time spans the whole run; "above idle" takes away what the idle
# cluster would have used over the same wall time. With RF=3 the brokers'
# CPU includes the followers' fetches and writes, with RF=1 it does not.
SUMMARY=$OUT/replication-summary.md
{
    echo "| run | workload | ack p50 ms | ack p99 ms | ack p99.9 ms | e2e p99 ms | produce msg/s | produce MB/s | broker CPU s | broker CPU s/MB | above idle s/MB |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    tail -n +2 "$CPU_TSV" | while IFS=$'\t' read -r round name result cpu wall idle; do
        jq -r --argjson cpu "$cpu" --argjson wall "$wall" --argjson idle "$idle" \
            --arg round "$round" --arg name "$name" --argjson mb "$BYTES_PER_MB" '
            (.totals.acked * .workload.message_size / $mb) as $produced
            | [$round, $name,
               (.ack_latency.p50_us | round / 1000),
               (.ack_latency.p99_us | round / 1000),
               (.ack_latency.p999_us | round / 1000),
               (.e2e_latency.p99_us | round / 1000),
               (.produce.msg_per_sec | round),
               (.produce.mb_per_sec * 100 | round / 100),
               ($cpu * 100 | round / 100),
               (if $produced > 0 then ($cpu / $produced * 10000 | round / 10000) else "—" end),
               (if $produced > 0 then (($cpu - $idle * $wall) / $produced * 10000 | round / 10000)
                else "—" end)]
            | "| " + (map(tostring) | join(" | ")) + " |"' "$result"
    done
} | tee "$SUMMARY"

results=$(tail -n +2 "$CPU_TSV" | cut -f3)
if [ -z "$results" ]; then
    echo "no run succeeded; see $OUT/run-*.txt" >&2
    exit 1
fi
# The ratio the pair exists for: RF=3 over RF=1, medians over the rounds.
# shellcheck disable=SC2086 # one path per line, no spaces in them
jq -rs '
    def median: sort | if length % 2 == 1 then .[length / 2 | floor]
                       else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def of($name; f): [.[] | select(.workload.name == $name) | f] | median;
    def ran($name): any(.[]; .workload.name == $name);
    if ran("replicated-rf3-acks-all") and ran("replicated-rf1-acks-all") then
        "RF=3 / RF=1 ack latency: p50 \(of("replicated-rf3-acks-all"; .ack_latency.p50_us)
            / of("replicated-rf1-acks-all"; .ack_latency.p50_us) * 100 | round / 100)x, p99 \(
            of("replicated-rf3-acks-all"; .ack_latency.p99_us)
            / of("replicated-rf1-acks-all"; .ack_latency.p99_us) * 100 | round / 100)x"
    else empty end' $results | tee -a "$SUMMARY"
echo "machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), brokers and clients on the same machine" |
    tee -a "$SUMMARY"

# shellcheck disable=SC2086 # one path per line, no spaces in them
"$PERF" compare $results --out "$OUT/replication" --title "RF=3 vs RF=1, acks=all" >/dev/null
echo "results in $OUT (replication-summary.md, replication.svg, broker-cpu.tsv, one JSON and SVG per run, broker logs)"
