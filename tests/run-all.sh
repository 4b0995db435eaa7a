#!/usr/bin/env bash
# Runs every check Sluice's CI runs, on a fresh Debian machine with the Rust
# toolchain: installs what the tests need, then formatting, lints, all unit,
# property, integration and crash tests (real broker binary, real librdkafka),
# and the cross-client compatibility script (kcat, confluent-kafka, kafka-python).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
command -v make >/dev/null 2>&1 || need_apt+=(make)
# The network-partition test puts brokers in network namespaces.
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# librdkafka (built from source by the rdkafka crate) links zlib.
dpkg -s zlib1g-dev >/dev/null 2>&1 || need_apt+=(zlib1g-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}"
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# CI runs as root, so the network-partition test must run, not skip.
SLUICE_REQUIRE_NETNS=1 cargo test --workspace
bash tests/compat/run.sh target/debug/sluice
