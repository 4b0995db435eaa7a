#!/usr/bin/env bash
# How long a new broker takes to catch up a large cluster's metadata:
# starts a local 3-node Sluice cluster (free ports, temporary data
# directories), then starts a fourth broker that is not a voter (an
# observer, as a broker added to a running Kafka cluster is) with an empty
# data directory, and times it from its launch until it serves a Metadata
# answer naming every partition. That is done REPEAT times with no topics
# (the baseline in the same run: process start, listening, fetching an
# empty image), then TOPICS topics of PARTITIONS partitions with
# REPLICATION_FACTOR replicas are created (timed: the metadata write rate),
# and the fourth broker joins REPEAT more times, each time from an empty
# directory, so it must take the whole image from the quorum. The
# difference between the two medians is what the partitions cost. Last, a
# voter is restarted REPEAT times (its own metadata log and snapshot
# replayed, its 10,000 replicas' logs opened), timed the same way and
# also until it is back in the ISR of every partition it holds (its
# leaders ask the controller to take it back: thousands of ISR changes).
#
#   perf/metadata-catchup.sh
#
# Environment: TOPICS (default 10), PARTITIONS (per topic, default 1000),
# REPLICATION_FACTOR (default 3), REPEAT (joins each way, default 5), OUT
# (result directory), BUILD (1, the default, builds the release binary
# first; 0 uses it as it is), SLUICE (the binary, with BUILD=0), BROKER_ARGS
# (more flags for every node).
set -euo pipefail
cd "$(dirname "$0")/.."
# $EPOCHREALTIME, awk and sort read and write numbers with a decimal point.
export LC_ALL=C

if [ $# -gt 0 ]; then
    case $1 in
    -h | --help)
        sed -n '2,/^set -euo pipefail/p' "$0" | sed -n 's/^# \{0,1\}//p'
        exit 0
        ;;
    *)
        echo "perf/metadata-catchup.sh takes no arguments (settings are environment variables; see --help)" >&2
        exit 2
        ;;
    esac
fi

TOPICS=${TOPICS:-10}
PARTITIONS=${PARTITIONS:-1000}
REPLICATION_FACTOR=${REPLICATION_FACTOR:-3}
REPEAT=${REPEAT:-5}
OUT=${OUT:-perf-results/metadata-catchup-$(date +%Y%m%d-%H%M%S)}
BUILD=${BUILD:-1}
BROKER_ARGS=${BROKER_ARGS:-}

NODES=3
# The broker that joins: the next id after the voters.
JOINER=$((NODES + 1))
# Poll interval while the joiner catches up: one poll is one admin
# request (tens of ms of the shared CPU), and the timing is resolved to
# about this much.
POLL_SECS=0.05
# A joiner that has not caught up by then is stuck: the run stops with its
# log.
CATCHUP_TIMEOUT_SECS=300
# Poll interval for whole ISRs: one poll describes every topic, which
# costs more than a Metadata request.
ISR_POLL_SECS=0.2

fail_usage() {
    echo "$1" >&2
    exit 2
}
is_count() {
    [[ $1 =~ ^[1-9][0-9]*$ ]]
}
is_count "$TOPICS" || fail_usage "TOPICS must be a positive integer, got '$TOPICS'"
is_count "$PARTITIONS" || fail_usage "PARTITIONS must be a positive integer, got '$PARTITIONS'"
is_count "$REPLICATION_FACTOR" || fail_usage "REPLICATION_FACTOR must be a positive integer, got '$REPLICATION_FACTOR'"
[ "$REPLICATION_FACTOR" -le "$NODES" ] || fail_usage "REPLICATION_FACTOR must be at most $NODES"
is_count "$REPEAT" || fail_usage "REPEAT must be a positive integer, got '$REPEAT'"
[[ $BUILD == [01] ]] || fail_usage "BUILD must be 0 or 1, got '$BUILD'"
TOTAL=$((TOPICS * PARTITIONS))

SLUICE=${SLUICE:-target/release/sluice}
# shellcheck source=perf/cluster-lib.sh
source perf/cluster-lib.sh
if [ "$BUILD" = 1 ]; then
    cargo build --release -q -p sluice
fi
[ -x "$SLUICE" ] || {
    echo "missing $SLUICE (run with BUILD=1)" >&2
    exit 1
}
require_jq

mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-metadata.XXXXXX")
LOG_DIR=$OUT
joiner_pid=""
stop_all() {
    if [ -n "$joiner_pid" ]; then
        kill -9 "$joiner_pid" 2>/dev/null || true
        wait "$joiner_pid" 2>/dev/null || true
    fi
    stop_cluster
}
trap stop_all EXIT
trap 'exit 130' INT TERM

