#!/usr/bin/env bash
# Runs every check Sluice's CI runs, on a fresh Debian machine with the Rust
# toolchain: installs what the tests need, then formatting, lints, all unit,
# property, integration and crash tests (real broker binary, real librdkafka),
# the cross-client compatibility script (kcat, confluent-kafka, kafka-python),
# and, where the nightly toolchain is installed, a build of the fuzz targets
# that runs each once over its seeds and the inputs of fixed crashes.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
command -v make >/dev/null 2>&1 || need_apt+=(make)
# The network-partition test puts brokers in network namespaces.
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# librdkafka (built from source by the rdkafka crate) links zlib.
dpkg -s zlib1g-dev >/dev/null 2>&1 || need_apt+=(zlib1g-dev)
# librdkafka's SCRAM needs it built with SSL (rdkafka's `ssl` feature),
# which links the system's OpenSSL found through pkg-config.
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# The TLS tests make their certificates with the openssl command.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
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
# tests/chaos-broken.sh (the fault harness must fail against a broker with a
# planted lost write) is not run here: its separate build takes 10 minutes
# on a fresh 2-core machine, twice the budget of one CI step.
# The fuzz targets (tests/fuzz, a workspace of their own) need nightly, which
# a CI machine may lack; built there, they cannot rot unnoticed. The replay
# build is a debug one without sanitizer: 2 to 4 minutes cold on a busy
# 2-core machine, where the fuzzing build (release, AddressSanitizer) took 9
# to 18 (see tests/fuzz/run.sh --help).
# RUSTUP_AUTO_INSTALL=0: asked for a toolchain it lacks, rustup would
# otherwise download it, and this checks what the machine has.
if RUSTUP_AUTO_INSTALL=0 cargo +nightly --version >/dev/null 2>&1; then
    bash tests/fuzz/run.sh --replay
else
    echo "SKIPPED: fuzz targets not built or replayed: no nightly toolchain (rustup toolchain install nightly)"
fi
