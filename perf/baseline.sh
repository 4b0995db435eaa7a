#!/usr/bin/env bash
# Measures this machine's own limits, the baselines every sluice-perf figure
# is reported against: the disk's O_DIRECT sequential write bandwidth and
# fdatasync latency (fio) and loopback TCP bandwidth (iperf3). Installs the
# Debian packages if they are missing.
#
#   perf/baseline.sh [--dir DIR] [--secs N] [--out FILE]
#
# --dir should be on the file system the broker's data lives on. --out keeps
# the figures for `sluice-perf run --baseline FILE`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v fio >/dev/null 2>&1 || need+=(fio)
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}"
fi

cargo build --release -q -p sluice-perf
exec target/release/sluice-perf baseline "$@"
