#!/usr/bin/env bash
# Builds the container image from this host's release binary
# (`deploy/Containerfile --target prebuilt`) and checks it under Docker or
# Podman:
#
#  1. with deploy/seccomp-io_uring.json the broker starts, kcat (librdkafka)
#     writes 1,000 keyed records through the published port and reads the
#     same 1,000 back;
#  2. `docker stop` (`podman stop`) is a controlled shutdown (exit status
#     0), and the records are still there after `docker start` (the data
#     volume);
#  3. under a profile that refuses the io_uring system calls (as Docker's
#     default profile does since Engine 25) the broker exits with status 1
#     and its one-line explanation;
#  4. under the engine's own default profile: reports whether it lets the
#     broker start (it depends on the Docker version; for Podman, on
#     containers-common's seccomp.json).
#
#   deploy/container-check.sh
#   ENGINE=podman deploy/container-check.sh
#   ENGINE=podman SLUICE_BIN=/path/to/sluice deploy/container-check.sh
#
# ENGINE is the container engine's command, `docker` (the default) or
# `podman`, and may carry global options of that command, split at spaces:
# ENGINE="podman --runtime runc" where crun refuses the host's cgroups
# ("cgroups in hybrid mode not supported": cgroup v1 with a controller
# left on the v2 hierarchy), or the same runtime in containers.conf
# ([engine] runtime = "runc", CONTAINERS_CONF=FILE). SLUICE_BIN is a
# release binary already built, to package and to create the topic with;
# without it the script runs `cargo build --release` and uses
# target/release/sluice. The binary must be built against a glibc no newer
# than bookworm's (2.36).
#
# Needs the engine (a running Docker daemon, or Podman run as root), kcat
# and python3, and the base image `debian:bookworm-slim` (pulled, or
# imported where Docker Hub is out of reach: `debootstrap --variant=minbase
# bookworm DIR` then `tar -C DIR -c . | docker import - debian:bookworm-slim`,
# or `podman import`, which names it localhost/debian:bookworm-slim, which
# the Containerfile's FROM finds).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=sluice:check
NAME=sluice-check-$$
RECORDS=1000
READY_SECS=30

read -r -a engine <<<"${ENGINE:-docker}"
if [ "${#engine[@]}" = 0 ]; then
    echo "container-check: ENGINE is empty" >&2
    exit 2
fi
engine_name=$(basename "${engine[0]}")
case "$engine_name" in
docker | podman) ;;
*)
    echo "container-check: ENGINE must be docker or podman, not $engine_name" >&2
    exit 2
    ;;
esac

for tool in "${engine[0]}" kcat python3; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "container-check: $tool is needed" >&2
        exit 2
    }
done
if [ -n "${SLUICE_BIN:-}" ]; then
    bin=$SLUICE_BIN
    if [ ! -x "$bin" ]; then
        echo "container-check: SLUICE_BIN=$bin is not an executable file" >&2
        exit 2
    fi
else
    cargo build --release -q -p sluice --bin sluice
    bin=target/release/sluice
fi

# Resource limits for every container this script runs. Docker gives a
# container the daemon's own limits, and the memlock and nofile limits the
# Containerfile's header recommends are left out: a container may not
# raise them above the daemon's. Podman (4.3, as root) instead writes
# nofile=1048576 into every container, and nproc=1048576 once nofile is
# given, while lowering its own nproc limit to 32768; where the podman
# process cannot raise its limits (no CAP_SYS_RESOURCE, hard limits below
# those), the runtime's setrlimit fails and the container does not start
# ("setrlimit `RLIMIT_NOFILE`: Operation not permitted"). So under Podman
# the container gets this shell's hard limits, nproc at most 32768; memlock
# is left out as under Docker.
limits=()
if [ "$engine_name" = podman ]; then
    nofile=$(ulimit -Hn)
    nproc=$(ulimit -Hu)
    if [ "$nofile" != unlimited ] && [ "$nofile" -lt 1048576 ]; then
        limits+=(--ulimit "nofile=$nofile:$nofile")
    fi
    if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then
        nproc=32768
    fi
    limits+=(--ulimit "nproc=$nproc:$nproc")
fi

