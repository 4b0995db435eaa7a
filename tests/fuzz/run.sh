#!/usr/bin/env bash
# Builds Sluice's cargo-fuzz targets and runs each for a while.
#
# Usage: tests/fuzz/run.sh [--seeds] [--help] [TARGET...]
#
#   TARGET...  targets to run (default: all of them, see TARGETS below)
#   --seeds    regenerate the seed corpora in tests/fuzz/corpus/ first
#              (with the make_corpus generator) instead of using them as
#              they are
#   --help     this text
#
# Environment:
#   FUZZ_SECS   seconds each target runs (default 10)
#   FUZZ_JOBS   parallel libFuzzer jobs per target (default 1)
#   FUZZ_NICE   nice level of the fuzzers (default 10)
#   FUZZ_RSS_MB libFuzzer's RSS limit per process, MiB (default 2048)
#   SLUICE_FUZZ_SKIP_KNOWN  comma-separated known crashes the targets step
#               around (or `all`); unset, every open bug fails the run. The
#               names are in src/lib.rs (`known`), their reproducers in
#               known_crashes/ (cargo +nightly fuzz run --fuzz-dir tests/fuzz
#               <target> tests/fuzz/known_crashes/<file>)
#
# regressions/<target>/ holds the inputs of crashes since fixed; every run
# replays them before fuzzing.
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs
# cargo-fuzz from the crate registry if it is missing. New corpus entries go
# to a scratch directory, so the committed seeds stay small; crashes land in
# tests/fuzz/artifacts/<target>/ and make the script fail.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
TARGETS=(request_decode record_batch engine_files metadata_records coordinator_records)

seeds=0
selected=()
for arg in "$@"; do
    case "$arg" in
        --help | -h)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        --seeds) seeds=1 ;;
        -*)
            echo "unknown option $arg (see --help)" >&2
            exit 2
            ;;
        *) selected+=("$arg") ;;
    esac
done
if [ "${#selected[@]}" -eq 0 ]; then
    selected=("${TARGETS[@]}")
fi

secs="${FUZZ_SECS:-10}"
jobs="${FUZZ_JOBS:-1}"
niceness="${FUZZ_NICE:-10}"
rss_mb="${FUZZ_RSS_MB:-2048}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "the nightly toolchain is missing: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd "$root"
fuzz=(cargo +nightly fuzz)
echo "building fuzz targets"
"${fuzz[@]}" build --fuzz-dir tests/fuzz
if [ "$seeds" -eq 1 ]; then
    "${fuzz[@]}" build --fuzz-dir tests/fuzz --features corpus make_corpus
    generator="$here/target/x86_64-unknown-linux-gnu/release/make_corpus"
    rm -rf "$here/corpus"
    "$generator" "$here/corpus"
fi

# -jobs=1 would still fork a worker and hide its output in a log file.
parallel=()
if [ "$jobs" -gt 1 ]; then
    parallel=(-jobs="$jobs" -workers="$jobs")
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in "${selected[@]}"; do
    mkdir -p "$scratch/$target" "$here/artifacts/$target"
    echo "== $target: ${secs}s"
    # The scratch corpus comes first: libFuzzer writes new inputs there. The
    # inputs of fixed crashes (regressions/) are replayed with the seeds.
    corpora=("$scratch/$target" "$here/corpus/$target")
    if [ -d "$here/regressions/$target" ]; then
        corpora+=("$here/regressions/$target")
    fi
    if ! nice -n "$niceness" "${fuzz[@]}" run --fuzz-dir tests/fuzz "$target" \
        "${corpora[@]}" -- \
        -max_total_time="$secs" "${parallel[@]}" \
        -rss_limit_mb="$rss_mb" -timeout=25 -print_final_stats=1 \
        -artifact_prefix="$here/artifacts/$target/"; then
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED: ${failed[*]} (inputs in tests/fuzz/artifacts/)" >&2
    exit 1
fi
echo "all ${#selected[@]} fuzz targets ran ${secs}s without a crash"
