#!/usr/bin/env bash
# Coverage-guided fuzzing of inflow's parsers (issue 22 item 5): cargo-fuzz / libFuzzer on
# the targets in fuzz/fuzz_targets/. Installs cargo-fuzz (pinned) when it is missing.
# libFuzzer's instrumentation needs the nightly toolchain this machine kind carries.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   scripts/fuzz.sh 600 mail      one target ten minutes (corpus kept in fuzz/corpus/)
#   FUZZ_CI=1 scripts/fuzz.sh     what .ci/run does: every target a fixed number of runs
#                                 from a fixed seed over the committed seeds only, so the
#                                 same code gives the same result (no flaky CI)
# Crashes land in fuzz/artifacts/TARGET/ and end the run with a non-zero status.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(mail criteria config import_csv pbx_fields)
CARGO_FUZZ_VERSION=0.13.1
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
cd fuzz
# Optimised; debug assertions and overflow checks come from fuzz/Cargo.toml's profile; no
# sanitizer (safe Rust: speed first).
cargo +nightly fuzz build -O -s none
for t in "${TARGETS[@]}"; do
    corpus="corpus/$t"
    limit=(-max_total_time="$SECS")
    if [ -n "${FUZZ_CI:-}" ]; then
        corpus=$(mktemp -d)
        limit=(-seed=20261127 -runs="${FUZZ_CI_RUNS:-20000}")
    fi
    mkdir -p "$corpus"
    extra=()
    # The mail target also starts from the real bounces of ../shared, when they are there.
    if [ "$t" = mail ] && [ -d ../../shared/corpora/sisimai/eml ]; then extra=(../../shared/corpora/sisimai/eml); fi
    echo "fuzz: $t ${limit[*]}"
    cargo +nightly fuzz run -O -s none "$t" "$corpus" "seeds/$t" "${extra[@]}" -- \
        "${limit[@]}" -rss_limit_mb=4096 -max_len=262144 -print_final_stats=1 2>&1 \
        | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ *DONE)|SUMMARY|panicked|ERROR" || true
    if ls "artifacts/$t"/crash-* >/dev/null 2>&1; then
        echo "fuzz: $t crashed: $(ls artifacts/$t/crash-*)" >&2
        exit 1
    fi
done
