#!/usr/bin/env bash
# Coverage-guided fuzzing of inflow's parsers (issue 22 item 5): cargo-fuzz / libFuzzer on
# the targets in fuzz/fuzz_targets/. Installs cargo-fuzz (pinned) when it is missing.
# libFuzzer's instrumentation needs the nightly toolchain this machine kind carries.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   scripts/fuzz.sh 600 mail      one target ten minutes (corpus kept in fuzz/corpus/)
#   FUZZ_CI=1 FUZZ_PROFILE=dev scripts/fuzz.sh
#                                 what .ci/run does: every target from a fixed seed over
#                                 the committed seeds only, for a fixed number of runs or
#                                 FUZZ_CI_SECS (20) seconds, whichever ends first; built
#                                 unoptimised (about 4 minutes from scratch instead of 14)
# Crashes land in fuzz/artifacts/TARGET/ and end the run with a non-zero status.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(mail criteria config import_csv pbx_fields pbx_adapters api_params)
CARGO_FUZZ_VERSION=0.13.1
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
cd fuzz
# Optimised (or FUZZ_PROFILE=dev); debug assertions and overflow checks come from
# fuzz/Cargo.toml's profile; no sanitizer (safe Rust: speed first).
profile=(-O)
if [ "${FUZZ_PROFILE:-}" = dev ]; then
    # The release profile, unoptimised: `--dev` would force debug assertions on every crate
    # (RUSTFLAGS), mail-parser's too (fuzz/Cargo.toml says why that one is off).
    export CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_DEBUG=0
fi
cargo +nightly fuzz build "${profile[@]}" -s none
for t in "${TARGETS[@]}"; do
    corpus="corpus/$t"
    limit=(-max_total_time="$SECS")
    if [ -n "${FUZZ_CI:-}" ]; then
        corpus=$(mktemp -d)
        limit=(-seed=20261127 -runs="${FUZZ_CI_RUNS:-20000}" -max_total_time="${FUZZ_CI_SECS:-20}")
    fi
    mkdir -p "$corpus"
    extra=()
    # The mail target also starts from the real bounces of ../shared, when they are there.
    if [ "$t" = mail ] && [ -z "${FUZZ_CI:-}" ] && [ -d ../../shared/corpora/sisimai/eml ]; then
        extra=(../../shared/corpora/sisimai/eml)
    fi
    echo "fuzz: $t ${limit[*]}"
    cargo +nightly fuzz run "${profile[@]}" -s none "$t" "$corpus" "seeds/$t" "${extra[@]}" -- \
        "${limit[@]}" -rss_limit_mb=4096 -max_len=262144 -print_final_stats=1 2>&1 \
        | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ *DONE)|SUMMARY|panicked|ERROR" || true
    # crash-* (a panic), oom-*, timeout-*, leak-*: each is a finding.
    found=$(find "artifacts/$t" -maxdepth 1 \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) 2>/dev/null)
    if [ -n "$found" ]; then
        echo "fuzz: $t found: $found" >&2
        exit 1
    fi
done
