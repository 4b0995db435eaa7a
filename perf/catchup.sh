#!/usr/bin/env bash
# How fast a follower catches up after a restart, next to what the disk can
# do: starts a local 3-node Sluice cluster (free ports, temporary data
# directories), creates a topic with three replicas, stops node 3 with
# SIGTERM (a controlled shutdown), produces BYTES of payload at the
# producers' maximum rate while it is down, starts it again and times it
# from the restart until it is back in the ISR of every partition. The
# catch-up rate is what node 3 had to copy (its partition directories' size
# after minus before) over that time. The disk's sequential O_DIRECT write
# (and read) bandwidth is measured with dd on the same file system in the
# same cycle, just before the restart, so the ratio compares the follower
# with the hardware of that moment, not of another day. A follower that
# rejoins at a small fraction of the disk's bandwidth is held back by
# something else (fetch sizes, round trips, CPU).
#
# Each cycle uses a fresh topic, deleted at its end, so every cycle starts
# from the same state and the disk does not fill up over REPEAT cycles.
#
#   perf/catchup.sh
#
# Environment: BYTES (payload produced while node 3 is down, default
# 2000000000), REPEAT (cycles, default 1; the median is printed), PARTITIONS
# (default 6), ACKS (1 or all, default all), PRODUCERS (default 4),
# MESSAGE_SIZE (default 1024), DISK_MB (MiB dd writes and reads, default
# 1024), OUT (result directory), BUILD (1, the default, builds the release
# binaries first; 0 uses them as they are), BROKER_ARGS (more flags for
# every node).
set -euo pipefail
cd "$(dirname "$0")/.."
# $EPOCHREALTIME, awk and sort read and write numbers with a decimal point.
export LC_ALL=C

