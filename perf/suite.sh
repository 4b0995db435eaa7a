#!/usr/bin/env bash
# Runs the published workload set REPEAT times each, interleaved (round 1 of
# every workload, then round 2, ...) so that a slow phase of a shared
# machine spreads over all workloads instead of spoiling one, with the
# machine's baseline measured again before every run. Then prints the
# medians over the rounds (`sluice-perf summarize`) and draws one plot.
#
#   perf/suite.sh [WORKLOAD.toml ...]
#
# Environment: REPEAT (default 3), WARMUP and DURATION (seconds, default 5
# and 15), BASELINE_SECS (default 3), OUT (result directory), CLIENT
# (sluice or rdkafka; rdkafka needs sluice-perf built with that feature),
# EXTRA (more `sluice-perf run` flags, e.g. "--bootstrap host:9092").
set -euo pipefail
cd "$(dirname "$0")/.."

REPEAT=${REPEAT:-3}
WARMUP=${WARMUP:-5}
DURATION=${DURATION:-15}
BASELINE_SECS=${BASELINE_SECS:-3}
CLIENT=${CLIENT:-sluice}
OUT=${OUT:-perf-results/suite-$(date +%Y%m%d-%H%M%S)}
EXTRA=${EXTRA:-}
if [ $# -gt 0 ]; then
    WORKLOADS=("$@")
else
    WORKLOADS=(
        perf/workloads/1-topic-100-partitions-1kb-4-producers-max.toml
        perf/workloads/1-topic-100-partitions-1kb-50-producers-max.toml
        perf/workloads/1-topic-100-partitions-1kb-4-producers-keyed-max.toml
        perf/workloads/1-topic-100-partitions-1kb-4-producers-fixed-rate.toml
        perf/workloads/1-topic-100-partitions-1kb-4-producers-200mbps.toml
        perf/workloads/1-topic-100-partitions-1kb-4-producers-acks-all-fsync.toml
        perf/workloads/1-topic-100-partitions-1kb-consume-backlog.toml
        perf/workloads/1-topic-100-partitions-1kb-consume-backlog-disk.toml
        perf/workloads/10k-partitions.toml
    )
fi

command -v fio >/dev/null 2>&1 && command -v iperf3 >/dev/null 2>&1 || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq fio iperf3
}
features=()
if [ "$CLIENT" = rdkafka ]; then
    features=(--features rdkafka)
fi
cargo build --release -q -p sluice
cargo build --release -q -p sluice-perf "${features[@]}"
PERF=target/release/sluice-perf

mkdir -p "$OUT"
# The latency run is made at half of the peak the 4-producer max-rate run
# measured in the same round (`--rate-of`); it keeps its file's fixed rate
# when that run is not in the set or failed.
PEAK_WORKLOAD=1-topic-100-partitions-1kb-4-producers-max
for round in $(seq 1 "$REPEAT"); do
    peak=""
    for workload in "${WORKLOADS[@]}"; do
        name=$(basename "$workload" .toml)
        rate=()
        if [[ $name == *fixed-rate* && -n $peak ]]; then
            rate=(--rate-of "$peak:0.5")
        fi
        echo "== round $round/$REPEAT: $workload ${rate[*]}"
        # shellcheck disable=SC2086 # EXTRA is a list of flags
        if "$PERF" run --workload "$workload" --client "$CLIENT" \
            --warmup "$WARMUP" --duration "$DURATION" \
            --baseline auto --baseline-secs "$BASELINE_SECS" \
            --out "$OUT" --quiet "${rate[@]}" $EXTRA >"$OUT/run-$round-$name.txt" 2>&1; then
            if [ "$name" = "$PEAK_WORKLOAD" ]; then
                peak=$(ls -t "$OUT"/*-"$PEAK_WORKLOAD"-*.json | head -1)
            fi
        else
            echo "   failed; see $OUT/run-$round-$name.txt"
        fi
    done
done
"$PERF" summarize "$OUT"/*.json | tee "$OUT/summary.md"
"$PERF" compare "$OUT"/*.json --out "$OUT/all" --title "sluice-perf suite" >/dev/null
echo "results in $OUT (summary.md, all.svg, one JSON and SVG per run)"
