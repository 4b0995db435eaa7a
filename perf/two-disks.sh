#!/usr/bin/env bash
# Max-rate produce with one and with two data directories, each on a file
# system of its own, with the file systems' own O_DIRECT write bandwidth
# measured beside them (each alone, and both at once): does one broker use
# every disk it is given?
#
#   perf/two-disks.sh            (as root: it makes and mounts the file systems)
#
# Environment: REPEAT (default 3 rounds, each running both shapes, so a slow
# phase of a shared machine spreads over both), WARMUP and DURATION
# (seconds, default 5 and 15), DISK_GIB (size of each file system, default
# 12), DISK_A and DISK_B (block devices to use instead of loop files: a
# loop file lives on the disk of the directory it is made in, so two of
# them share one disk), OUT (result directory), WORKLOAD.
set -euo pipefail
cd "$(dirname "$0")/.."

REPEAT=${REPEAT:-3}
WARMUP=${WARMUP:-5}
DURATION=${DURATION:-15}
DISK_GIB=${DISK_GIB:-12}
OUT=${OUT:-perf-results/two-disks-$(date +%Y%m%d-%H%M%S)}
WORKLOAD=${WORKLOAD:-perf/workloads/1-topic-100-partitions-1kb-4-producers-max.toml}
# fio: as sluice-perf's own baseline measures the data disk.
FIO_SECS=${FIO_SECS:-10}
FIO_ARGS=(--rw=write --bs=1M --ioengine=libaio --iodepth=16 --size=1G
    --time_based --direct=1 --output-format=json)

command -v fio >/dev/null 2>&1 && command -v jq >/dev/null 2>&1 || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq fio jq
}
cargo build --release -q -p sluice
cargo build --release -q -p sluice-perf
PERF=target/release/sluice-perf
mkdir -p "$OUT"

work=$(mktemp -d /var/tmp/sluice-two-disks.XXXXXX)
mounts=()
loops=()
cleanup() {
    for mount in "${mounts[@]}"; do
        umount "$mount" 2>/dev/null || true
    done
    for loop in "${loops[@]}"; do
        losetup -d "$loop" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# Each file system: a block device given, or a loop file.
make_disk() {
    local name=$1 device=$2
    local mount="$work/$name"
    mkdir -p "$mount"
    if [ -z "$device" ]; then
        # Direct I/O from the loop device to its file: otherwise the
        # backing file's page cache absorbs the writes, and O_DIRECT on the
        # file system measures memory, not the disk.
        truncate -s "${DISK_GIB}G" "$work/$name.img"
        device=$(losetup --find --show --direct-io=on "$work/$name.img")
        loops+=("$device")
    fi
    mkfs.ext4 -q -F -m 0 "$device"
    mount "$device" "$mount"
    mounts+=("$mount")
    mkdir -p "$mount/sluice"
}
make_disk a "${DISK_A:-}"
make_disk b "${DISK_B:-}"
A="$work/a/sluice"
B="$work/b/sluice"

# MB/s (10^6 bytes) of one fio run over the given directories at once.
fio_mb() {
    local jobs=()
    local index=0
    for dir in "$@"; do
        jobs+=(--name="w$index" --directory="$dir")
        index=$((index + 1))
    done
    fio --runtime="$FIO_SECS" "${FIO_ARGS[@]}" "${jobs[@]}" |
        jq '[.jobs[].write.bw_bytes] | add / 1000000 | floor'
    for dir in "$@"; do
        rm -f "$dir"/w*.0.0
    done
}

{
    echo "machine: $(nproc) cores, $(awk '/MemTotal/ {print int($2/1048576)}' /proc/meminfo) GiB, $(uname -r)"
    echo "file systems: ext4 of ${DISK_GIB} GiB each, ${DISK_A:-loop file}, ${DISK_B:-loop file}"
} | tee "$OUT/setup.txt"

for round in $(seq 1 "$REPEAT"); do
    echo "== round $round/$REPEAT: fio"
    {
        echo "round $round fio_a $(fio_mb "$A")"
        echo "round $round fio_b $(fio_mb "$B")"
        echo "round $round fio_both $(fio_mb "$A" "$B")"
    } | tee -a "$OUT/fio.txt"
    for shape in one two; do
        dirs=$A
        if [ "$shape" = two ]; then
            dirs="$A,$B"
        fi
        echo "== round $round/$REPEAT: sluice, $shape data director$([ "$shape" = one ] && echo y || echo ies)"
        "$PERF" run --workload "$WORKLOAD" --warmup "$WARMUP" --duration "$DURATION" \
            --broker-arg --log-dirs --broker-arg "$dirs" \
            --out "$OUT/$shape" --quiet >"$OUT/run-$round-$shape.txt" 2>&1 ||
            echo "   failed; see $OUT/run-$round-$shape.txt"
        rm -rf "$A"/* "$B"/*
    done
done
for shape in one two; do
    echo "== $shape data director$([ "$shape" = one ] && echo y || echo ies)"
    "$PERF" summarize "$OUT/$shape"/*.json | tee "$OUT/summary-$shape.md"
done
echo "fio (MB/s, by round):"
cat "$OUT/fio.txt"
echo "results in $OUT"
