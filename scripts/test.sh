#!/usr/bin/env bash
# The whole test suite: unit tests, the store suite on SQLite and PostgreSQL, and the
# end-to-end tests against the real binary. README's test command; CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
INFLOW_TEST_PG_URL="${INFLOW_TEST_PG_URL:-$(scripts/test-services.sh)}"
export INFLOW_TEST_PG_URL
cargo test --locked "$@"
# With no test filter, the admin API also faces the schema-driven fuzzer (fixed seed, so a
# failure reproduces). INFLOW_SKIP_FUZZ=1 skips it.
if [ $# -eq 0 ] && [ "${INFLOW_SKIP_FUZZ:-0}" != 1 ]; then
    INFLOW_FUZZ_SEED="${INFLOW_FUZZ_SEED:-20261127}" scripts/fuzz-api.sh 20
fi