work=$(mktemp -d)
# One name per `rm`: Podman 4.3's `rm -f A B`, with B missing, removes
# nothing and exits 0. -v: the anonymous volumes of the image's VOLUME.
cleanup() {
    local name
    for name in "$NAME" "$NAME-refused" "$NAME-default"; do
        "${engine[@]}" rm -f -v "$name" >/dev/null 2>&1 || true
    done
    "${engine[@]}" volume rm "$NAME-data" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# A context of just what the prebuilt stage copies: the repository's
# target/ is gigabytes, and a builder without BuildKit ignores
# Containerfile.dockerignore (so does `podman build` without --ignorefile).
mkdir -p "$work/context/deploy" "$work/context/target/release"
cp deploy/Containerfile deploy/sluice.toml "$work/context/deploy/"
cp "$bin" "$work/context/target/release/sluice"
"${engine[@]}" build -q --target prebuilt -f "$work/context/deploy/Containerfile" \
    -t "$IMAGE" "$work/context" >/dev/null
echo "built $IMAGE from $bin with ${engine[*]} ($("${engine[@]}" image inspect -f '{{.Size}}' "$IMAGE") bytes)"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bootstrap=127.0.0.1:$port

# Waits until the container's log says the broker is ready.
wait_ready() {
    local name=$1
    for _ in $(seq 1 $((READY_SECS * 10))); do
        if "${engine[@]}" logs "$name" 2>&1 | grep -q "broker ready"; then
            return 0
        fi
        if [ "$("${engine[@]}" container inspect -f '{{.State.Running}}' "$name")" != true ]; then
            break
        fi
        sleep 0.1
    done
    echo "FAIL: $name did not become ready; its log:" >&2
    "${engine[@]}" logs "$name" >&2 || true
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
# limits: see "limits" above.
"${engine[@]}" run -d --name "$NAME" "${limits[@]}" \
    --security-opt seccomp="$PWD/deploy/seccomp-io_uring.json" \
    -v "$NAME-data:/var/lib/sluice" \
    -p "$bootstrap:9092" -e SLUICE_ADVERTISED_LISTENER="$bootstrap" \
    "$IMAGE" >/dev/null
wait_ready "$NAME"
echo "ok: started under deploy/seccomp-io_uring.json"
"$bin" topic create check --partitions 3 -b "$bootstrap" >/dev/null
seq 1 "$RECORDS" | sed 's/.*/key-&:value-&/' | sort >"$work/sent.txt"
kcat -P -b "$bootstrap" -t check -K: -X acks=all <"$work/sent.txt"
check_records "after a produce"

# 2. A controlled stop, then the same volume again. (`podman stop` also
# exits 0 when it had to resort to SIGKILL; the exit status and the log
# are what tell.)
"${engine[@]}" stop -t 60 "$NAME" >/dev/null
status=$("${engine[@]}" container inspect -f '{{.State.ExitCode}}' "$NAME")
if [ "$status" != 0 ] || ! "${engine[@]}" logs "$NAME" 2>&1 | grep -q "broker stopped cleanly"; then
    echo "FAIL: $engine_name stop ended the broker with status $status" >&2
    "${engine[@]}" logs "$NAME" >&2
    exit 1
fi
echo "ok: $engine_name stop: a clean shutdown, exit status 0"
"${engine[@]}" start "$NAME" >/dev/null
wait_ready "$NAME"
check_records "after $engine_name stop and start"
"${engine[@]}" rm -f -v "$NAME" >/dev/null

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
"${engine[@]}" run --name "$NAME-refused" "${limits[@]}" \
    --security-opt seccomp="$work/refused.json" \
    "$IMAGE" >"$work/refused.log" 2>&1 && status=0 || status=$?
if [ "$status" != 1 ] || ! grep -q "io_uring is not available to this process" "$work/refused.log"; then
    echo "FAIL: with io_uring refused the broker exited with status $status:" >&2
    cat "$work/refused.log" >&2
    exit 1
fi
echo "ok: io_uring refused: exit status 1 and: $(grep -o 'io_uring is not available[^(]*' "$work/refused.log")"

# 4. The engine's own default profile (Podman's is containers-common's
# seccomp.json, whatever its version).
"${engine[@]}" run -d --name "$NAME-default" "${limits[@]}" "$IMAGE" >/dev/null
sleep 3
if [ "$engine_name" = podman ]; then
    version="Podman $("${engine[@]}" version -f '{{.Client.Version}}')"
else
    version="Docker $("${engine[@]}" version -f '{{.Server.Version}}')"
fi
if "${engine[@]}" logs "$NAME-default" 2>&1 | grep -q "broker ready"; then
    echo "note: $version's default seccomp profile lets the broker start (it allows io_uring)"
else
    echo "note: $version's default seccomp profile stops the broker: $("${engine[@]}" logs "$NAME-default" 2>&1 | tail -1)"
fi
echo "container check passed"
