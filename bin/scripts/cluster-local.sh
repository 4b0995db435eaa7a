#!/usr/bin/env bash
# Starts a three-node Sluice cluster on 127.0.0.1 (Kafka ports 19092, 19192,
# 19292; quorum ports 19093, 19193, 19293), data under ${DATA:-/tmp/sluice-cluster}.
# Stops all three on Ctrl-C.
set -euo pipefail
SLUICE=${SLUICE:-target/release/sluice}
DATA=${DATA:-/tmp/sluice-cluster}
VOTERS=1@127.0.0.1:19093,2@127.0.0.1:19193,3@127.0.0.1:19293
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
for node in 1 2 3; do
    base=$((19092 + (node - 1) * 100))
    mkdir -p "$DATA/$node"
    "$SLUICE" --node-id "$node" --data-dir "$DATA/$node" \
        --listen "127.0.0.1:$base" \
        --controller-listen "127.0.0.1:$((base + 1))" \
        --controller-voters "$VOTERS" --rack "rack-$node" \
        >"$DATA/$node.out" 2>"$DATA/$node.log" &
    pids+=($!)
done
echo "bootstrap: 127.0.0.1:19092,127.0.0.1:19192,127.0.0.1:19292 (logs in $DATA)"
wait
