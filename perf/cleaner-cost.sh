#!/usr/bin/env bash
# The log cleaner's cost to producers: the compacted fixed-rate workload
# against a broker with its cleaner off and on, alternated round by round,
# then the medians of each (`sluice-perf summarize`) and what the cleaner
# did in each run (its counters on the admin port over 55 s of the window).
#
#   perf/cleaner-cost.sh
#
# By default the clients run on CPU 0 and the broker on the other CPUs, one
# shard per CPU, unpinned within them: a broker is deployed with cores of
# its own, its clients elsewhere, and on a machine whose clients share the
# broker's cores any work of the broker's shows up as the clients' wait for
# a CPU (README, "Compaction"). SHARED=1 runs clients and broker over all
# CPUs, as the rest of the suite does.
#
# Environment: ROUNDS (default 4), WORKLOAD, RATE (msg/s; default the
# workload's), OUT (result directory), SHARED.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-4}
WORKLOAD=${WORKLOAD:-perf/workloads/compacted-keyed-fixed-rate.toml}
OUT=${OUT:-perf-results/cleaner-cost-$(date +%Y%m%d-%H%M%S)}
SHARED=${SHARED:-0}
# When the cleaner counters are read: after the warm-up, then 55 s later.
SCRAPE_START_SECS=12
SCRAPE_SPAN_SECS=55

cargo build --release -q -p sluice -p sluice-perf
command -v curl >/dev/null 2>&1 || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq curl
}
PERF=target/release/sluice-perf
SLUICE=$PWD/target/release/sluice
mkdir -p "$OUT"

cpus=$(nproc)
client_cmd=()
broker_bin=$SLUICE
broker_args=()
if [ "$SHARED" != 1 ] && [ "$cpus" -ge 2 ]; then
    # The broker's CPUs through a wrapper that sluice-perf starts.
    broker_bin="$OUT/sluice-on-cpus"
    printf '#!/bin/sh\nexec taskset -c 1-%d %s "$@"\n' "$((cpus - 1))" "$SLUICE" >"$broker_bin"
    chmod +x "$broker_bin"
    client_cmd=(taskset -c 0)
    broker_args=(--shards "$((cpus - 1))" --broker-arg --pin-shards --broker-arg false)
fi
rate_args=()
if [ -n "${RATE:-}" ]; then
    rate_args=(--rate "$RATE")
fi

cleaner_counters() {
    curl -fsS "http://127.0.0.1:$1/metrics" |
        awk '/^sluice_cleaner_(io_bytes|bytes_removed)_total/ {split($1, name, "{"); sum[name[1]] += $2}
             END {for (k in sum) print k, sum[k]}'
}

for round in $(seq 1 "$ROUNDS"); do
    for cleaner in off on; do
        label="cleaner-$cleaner"
        admin=$((20000 + RANDOM % 20000))
        extra=()
        [ "$cleaner" = off ] && extra=(--broker-arg --log-cleaner-enable --broker-arg false)
        (
            sleep "$SCRAPE_START_SECS"
            cleaner_counters "$admin" | sed 's/^/start /'
            sleep "$SCRAPE_SPAN_SECS"
            cleaner_counters "$admin" | sed 's/^/end /'
        ) >"$OUT/$label-$round.counters" 2>/dev/null &
        scraper=$!
        echo "round $round: cleaner $cleaner" >&2
        "${client_cmd[@]}" "$PERF" run --workload "$WORKLOAD" --sluice-bin "$broker_bin" \
            --baseline none --label "$label" --out "$OUT/$label-$round" --quiet \
            --broker-arg --admin-listen --broker-arg "127.0.0.1:$admin" \
            "${broker_args[@]}" "${rate_args[@]}" "${extra[@]}" >"$OUT/$label-$round.txt"
        wait "$scraper" || true
        awk -v run="$label-$round" '{v[$1" "$2] = $3}
            END {printf "%s: cleaner I/O %.0f MB, removed %.0f MB over %d s\n", run,
                 (v["end sluice_cleaner_io_bytes_total"] - v["start sluice_cleaner_io_bytes_total"]) / 1e6,
                 (v["end sluice_cleaner_bytes_removed_total"] - v["start sluice_cleaner_bytes_removed_total"]) / 1e6,
                 '"$SCRAPE_SPAN_SECS"'}' "$OUT/$label-$round.counters" | tee -a "$OUT/cleaner.txt"
    done
done
"$PERF" summarize "$OUT"/cleaner-*/*.json | tee "$OUT/summary.md"
