#!/usr/bin/env bash
# Overdue-alert benchmark (issue: overdue alerts): 1,000,000 open activities, 10,000 overdue,
# 500 owners, 50 managers. Prints, per engine, the overdue query time, the whole scan +
# enqueue time, and the query plan (target: scan + enqueue < 1 s, plan on an index).
# Usage: bench/overdue.sh   (ENGINES="sqlite postgres"; INFLOW_BENCH_PG_SOCKET=/run/postgresql)
set -euo pipefail
cd "$(dirname "$0")/.."
PG_ADMIN=${INFLOW_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
cargo build --release --quiet --example overdue_bench
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for engine in ${ENGINES:-sqlite postgres}; do
  echo "== $engine =="
  if [ "$engine" = sqlite ]; then
    url="sqlite://$WORK/overdue.db"
  else
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS inflow_overdue WITH (FORCE)" -qc "CREATE DATABASE inflow_overdue" >/dev/null
    url="${PG_ADMIN%/*}/inflow_overdue"
    [ -n "${INFLOW_BENCH_PG_SOCKET:-}" ] && url="postgres://postgres@localhost/inflow_overdue?host=$INFLOW_BENCH_PG_SOCKET"
  fi
  RUST_LOG=warn target/release/examples/overdue_bench "$url"
done