usage() {
    sed -n '2,/^set -euo pipefail/p' "$0" | sed -n 's/^# \{0,1\}//p'
}
if [ $# -gt 0 ]; then
    case $1 in
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "perf/catchup.sh takes no arguments (settings are environment variables; see --help)" >&2
        exit 2
        ;;
    esac
fi

BYTES=${BYTES:-2000000000}
REPEAT=${REPEAT:-1}
PARTITIONS=${PARTITIONS:-6}
ACKS=${ACKS:-all}
PRODUCERS=${PRODUCERS:-4}
MESSAGE_SIZE=${MESSAGE_SIZE:-1024}
DISK_MB=${DISK_MB:-1024}
OUT=${OUT:-perf-results/catchup-$(date +%Y%m%d-%H%M%S)}
BUILD=${BUILD:-1}
BROKER_ARGS=${BROKER_ARGS:-}

NODES=3
# The node that is stopped and caught up. Any node would do; node 1 stays up
# so that it can always be the bootstrap address.
RESTARTED=3
BYTES_PER_MB=1000000
# sluice-perf counts its volume in whole MB.
BYTES_MIN=$BYTES_PER_MB
# acks=0 would leave the volume that reached the leaders unknown.
ACKS_ALLOWED="1 all"
# SIGTERM moves the node's leaderships first (controlled shutdown); if it
# was the active controller, the survivors then elect another, which takes
# up to a few seconds.
FENCE_TIMEOUT_SECS=30
# A new topic is usable once every replica is in its ISR.
TOPIC_READY_TIMEOUT_SECS=60
# After the producers finish, the survivors' logs must stop growing (a
# follower behind with acks=1 still copying) before the disk is measured
# and node 3 restarted: the catch-up must have the machine to itself.
SETTLE_TIMEOUT_SECS=300
QUIET_SECS=2
# Generous: at 10 MB/s, 2 GB take 200 s. A node that has not rejoined by
# then is stuck, and the run stops with its log.
CATCHUP_TIMEOUT_SECS=900
# Deleting a topic renames its partition directories on every node
# (.NAME.deleted-...) and removes them on a background thread, which on a
# file system that discards freed blocks can take seconds. The next
# cycle starts once both names are gone, so that its figures do not include
# the deletion.
DELETE_TIMEOUT_SECS=300
# See wait_registered_stable: the brokers must have stayed registered this
# long before a cycle creates its topic, and creating it is tried again if
# one was fenced all the same.
REGISTERED_SECS=5
CREATE_ATTEMPTS=3
# Interval of the ISR and directory-size polls during catch-up; one poll
# (an admin request and a du) costs some tens of ms of the shared CPU, and
# the timing is resolved to about this much.
POLL_SECS=0.2
# Free space wanted beyond three copies of BYTES and the dd file: record,
# batch and index overhead and slack.
DISK_HEADROOM_PERCENT=20

fail_usage() {
    echo "$1" >&2
    exit 2
}
is_count() {
    [[ $1 =~ ^[1-9][0-9]*$ ]]
}
is_count "$BYTES" || fail_usage "BYTES must be a positive integer (bytes), got '$BYTES'"
[ "$BYTES" -ge "$BYTES_MIN" ] || fail_usage "BYTES must be at least $BYTES_MIN, got $BYTES"
is_count "$REPEAT" || fail_usage "REPEAT must be a positive integer, got '$REPEAT'"
is_count "$PARTITIONS" || fail_usage "PARTITIONS must be a positive integer, got '$PARTITIONS'"
is_count "$PRODUCERS" || fail_usage "PRODUCERS must be a positive integer, got '$PRODUCERS'"
is_count "$MESSAGE_SIZE" || fail_usage "MESSAGE_SIZE must be a positive integer, got '$MESSAGE_SIZE'"
is_count "$DISK_MB" || fail_usage "DISK_MB must be a positive integer, got '$DISK_MB'"
[[ " $ACKS_ALLOWED " == *" $ACKS "* ]] || fail_usage "ACKS must be one of: $ACKS_ALLOWED, got '$ACKS'"
[[ $BUILD == [01] ]] || fail_usage "BUILD must be 0 or 1, got '$BUILD'"
BACKLOG_MB=$((BYTES / BYTES_PER_MB))

SLUICE=target/release/sluice
PERF=target/release/sluice-perf
# shellcheck source=perf/cluster-lib.sh
source perf/cluster-lib.sh
if [ "$BUILD" = 1 ]; then
    cargo build --release -q -p sluice -p sluice-perf
fi
for binary in "$SLUICE" "$PERF"; do
    [ -x "$binary" ] || {
        echo "missing $binary (run with BUILD=1)" >&2
        exit 1
    }
done
require_jq

mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-catchup.XXXXXX")
LOG_DIR=$OUT
trap stop_cluster EXIT
trap 'exit 130' INT TERM

needed=$(((BYTES * NODES + DISK_MB * 1048576) * (100 + DISK_HEADROOM_PERCENT) / 100))
available=$(df --output=avail -B1 "$WORK" | tail -n 1 | tr -d ' ')
if [ "$available" -lt "$needed" ]; then
    echo "$WORK's file system has $((available / BYTES_PER_MB)) MB free; a cycle needs about $((needed / BYTES_PER_MB)) MB" >&2
    exit 1
fi

# The producers' workload: sluice-perf's backlog mode sends exactly
# BACKLOG_MB of payload as fast as the leaders acknowledge, then stops. It
# needs a consumer; --drain-timeout 0 below ends the run as soon as the
# producers are done, so the consumer reads (almost) nothing. The topic
# exists already (created below with its configs) and is used as it is.
WORKLOAD=$WORK/catchup-produce.toml
cat >"$WORKLOAD" <<EOF
name = "catchup-produce"
description = "$BACKLOG_MB MB at max rate while one replica is down"
topics = 1
partitions_per_topic = $PARTITIONS
replication_factor = $NODES
message_size = $MESSAGE_SIZE
payload = "random"
key_distribution = "none"
producers_per_topic = $PRODUCERS
consumers_per_topic = 1
producer_rate = 0
acks = "$ACKS"
compression = "none"
batch_size = 131072
linger_ms = 1
max_in_flight = 5
consume_backlog_mb = $BACKLOG_MB
EOF

start_cluster

topic_json() {
    "$SLUICE" topic describe "$1" --bootstrap "$BOOTSTRAP" --json 2>/dev/null || true
}

# Whether the jq filter holds for every partition of the topic, and all
# PARTITIONS of them are there. An admin command that failed (a broker
# between leaders, say) prints nothing, and jq -e would take no input as
# success: that counts as not holding.
topic_holds() {
    local json
    json=$(topic_json "$1")
    [ -n "$json" ] && jq -e --argjson n "$PARTITIONS" --argjson node "$RESTARTED" \
        "(.partitions | length) == \$n and all(.partitions[]; $2)" <<<"$json" >/dev/null 2>&1
}

# Polls until topic_holds or the timeout passes.
wait_topic() {
    local topic=$1 filter=$2 timeout=$3 what=$4 deadline
    deadline=$((SECONDS + timeout))
    until topic_holds "$topic" "$filter"; do
        check_alive
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "topic $topic: $what not reached after $timeout s; its state:" >&2
            "$SLUICE" topic describe "$topic" --bootstrap "$BOOTSTRAP" >&2 || true
            exit 1
        fi
        sleep "$POLL_SECS"
    done
}
# jq filters over one partition; $node is jq's, not the shell's.
ALL_IN_SYNC='(.isr | length) == (.replicas | length)'
# shellcheck disable=SC2016
FENCED='.leader != $node and all(.isr[]; . != $node)'
SURVIVORS_IN_SYNC='(.isr | length) == (.replicas | length) - 1'
# shellcheck disable=SC2016
REJOINED='any(.isr[]; . == $node)'

# Waits until the cluster runs without the stopped node: it is not in the
# broker list and the active controller is another node. A stopped node
# that led the metadata quorum is still named as the controller until the
# survivors elect a new one, and clients send admin requests to it.
wait_controller_moved() {
    local json deadline
    deadline=$((SECONDS + FENCE_TIMEOUT_SECS))
    until json=$("$SLUICE" cluster info --bootstrap "$BOOTSTRAP" --json 2>/dev/null) &&
        [ -n "$json" ] && jq -e --argjson node "$RESTARTED" \
        '.controller_id >= 0 and .controller_id != $node and all(.brokers[]; .node_id != $node)' \
        <<<"$json" >/dev/null 2>&1; do
        check_alive
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "node $RESTARTED still a broker or the controller after $FENCE_TIMEOUT_SECS s:" >&2
            "$SLUICE" cluster info --bootstrap "$BOOTSTRAP" >&2 || true
            exit 1
        fi
        sleep "$POLL_SECS"
    done
}

# Waits until all NODES brokers have been registered for REGISTERED_SECS
# in a row. A broker that stalled past the session timeout is fenced until
# it registers again, and an RF=3 topic cannot be placed without it; such
# stalls were seen a few seconds after a cycle's topic deletion.
wait_registered_stable() {
    local since deadline
    deadline=$((SECONDS + REGISTER_TIMEOUT_SECS))
    since=""
    while true; do
        check_alive
        if [ "$(registered_brokers)" = "$NODES" ]; then
            since=${since:-$SECONDS}
            [ $((SECONDS - since)) -ge "$REGISTERED_SECS" ] && return 0
        else
            since=""
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "not all $NODES brokers stayed registered for $REGISTERED_SECS s within $REGISTER_TIMEOUT_SECS s" >&2
            "$SLUICE" cluster info --bootstrap "$BOOTSTRAP" >&2 || true
            exit 1
        fi
        sleep 0.5
    done
}

# Fencings of brokers that stopped answering, over every broker's log: one
# during a catch-up means a broker stalled for the session timeout and the
# cycle's figures are suspect.
silence_fences() {
    cat "$LOG_DIR"/broker-*.log | grep -c 'fencing a broker that stopped answering' || true
}

# Bytes (apparent size) of a node's partition directories of a topic.
topic_bytes() {
    local node=$1 topic=$2
    { du -sbc -- "$WORK/$node/$topic"-[0-9]* 2>/dev/null || true; } |
        awk '$2 == "total" { total = $1 } END { print total + 0 }'
}

survivors_bytes() {
    local node total=0
    for node in $(seq 1 "$NODES"); do
        [ "$node" = "$RESTARTED" ] && continue
        total=$((total + $(topic_bytes "$node" "$1")))
    done
    echo "$total"
}

# Waits until the survivors' copies of the topic have not grown for
# QUIET_SECS.
wait_quiet() {
    local topic=$1 last now quiet_since deadline
    deadline=$((SECONDS + SETTLE_TIMEOUT_SECS))
    last=$(survivors_bytes "$topic")
    quiet_since=$SECONDS
    while [ $((SECONDS - quiet_since)) -lt "$QUIET_SECS" ]; do
        check_alive
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "the survivors' logs of $topic still grow after $SETTLE_TIMEOUT_SECS s" >&2
            exit 1
        fi
        sleep 0.5
        now=$(survivors_bytes "$topic")
        if [ "$now" != "$last" ]; then
            last=$now
            quiet_since=$SECONDS
        fi
    done
}

# Sequential 1 MiB O_DIRECT writes with a final fdatasync (dd counts it in
# its time), then O_DIRECT reads of the same file; MB/s (10^6 bytes).
dd_rate() {
    LC_ALL=C dd "$@" bs=1M 2>&1 >/dev/null | awk '
        / copied, / { for (i = 1; i <= NF; i++) if ($i == "s,") secs = $(i - 1); bytes = $1 }
        END { if (secs > 0) printf "%.1f", bytes / secs / 1e6; else print "nan" }'
}

elapsed() {
    awk -v from="$1" -v to="$2" 'BEGIN { printf "%.2f", to - from }'
}

TSV=$OUT/catchup.tsv
printf 'round\tproduced_bytes\tproduce_secs\tproduce_mb_s\tcopied_bytes\tlisten_secs\tisr_secs\tcopy_window_secs\tcatchup_mb_s\twindow_mb_s\tdisk_write_mb_s\tdisk_read_mb_s\tratio_to_write\tnode_bytes\tleader_node1_bytes\tfences_during_catchup\n' >"$TSV"

for round in $(seq 1 "$REPEAT"); do
    prefix=catchup-r$round
    topic=$prefix-0
    echo "== round $round/$REPEAT: topic $topic"
    check_alive
    # Retention off, so that the leaders' log start cannot move past the
    # stopped follower's log end (which it could not catch up from);
    # min.insync.replicas=1 lets acks=all go on with one replica down.
    for attempt in $(seq 1 "$CREATE_ATTEMPTS"); do
        wait_registered_stable
        if "$SLUICE" topic create "$topic" --bootstrap "$BOOTSTRAP" --partitions "$PARTITIONS" \
            --replication-factor "$NODES" --config retention.ms=-1 --config retention.bytes=-1 \
            --config min.insync.replicas=1 >/dev/null; then
            break
        fi
        [ "$attempt" -lt "$CREATE_ATTEMPTS" ] || exit 1
        echo "   creating $topic failed (a broker fenced meanwhile?); trying again" >&2
    done
    wait_topic "$topic" "$ALL_IN_SYNC" "$TOPIC_READY_TIMEOUT_SECS" "all replicas in sync"

    stop_nodes "$RESTARTED"
    wait_topic "$topic" "$FENCED" "$FENCE_TIMEOUT_SECS" "node $RESTARTED fenced (out of every ISR, leading nothing)"
    wait_controller_moved
    before=$(topic_bytes "$RESTARTED" "$topic")

    log=$OUT/produce-$round.txt
    if ! "$PERF" run --workload "$WORKLOAD" --bootstrap "$BOOTSTRAP" --broker-name sluice-3-nodes \
        --topic-prefix "$prefix" --keep-topics --baseline none --drain-timeout 0 \
        --report-interval 5 --out "$OUT" >"$log" 2>&1; then
        echo "producing failed; the end of $log:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    result=$(sed -n 's/^wrote \(.*\.json\) and .*/\1/p' "$log")
    [ -n "$result" ] || {
        echo "sluice-perf wrote no result; see $log" >&2
        exit 1
    }
    read -r produced produce_secs produce_mb failed < <(jq -r \
        '[.produce.bytes, (.measured_secs * 100 | round / 100), (.produce.mb_per_sec * 10 | round / 10), .totals.failed] | @tsv' \
        "$result")
    [ "$failed" = 0 ] || echo "   warning: $failed messages failed; see $log" >&2
    echo "   produced $produced bytes in $produce_secs s ($produce_mb MB/s, acks=$ACKS, node $RESTARTED down)"
    wait_topic "$topic" "$SURVIVORS_IN_SYNC" "$SETTLE_TIMEOUT_SECS" "the survivors in sync"
    wait_quiet "$topic"

    # The disk, measured now: the cluster is idle, and nothing else of this
    # script runs. The file stays until the catch-up is over, so that
    # freeing its blocks (discard) does not overlap the catch-up.
    disk_file=$WORK/disk-test-$round
    disk_write=$(dd_rate if=/dev/zero of="$disk_file" count="$DISK_MB" oflag=direct conv=fdatasync)
    disk_read=$(dd_rate if="$disk_file" of=/dev/null iflag=direct)
    echo "   disk: write $disk_write MB/s, read $disk_read MB/s (dd, O_DIRECT, $DISK_MB MiB)"

    # The catch-up: from the restart (process start included, as an
    # operator sees it) until node 3 is in every partition's ISR. The size
    # of its directories is sampled at each poll too, for the window in
    # which it actually grew.
    fences_before=$(silence_fences)
    started=$EPOCHREALTIME
    start_node "$RESTARTED"
    listening=""
    first_growth=""
    last_growth=""
    last_size=$before
    deadline=$((SECONDS + CATCHUP_TIMEOUT_SECS))
    while true; do
        check_alive
        if [ -z "$listening" ] && port_in_use "${kafka_ports[RESTARTED - 1]}"; then
            listening=$EPOCHREALTIME
        fi
        now=$EPOCHREALTIME
        size=$(topic_bytes "$RESTARTED" "$topic")
        if [ "$size" != "$last_size" ]; then
            [ -n "$first_growth" ] || first_growth=$now
            last_growth=$now
            last_size=$size
        fi
        if topic_holds "$topic" "$REJOINED"; then
            rejoined=$EPOCHREALTIME
            break
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "node $RESTARTED did not rejoin every ISR of $topic within $CATCHUP_TIMEOUT_SECS s; the topic:" >&2
            "$SLUICE" topic describe "$topic" --bootstrap "$BOOTSTRAP" >&2 || true
            echo "its log:" >&2
            tail -n 20 "$LOG_DIR/broker-$RESTARTED.log" >&2
            exit 1
        fi
        sleep "$POLL_SECS"
    done
    after=$(topic_bytes "$RESTARTED" "$topic")
    leader_bytes=$(topic_bytes 1 "$topic")
    fences=$(($(silence_fences) - fences_before))
    copied=$((after - before))
    listen_secs=$(elapsed "$started" "${listening:-$rejoined}")
    isr_secs=$(elapsed "$started" "$rejoined")
    window_secs=$(elapsed "${first_growth:-$rejoined}" "${last_growth:-$rejoined}")
    read -r catchup_mb window_mb ratio < <(awk -v bytes="$copied" -v secs="$isr_secs" \
        -v window="$window_secs" -v disk="$disk_write" 'BEGIN {
            rate = bytes / secs / 1e6
            printf "%.1f\t%s\t%.3f\n", rate,
                (window > 0 ? sprintf("%.1f", bytes / window / 1e6) : "nan"),
                (disk > 0 ? rate / disk : 0)
        }')
    echo "   catch-up: $copied bytes in $isr_secs s = $catchup_mb MB/s ($ratio of the disk's write bandwidth);" \
        "listening after $listen_secs s, data grew over $window_secs s ($window_mb MB/s);" \
        "node $RESTARTED holds $after bytes, node 1 $leader_bytes"
    [ "$fences" = 0 ] || echo "   warning: $fences broker(s) fenced for silence during this catch-up" >&2
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$round" "$produced" "$produce_secs" "$produce_mb" "$copied" "$listen_secs" "$isr_secs" \
        "$window_secs" "$catchup_mb" "$window_mb" "$disk_write" "$disk_read" "$ratio" \
        "$after" "$leader_bytes" "$fences" >>"$TSV"

    rm -f "$disk_file"
    deleted=$EPOCHREALTIME
    "$SLUICE" topic delete "$topic" --bootstrap "$BOOTSTRAP" >/dev/null
    deadline=$((SECONDS + DELETE_TIMEOUT_SECS))
    while compgen -G "$WORK/[0-9]*/$topic-[0-9]*" >/dev/null ||
        compgen -G "$WORK/[0-9]*/.$topic-[0-9]*.deleted-*" >/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "   warning: $topic's files still exist $DELETE_TIMEOUT_SECS s after its deletion" >&2
            break
        fi
        sleep 0.5
    done
    echo "   topic deleted; its files were gone from every node after $(elapsed "$deleted" "$EPOCHREALTIME") s"
done

# Per cycle and the medians over the cycles.
median() {
    tail -n +2 "$TSV" | cut -f"$1" | sort -g | awk '
        { value[NR] = $1 }
        END { if (NR % 2) print value[(NR + 1) / 2]; else print (value[NR / 2] + value[NR / 2 + 1]) / 2 }'
}
SUMMARY=$OUT/catchup-summary.md
{
    echo "| run | MB copied | catch-up s | catch-up MB/s | disk write MB/s | disk read MB/s | catch-up / disk write | listening after s | data grew over s | MB/s while growing | produce MB/s | fences during catch-up |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    tail -n +2 "$TSV" | awk -F'\t' '{
        printf "| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
            $1, $5 / 1e6, $7, $9, $11, $12, $13, $6, $8, $10, $4, $16 }'
    if [ "$REPEAT" -gt 1 ]; then
        echo "| median | $(median 5 | awk '{ printf "%.0f", $1 / 1e6 }') | $(median 7) | $(median 9) | $(median 11) | $(median 12) | $(median 13) | $(median 6) | $(median 8) | $(median 10) | $(median 4) | |"
    fi
    echo
    echo "$NODES brokers (1 shard each), the producers and this script on one machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1))."
    echo "$PARTITIONS partitions, $BACKLOG_MB MB of $MESSAGE_SIZE-byte messages produced with acks=$ACKS by $PRODUCERS producers while node $RESTARTED was down."
    for node in $(seq 1 "$NODES"); do
        echo "broker-$node.log: $(grep -c 'ERROR' "$LOG_DIR/broker-$node.log" || true) lines with ERROR, $(grep -c 'WARN' "$LOG_DIR/broker-$node.log" || true) with WARN"
    done
    # Fencing other than by a controlled shutdown means a broker stopped
    # answering for the session timeout: a stall worth knowing of.
    echo "brokers fenced for silence: $(silence_fences) in the session, $(tail -n +2 "$TSV" | awk -F'\t' '{ n += $16 } END { print n + 0 }') during catch-ups"
} | tee "$SUMMARY"
echo "results in $OUT (catchup-summary.md, catchup.tsv, produce-*.txt and sluice-perf results, broker logs)"