now() {
    echo "$EPOCHREALTIME"
}

# Partitions of the benchmark's topics in the Metadata answer of the broker
# at $1 (empty while it does not answer).
partitions_seen() {
    "$SLUICE" topic list --bootstrap "$1" --json 2>/dev/null |
        jq '[.topics[] | select(.name | startswith("meta-")) | .partitions] | add // 0' 2>/dev/null || true
}

# Whether more than CATCHUP_TIMEOUT_SECS passed since $1.
timed_out() {
    awk -v start="$1" -v now="$(now)" -v limit="$CATCHUP_TIMEOUT_SECS" \
        'BEGIN { exit !(now - start > limit) }'
}

# Stops the run with message $1 and the tail of node $2's log.
fail_with_log() {
    echo "$1; its log:" >&2
    tail -n 20 "$LOG_DIR/broker-$2.log" >&2
    exit 1
}

# Partitions of the benchmark's topics whose ISR (as node 1 answers) lacks
# a replica, or "?" while node 1 does not answer.
partitions_short_of_isr() {
    local topic short=0 count
    for topic in $(seq 1 "$TOPICS"); do
        count=$("$SLUICE" topic describe "meta-$topic" --bootstrap "$BOOTSTRAP" --json 2>/dev/null |
            jq '[.partitions[] | select((.isr | length) < (.replicas | length))] | length' 2>/dev/null) || count=""
        if [ -z "$count" ]; then
            echo "?"
            return
        fi
        short=$((short + count))
    done
    echo "$short"
}

# Starts the joiner from an empty data directory and prints, tab-separated,
# the seconds from its launch until it listened and until its Metadata
# named all `$1` partitions; then stops it (SIGTERM) and removes its data.
join_once() {
    local expected=$1 port started listening="" caught="" seen
    port=$(free_port)
    rm -rf "${WORK:?}/$JOINER"
    mkdir -p "$WORK/$JOINER"
    started=$(now)
    # shellcheck disable=SC2086 # BROKER_ARGS is a list of flags
    "$SLUICE" --node-id "$JOINER" --data-dir "$WORK/$JOINER" \
        --listen "127.0.0.1:$port" --controller-voters "$voters" \
        --shards 1 --pin-shards false \
        $BROKER_ARGS >>"$LOG_DIR/broker-$JOINER.log" 2>&1 &
    joiner_pid=$!
    while [ -z "$caught" ]; do
        if ! kill -0 "$joiner_pid" 2>/dev/null; then
            fail_with_log "the joining broker exited" "$JOINER"
        fi
        if timed_out "$started"; then
            fail_with_log "the joining broker had not caught up after $CATCHUP_TIMEOUT_SECS s" "$JOINER"
        fi
        if [ -z "$listening" ] && port_in_use "$port"; then
            listening=$(now)
        fi
        if [ -n "$listening" ]; then
            seen=$(partitions_seen "127.0.0.1:$port")
            if [ "$seen" = "$expected" ]; then
                caught=$(now)
                break
            fi
        fi
        sleep "$POLL_SECS"
    done
    kill "$joiner_pid" 2>/dev/null || true
    wait "$joiner_pid" 2>/dev/null || true
    joiner_pid=""
    awk -v s="$started" -v l="$listening" -v c="$caught" 'BEGIN { printf "%.3f\t%.3f\n", l - s, c - s }'
}

TSV=$OUT/metadata-catchup.tsv
printf 'partitions\trun\tlistening_s\tcaught_up_s\tisr_whole_s\n' >"$TSV"
join_rounds() {
    local expected=$1 run row
    for run in $(seq 1 "$REPEAT"); do
        check_alive
        row=$(join_once "$expected")
        printf '%s\t%s\t%s\t-\n' "$expected" "$run" "$row" | tee -a "$TSV"
    done
}

start_cluster
echo "baseline: a broker joins a cluster with no topics ($REPEAT times)"
join_rounds 0

echo "creating $TOPICS topics of $PARTITIONS partitions × $REPLICATION_FACTOR replicas"
created_at=$(now)
for topic in $(seq 1 "$TOPICS"); do
    check_alive
    "$SLUICE" topic create "meta-$topic" --partitions "$PARTITIONS" \
        --replication-factor "$REPLICATION_FACTOR" --bootstrap "$BOOTSTRAP" \
        --config "min.insync.replicas=1" >/dev/null
