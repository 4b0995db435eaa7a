# shellcheck shell=bash
# A local Sluice cluster for the perf scripts (sourced by perf/replication.sh
# and perf/catchup.sh): NODES nodes on 127.0.0.1, each a broker and a voter
# of the metadata quorum, on ports chosen at run time, with data in
# $WORK/<node id> and logs in $LOG_DIR/broker-<node id>.log. Nodes can be
# stopped and started again one at a time (same id, ports and data), which
# is what a restart benchmark needs.
#
# The caller sets, before calling any function: SLUICE (the broker binary),
# WORK (a temporary directory this file deletes in stop_cluster), LOG_DIR,
# and optionally NODES (default 3) and BROKER_ARGS (more flags for every
# node). It runs under `set -euo pipefail` and installs `trap stop_cluster
# EXIT` itself, so that a failing script still stops every node.
#
# Sets: pids (one per node, empty while a node is stopped), kafka_ports,
# controller_ports, voters, BOOTSTRAP (node 1's Kafka address).

NODES=${NODES:-3}
BROKER_ARGS=${BROKER_ARGS:-}
# Ports are drawn below the kernel's ephemeral range (32768 and up by
# default), so an outgoing connection cannot take one between the check and
# the broker's bind.
PORT_MIN=20000
PORT_SPAN=12000
PORT_ATTEMPTS_MAX=200
# A node that is not listening by then has failed to start (a release build
# starts in well under a second; recovery of an empty directory is instant).
LISTEN_TIMEOUT_SECS=60
# Brokers register with the controller after the quorum elects a leader;
# until all three have, an RF=3 topic cannot be placed.
REGISTER_TIMEOUT_SECS=60
# How long a node may take to stop on SIGTERM before it is killed.
STOP_TIMEOUT_SECS=10

pids=()
kafka_ports=()
controller_ports=()
voters=""
BOOTSTRAP=""

# jq reads the admin CLI's --json output.
require_jq() {
    if ! command -v jq >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq jq >/dev/null
    fi
}

# Sends SIGTERM to the given nodes' processes at once, then waits for each
# (killing it after STOP_TIMEOUT_SECS), so stopping all takes one timeout,
# not one per node.
stop_nodes() {
    local node pid waited
    for node in "$@"; do
        pid=${pids[node - 1]:-}
        [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; }
    done
    for node in "$@"; do
        pid=${pids[node - 1]:-}
        [ -n "$pid" ] || continue
        waited=0
        while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt $((STOP_TIMEOUT_SECS * 10)) ]; do
            sleep 0.1
            waited=$((waited + 1))
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pids[node - 1]=""
    done
}

stop_cluster() {
    local nodes=()
    local index
    for index in "${!pids[@]}"; do
        nodes+=($((index + 1)))
    done
    [ ${#nodes[@]} -gt 0 ] && stop_nodes "${nodes[@]}"
    pids=()
    rm -rf "$WORK"
}

port_in_use() {
    ss -Htln "sport = :$1" | grep -q .
}

# A port nobody listens on and this script has not handed out yet (its
# callers run it in a subshell, so they record what it chose).
chosen=()
free_port() {
    local port
    for _ in $(seq 1 "$PORT_ATTEMPTS_MAX"); do
        port=$((PORT_MIN + RANDOM % PORT_SPAN))
        if [[ " ${chosen[*]} " != *" $port "* ]] && ! port_in_use "$port"; then
            echo "$port"
            return 0
        fi
    done
    echo "no free port found in $PORT_ATTEMPTS_MAX attempts" >&2
    return 1
}

choose_ports() {
    local node port
    for node in $(seq 1 "$NODES"); do
        port=$(free_port)
        chosen+=("$port")
        kafka_ports+=("$port")
        port=$(free_port)
        chosen+=("$port")
        controller_ports+=("$port")
        voters+="${voters:+,}$node@127.0.0.1:$port"
    done
    BOOTSTRAP=127.0.0.1:${kafka_ports[0]}
}

# Starts one node in the background (not in a subshell: its pid must stay
# this shell's child, to be waited for). Its log is appended to, so that a
# restarted node's log follows its first life's.
# One shard, unpinned: three brokers and the clients share two cores, and
# pinned shards would make the nodes fight over the same core.
start_node() {
    local node=$1
    mkdir -p "$WORK/$node"
    # shellcheck disable=SC2086 # BROKER_ARGS is a list of flags
    "$SLUICE" --node-id "$node" --data-dir "$WORK/$node" \
        --listen "127.0.0.1:${kafka_ports[node - 1]}" \
        --controller-listen "127.0.0.1:${controller_ports[node - 1]}" \
        --controller-voters "$voters" --shards 1 --pin-shards false \
        $BROKER_ARGS >>"$LOG_DIR/broker-$node.log" 2>&1 &
    pids[node - 1]=$!
}

# Waits until the given nodes listen on their Kafka ports; one
# LISTEN_TIMEOUT_SECS covers them all.
wait_listening() {
    local node waited=0
    for node in "$@"; do
        until port_in_use "${kafka_ports[node - 1]}"; do
            if ! kill -0 "${pids[node - 1]}" 2>/dev/null || [ "$waited" -ge $((LISTEN_TIMEOUT_SECS * 10)) ]; then
                echo "node $node did not start listening; its log:" >&2
                tail -n 20 "$LOG_DIR/broker-$node.log" >&2
                exit 1
            fi
            sleep 0.1
            waited=$((waited + 1))
        done
    done
}

registered_brokers() {
    "$SLUICE" cluster info --bootstrap "$BOOTSTRAP" --json 2>/dev/null |
        jq '.brokers | length' 2>/dev/null || true
}

# Waits until COUNT brokers are registered (and not fenced).
wait_registered() {
    local count=$1 waited=0
    until [ "$(registered_brokers)" = "$count" ]; do
        if [ "$waited" -ge $((REGISTER_TIMEOUT_SECS * 10)) ]; then
            echo "fewer than $count brokers registered after $REGISTER_TIMEOUT_SECS s" >&2
            "$SLUICE" cluster info --bootstrap "$BOOTSTRAP" >&2 || true
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

start_cluster() {
    local node
    choose_ports
    for node in $(seq 1 "$NODES"); do
        : >"$LOG_DIR/broker-$node.log"
        start_node "$node"
    done
    # shellcheck disable=SC2046 # seq prints one number per word
    wait_listening $(seq 1 "$NODES")
    wait_registered "$NODES"
    echo "cluster up: nodes on ports ${kafka_ports[*]} (quorum ${controller_ports[*]}), pids ${pids[*]}"
}

# A node that died mid-session makes every later figure meaningless: stop
# with its log rather than measure a smaller cluster. Nodes stopped on
# purpose (empty pid) are skipped.
check_alive() {
    local node
    for node in $(seq 1 "$NODES"); do
        [ -n "${pids[node - 1]:-}" ] || continue
        if ! kill -0 "${pids[node - 1]}" 2>/dev/null; then
            echo "node $node (pid ${pids[node - 1]}) has exited; its log:" >&2
            tail -n 20 "$LOG_DIR/broker-$node.log" >&2
            exit 1
        fi
    done
}
