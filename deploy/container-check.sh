#!/usr/bin/env bash
# Builds the container image from this host's release binary
# (`deploy/Containerfile --target prebuilt`) and checks it under Docker:
#
#  1. with deploy/seccomp-io_uring.json the broker starts, kcat (librdkafka)
#     writes 1,000 keyed records through the published port and reads the
#     same 1,000 back;
#  2. `docker stop` is a controlled shutdown (exit status 0), and the
#     records are still there after `docker start` (the data volume);
#  3. under a profile that refuses the io_uring system calls (as Docker's
#     default profile does since Engine 25) the broker exits with status 1
#     and its one-line explanation;
#  4. under the daemon's own default profile: reports whether it lets the
#     broker start (it depends on the Docker version).
#
#   deploy/container-check.sh
#
# Needs a running Docker daemon, kcat and python3, and the base image
# `debian:bookworm-slim` (pulled, or imported where Docker Hub is out of
# reach: `debootstrap --variant=minbase bookworm DIR` then
# `tar -C DIR -c . | docker import - debian:bookworm-slim`).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=sluice:check
NAME=sluice-check-$$
RECORDS=1000
READY_SECS=30

for tool in docker kcat python3; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "container-check: $tool is needed" >&2
        exit 2
    }
done
cargo build --release -q -p sluice --bin sluice

work=$(mktemp -d)
cleanup() {
    docker rm -f "$NAME" "$NAME-refused" "$NAME-default" >/dev/null 2>&1 || true
    docker volume rm "$NAME-data" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# A context of just what the prebuilt stage copies: the repository's
# target/ is gigabytes, and a builder without BuildKit ignores
# Containerfile.dockerignore.
mkdir -p "$work/context/deploy" "$work/context/target/release"
cp deploy/Containerfile deploy/sluice.toml "$work/context/deploy/"
cp target/release/sluice "$work/context/target/release/"
docker build -q --target prebuilt -f "$work/context/deploy/Containerfile" \
    -t "$IMAGE" "$work/context" >/dev/null
echo "built $IMAGE from target/release/sluice"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bootstrap=127.0.0.1:$port

# Waits until the container's log says the broker is ready.
wait_ready() {
    local name=$1
    for _ in $(seq 1 $((READY_SECS * 10))); do
        if docker logs "$name" 2>&1 | grep -q "broker ready"; then
            return 0
        fi
        if [ "$(docker inspect -f '{{.State.Running}}' "$name")" != true ]; then
            break
        fi
        sleep 0.1
    done
    echo "FAIL: $name did not become ready; its log:" >&2
    docker logs "$name" >&2 || true
    exit 1
}

# Reads the topic from the beginning and compares it with what was sent.
check_records() {
    kcat -C -b "$bootstrap" -t check -o beginning -e -q -f '%k:%s\n' | sort >"$work/out.txt"
    if ! cmp -s "$work/sent.txt" "$work/out.txt"; then
        echo "FAIL: $1: read $(wc -l <"$work/out.txt") records, not the $RECORDS sent" >&2
        exit 1
    fi
    echo "ok: $1: the $RECORDS records read back, byte-equal"
}

# 1. Started with the io_uring profile; a round trip with librdkafka. The
# memlock and nofile limits the Containerfile's header recommends are left
# out: a container may not raise them above the Docker daemon's own.
docker run -d --name "$NAME" \
    --security-opt seccomp="$PWD/deploy/seccomp-io_uring.json" \
    -v "$NAME-data:/var/lib/sluice" \
    -p "$bootstrap:9092" -e SLUICE_ADVERTISED_LISTENER="$bootstrap" \
    "$IMAGE" >/dev/null
wait_ready "$NAME"
echo "ok: started under deploy/seccomp-io_uring.json"
target/release/sluice topic create check --partitions 3 -b "$bootstrap" >/dev/null
seq 1 "$RECORDS" | sed 's/.*/key-&:value-&/' | sort >"$work/sent.txt"
kcat -P -b "$bootstrap" -t check -K: -X acks=all <"$work/sent.txt"
check_records "after a produce"

# 2. A controlled stop, then the same volume again.
docker stop -t 60 "$NAME" >/dev/null
status=$(docker inspect -f '{{.State.ExitCode}}' "$NAME")
if [ "$status" != 0 ] || ! docker logs "$NAME" 2>&1 | grep -q "broker stopped cleanly"; then
    echo "FAIL: docker stop ended the broker with status $status" >&2
    docker logs "$NAME" >&2
    exit 1
fi
echo "ok: docker stop: a clean shutdown, exit status 0"
docker start "$NAME" >/dev/null
wait_ready "$NAME"
check_records "after docker stop and start"
docker rm -f "$NAME" >/dev/null

# 3. A profile that refuses io_uring: the broker's explanation, status 1.
python3 - deploy/seccomp-io_uring.json "$work/refused.json" <<'EOF'
import json, sys
profile = json.load(open(sys.argv[1]))
profile["syscalls"].append({
    "names": ["io_uring_setup", "io_uring_enter", "io_uring_register"],
    "action": "SCMP_ACT_ERRNO",
    "errnoRet": 1,
})
json.dump(profile, open(sys.argv[2], "w"))
EOF
docker run --name "$NAME-refused" --security-opt seccomp="$work/refused.json" \
    "$IMAGE" >"$work/refused.log" 2>&1 && status=0 || status=$?
if [ "$status" != 1 ] || ! grep -q "io_uring is not available to this process" "$work/refused.log"; then
    echo "FAIL: with io_uring refused the broker exited with status $status:" >&2
    cat "$work/refused.log" >&2
    exit 1
fi
echo "ok: io_uring refused: exit status 1 and: $(grep -o 'io_uring is not available[^(]*' "$work/refused.log")"

# 4. The daemon's own default profile.
docker run -d --name "$NAME-default" "$IMAGE" >/dev/null
sleep 3
version=$(docker version -f '{{.Server.Version}}')
if docker logs "$NAME-default" 2>&1 | grep -q "broker ready"; then
    echo "note: Docker $version's default seccomp profile lets the broker start (it allows io_uring)"
else
    echo "note: Docker $version's default seccomp profile stops the broker: $(docker logs "$NAME-default" 2>&1 | tail -1)"
fi
echo "container check passed"
