#!/usr/bin/env bash
# Runs the same workloads against Sluice and against Tansu (a Kafka-compatible
# Rust broker) in one session, with Tansu's durable SQLite engine and its
# in-memory engine, then draws all of them on one plot per workload.
#
# Run by hand, not in CI: installing Tansu compiles it from source (many
# minutes). Tansu is installed outside the repository and nothing of it is
# committed.
#
#   perf/peer-tansu.sh [WORKLOAD.toml ...]
#
# Environment: WARMUP and DURATION (seconds, default 10 and 30), OUT (result
# directory), TANSU_ROOT (where `cargo install` puts Tansu), TANSU_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."

WARMUP=${WARMUP:-10}
DURATION=${DURATION:-30}
OUT=${OUT:-perf-results/peer-$(date +%Y%m%d-%H%M%S)}
TANSU_ROOT=${TANSU_ROOT:-$HOME/.cache/sluice-perf/tansu}
TANSU_PORT=${TANSU_PORT:-19092}
# dynostore brings the memory:// engine, libsql the sqlite:// one (see
# `cargo info tansu`).
TANSU_FEATURES=dynostore,libsql
if [ $# -gt 0 ]; then
    WORKLOADS=("$@")
else
    WORKLOADS=(perf/workloads/1-topic-100-partitions-1kb-4-producers-max.toml)
fi

mkdir -p "$OUT"
TANSU="$TANSU_ROOT/bin/tansu"
if [ ! -x "$TANSU" ]; then
    echo "installing tansu (features $TANSU_FEATURES) into $TANSU_ROOT; this takes a while"
    cargo install tansu --locked --features "$TANSU_FEATURES" --root "$TANSU_ROOT"
fi

cargo build --release -q -p sluice -p sluice-perf
PERF=target/release/sluice-perf

# One set of machine limits for the whole session.
"$PERF" baseline --out "$OUT/baseline.json"

TANSU_PID=
TANSU_DIR=
stop_tansu() {
    if [ -n "$TANSU_PID" ]; then
        kill "$TANSU_PID" 2>/dev/null || true
        wait "$TANSU_PID" 2>/dev/null || true
        TANSU_PID=
    fi
    if [ -n "$TANSU_DIR" ]; then
        rm -rf "$TANSU_DIR"
        TANSU_DIR=
    fi
}
trap stop_tansu EXIT

start_tansu() { # storage-engine URL
    "$TANSU" broker \
        --storage-engine "$1" \
        --listener-url "tcp://127.0.0.1:$TANSU_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$TANSU_PORT" \
        >"$OUT/tansu.log" 2>&1 &
    TANSU_PID=$!
    for _ in $(seq 1 150); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$TANSU_PORT") 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    echo "tansu did not start; see $OUT/tansu.log" >&2
    exit 1
}

run_perf() { # name workload [extra args...]; prints the result file
    local name=$1 workload=$2
    shift 2
    mkdir -p "$OUT/$name"
    # The run's own output goes to the terminal; only the path is captured.
    "$PERF" run --workload "$workload" --warmup "$WARMUP" --duration "$DURATION" \
        --baseline "$OUT/baseline.json" --label "$name" --out "$OUT/$name" "$@" >&2
    ls -t "$OUT/$name"/*.json | head -n 1
}

for workload in "${WORKLOADS[@]}"; do
    stem=$(basename "$workload" .toml)
    partitions=$(sed -n 's/^partitions_per_topic *= *\([0-9]*\).*/\1/p' "$workload")
    results=()

    results+=("$(run_perf "sluice-$stem" "$workload")")

    for engine in memory sqlite; do
        if [ "$engine" = memory ]; then
            start_tansu "memory://tansu/"
        else
            TANSU_DIR=$(mktemp -d)
            # Four slashes: Tansu takes the URL path after "sqlite://" as relative.
            start_tansu "sqlite:///$TANSU_DIR/tansu.db"
        fi
        # Tansu has no topic auto-creation; sluice-perf creates topics with
        # CreateTopics, and creating them with Tansu's own CLI first covers a
        # broker that answers CreateTopics differently.
        prefix="peer-$(date +%s)-$stem"
        "$TANSU" topic create "$prefix-0" --partitions "$partitions" \
            --broker "tcp://127.0.0.1:$TANSU_PORT" >/dev/null 2>&1 || true
        results+=("$(run_perf "tansu-$engine-$stem" "$workload" \
            --bootstrap "127.0.0.1:$TANSU_PORT" --broker-name "tansu-$engine" \
            --topic-prefix "$prefix" --broker-pid "$TANSU_PID")")
        stop_tansu
    done

    "$PERF" compare "${results[@]}" --out "$OUT/$stem-compare" --title "$stem: Sluice vs Tansu"
done
echo "results in $OUT"
