#!/usr/bin/env bash
# The whole test suite: unit tests, the store suite on SQLite and PostgreSQL, and the
# end-to-end tests against the real binary. README's test command; CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
INFLOW_TEST_PG_URL="${INFLOW_TEST_PG_URL:-$(scripts/test-services.sh)}"
export INFLOW_TEST_PG_URL
exec cargo test --locked "$@"