done
create_secs=$(awk -v s="$created_at" -v e="$(now)" 'BEGIN { printf "%.3f", e - s }')
seen=$(partitions_seen "$BOOTSTRAP")
[ "$seen" = "$TOTAL" ] || {
    echo "node 1 names $seen partitions after creating $TOTAL" >&2
    exit 1
}
echo "created $TOTAL partitions in $create_secs s"
# The metadata log and snapshots, less the space reserve kept beside them
# for a full disk.
meta_bytes=$(du -sb --exclude=space.reserve "$WORK/1/meta" | cut -f1)

echo "a broker joins a cluster of $TOTAL partitions ($REPEAT times)"
join_rounds "$TOTAL"

# A voter restarted (SIGTERM, so a controlled shutdown first) replays its
# own snapshot and log, opens its replicas' logs and catches up what was
# written while it was down. Timed the same way, from its launch.
RESTARTED=$NODES
echo "voter $RESTARTED restarts in a cluster of $TOTAL partitions ($REPEAT times)"
for run in $(seq 1 "$REPEAT"); do
    check_alive
    stop_nodes "$RESTARTED"
    started=$(now)
    start_node "$RESTARTED"
    address="127.0.0.1:${kafka_ports[RESTARTED - 1]}"
    listening=""
    until [ "$(partitions_seen "$address")" = "$TOTAL" ]; do
        [ -z "$listening" ] && port_in_use "${kafka_ports[RESTARTED - 1]}" && listening=$(now)
        if ! kill -0 "${pids[RESTARTED - 1]}" 2>/dev/null || timed_out "$started"; then
            fail_with_log "voter $RESTARTED did not catch up" "$RESTARTED"
        fi
        sleep "$POLL_SECS"
    done
    caught=$(now)
    [ -n "$listening" ] || listening=$caught
    until [ "$(partitions_short_of_isr)" = 0 ]; do
        check_alive
        if timed_out "$started"; then
            fail_with_log "voter $RESTARTED was not back in every ISR after $CATCHUP_TIMEOUT_SECS s" "$RESTARTED"
        fi
        sleep "$ISR_POLL_SECS"
    done
    whole=$(now)
    row=$(awk -v s="$started" -v l="$listening" -v c="$caught" -v w="$whole" 'BEGIN { printf "%.3f\t%.3f\t%.3f", l - s, c - s, w - s }')
    printf 'restart-%s\t%s\t%s\n' "$TOTAL" "$run" "$row" | tee -a "$TSV"
    # The next restart starts from a cluster whose ISRs are whole again.
    wait_registered "$NODES"
done

median() {
    awk -F'\t' -v p="$1" -v col="$2" 'NR > 1 && $1 == p { print $col }' "$TSV" | sort -g | awk '
        { value[NR] = $1 }
        END { if (NR % 2) print value[(NR + 1) / 2]; else print (value[NR / 2] + value[NR / 2 + 1]) / 2 }'
}
range() {
    awk -F'\t' -v p="$1" -v col="$2" 'NR > 1 && $1 == p { print $col }' "$TSV" | sort -g |
        awk 'NR == 1 { low = $1 } { high = $1 } END { printf "%s–%s", low, high }'
}
SUMMARY=$OUT/metadata-catchup-summary.md
{
    echo "| cluster | joins | launch → listening (median, range) | launch → every partition in its Metadata (median, range) |"
    echo "|---|---|---|---|"
    echo "| no topics | $REPEAT | $(median 0 3) s ($(range 0 3)) | $(median 0 4) s ($(range 0 4)) |"
    echo "| $TOTAL partitions × $REPLICATION_FACTOR | $REPEAT | $(median "$TOTAL" 3) s ($(range "$TOTAL" 3)) | $(median "$TOTAL" 4) s ($(range "$TOTAL" 4)) |"
    echo "| $TOTAL partitions × $REPLICATION_FACTOR, voter $RESTARTED restarted | $REPEAT | $(median "restart-$TOTAL" 3) s ($(range "restart-$TOTAL" 3)) | $(median "restart-$TOTAL" 4) s ($(range "restart-$TOTAL" 4)) |"
    echo
    echo "The restarted voter was back in every ISR $(median "restart-$TOTAL" 5) s ($(range "restart-$TOTAL" 5)) after its launch."
    echo
    echo "Creating the $TOPICS topics ($TOTAL partitions) took $create_secs s; node 1's metadata directory (log and snapshots) holds $meta_bytes bytes."
} | tee "$SUMMARY"
