#!/usr/bin/env bash
# Web console benchmark (issue 19 §5): 100,000 leads, 1,000,000 activities, 50 campaigns, then
# every main page requested over HTTP with a signed-in session; prints the median and the
# slowest request per page and engine (target: < 100 ms each).
# Usage: bench/console.sh   (ENGINES="sqlite postgres"; INFLOW_BENCH_PG_SOCKET=/run/postgresql)
set -euo pipefail
cd "$(dirname "$0")/.."
PG_ADMIN=${INFLOW_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
cargo build --release --quiet --example console_bench
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for engine in ${ENGINES:-sqlite postgres}; do
  echo "== $engine =="
  if [ "$engine" = sqlite ]; then
    url="sqlite://$WORK/console.db"
  else
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS inflow_console WITH (FORCE)" -qc "CREATE DATABASE inflow_console" >/dev/null
    url="${PG_ADMIN%/*}/inflow_console"
    [ -n "${INFLOW_BENCH_PG_SOCKET:-}" ] && url="postgres://postgres@localhost/inflow_console?host=$INFLOW_BENCH_PG_SOCKET"
  fi
  RUST_LOG=warn target/release/examples/console_bench "$url"
done
