#!/usr/bin/env bash
# Builds Sluice's cargo-fuzz targets and runs each for a while, or (with
# --replay) builds them quickly and runs each once over fixed inputs.
#
# Usage: tests/fuzz/run.sh [--seeds] [--replay] [--help] [TARGET...]
#
#   TARGET...  targets to run (default: all of them, see TARGETS below)
#   --seeds    regenerate the seed corpora in tests/fuzz/corpus/ first
#              (with the make_corpus generator) instead of using them as
#              they are
#   --replay   no fuzzing: build the targets without optimisation or
#              sanitizer (debug assertions and overflow checks stay on) and
#              run each target once on every seed and every regressions/
#              input; fails if any crashes. CI runs this (tests/run-all.sh)
#              so that the targets keep compiling and the fixed crashes stay
#              fixed. Builds in tests/fuzz/target/<triple>/debug/, apart
#              from the fuzzing build's release/.
#   --help     this text
#
# Environment:
#   FUZZ_SECS   seconds each target runs (default 10)
#   FUZZ_JOBS   parallel libFuzzer jobs per target (default 1)
#   FUZZ_NICE   nice level of the fuzzers (default 10)
#   FUZZ_RSS_MB libFuzzer's RSS limit per process, MiB (default 2048)
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
replay=0
selected=()
for arg in "$@"; do
    case "$arg" in
        --help | -h)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        --seeds) seeds=1 ;;
        --replay) replay=1 ;;
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

# Without RUSTUP_AUTO_INSTALL=0 rustup would download a missing nightly
# unasked.
if ! RUSTUP_AUTO_INSTALL=0 cargo +nightly --version >/dev/null 2>&1; then
    echo "the nightly toolchain is missing: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Fuzzing wants speed and AddressSanitizer (cargo-fuzz's defaults: release,
# with debug assertions). A replay runs a few hundred inputs once: a debug
# build without sanitizer still compiles and links every target against
# libFuzzer, keeps overflow checks, and builds cold in a fraction of the time.
build=()
profile=release
if [ "$replay" -eq 1 ]; then
    build=(--dev --sanitizer none)
    profile=debug
fi

cd "$root"
fuzz=(cargo +nightly fuzz)
echo "building fuzz targets (${build[*]:-release, AddressSanitizer})"
"${fuzz[@]}" build "${build[@]}" --fuzz-dir tests/fuzz
if [ "$seeds" -eq 1 ]; then
    "${fuzz[@]}" build "${build[@]}" --fuzz-dir tests/fuzz --features corpus make_corpus
    generator="$here/target/x86_64-unknown-linux-gnu/$profile/make_corpus"
    rm -rf "$here/corpus"
    "$generator" "$here/corpus"
fi

if [ "$replay" -eq 1 ]; then
    # libFuzzer's output goes to a scratch log, shown only for a failure: a
    # replay prints two lines per input.
    logs="$(mktemp -d)"
    trap 'rm -rf "$logs"' EXIT
    failed=()
    for target in "${selected[@]}"; do
        # Files, not directories: given only files, libFuzzer runs each once
        # and exits instead of fuzzing.
        inputs=()
        for dir in "$here/corpus/$target" "$here/regressions/$target"; do
            if [ -d "$dir" ]; then
                while IFS= read -r -d '' file; do
                    inputs+=("$file")
                done < <(find "$dir" -type f -print0 | sort -z)
            fi
        done
        if [ "${#inputs[@]}" -eq 0 ]; then
            echo "== $target: no inputs to replay" >&2
            failed+=("$target")
            continue
        fi
        echo "== $target: replaying ${#inputs[@]} inputs"
        mkdir -p "$logs/$target"
        if ! "${fuzz[@]}" run "${build[@]}" --fuzz-dir tests/fuzz "$target" \
            "${inputs[@]}" -- \
            -rss_limit_mb="$rss_mb" -timeout=25 \
            -artifact_prefix="$logs/$target/" >"$logs/$target.log" 2>&1; then
            # From the input that crashed ("Running: <file>") to the end:
            # its panic and backtrace.
            awk '/^Running: /{shown=""} {shown=shown $0 "\n"} END{printf "%s", shown}' \
                "$logs/$target.log" >&2
            failed+=("$target")
        fi
    done
    if [ "${#failed[@]}" -gt 0 ]; then
        echo "FAILED: replay of ${failed[*]}" >&2
        exit 1
    fi
    echo "all ${#selected[@]} fuzz targets built and ran their seeds and regressions without a crash"
    exit 0
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
