#!/usr/bin/env bash
# Schema-driven fuzzing of the admin API (issue 7): schemathesis (from PyPI, in a venv under
# target/) reads /api/v1/openapi.json from a running daemon and checks every operation with
# generated requests: no 5xx, responses matching the documented schema and status codes.
# The daemon runs on a fresh SQLite database with an admin token and a little data to find.
# Usage: scripts/fuzz-api.sh [max-examples-per-operation] (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLES=${1:-50}
PORT=${INFLOW_FUZZ_PORT:-18090}
VENV=target/schemathesis
[ -x $VENV/bin/schemathesis ] || { python3 -m venv $VENV && $VENV/bin/pip install -q 'schemathesis>=4,<5'; }
cargo build --locked --quiet --bin inflow
BIN=target/debug/inflow
WORK=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
cat > "$WORK/inflow.toml" <<TOML
[database]
url = "sqlite://$WORK/inflow.db"
[http]
listen = "127.0.0.1:$PORT"
[alerts]
enabled = false
[log]
level = "warn"
TOML
export INFLOW_CONFIG="$WORK/inflow.toml"
ADMIN=$($BIN user add --first Fuzz --last Admin --email fuzz-admin@example.com)
TOKEN=$($BIN token create --user "$ADMIN" --role admin --name fuzz 2>/dev/null)
$BIN run 2>"$WORK/daemon.log" &
for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
# Some data for the generated ids and filters to meet.
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"subject":"fuzz","lastname":"Fuzz","emailaddress1":"fuzz@example.com"}' http://127.0.0.1:$PORT/api/v1/leads
# One worker: with two, hypothesis (6.170) describes filtered strategies by parsing their
# source with `ast` in both threads at once, and CPython 3.11's AST validator then fails with
# "AST constructor recursion depth mismatch" now and then (a Runtime Error, no API fault; seen
# once in three runs on seed 20261127).
$VENV/bin/schemathesis run "http://127.0.0.1:$PORT/api/v1/openapi.json" \
  --header "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$EXAMPLES" \
  --workers 1 \
  ${INFLOW_FUZZ_SEED:+--seed "$INFLOW_FUZZ_SEED"} \
  --suppress-health-check all && status=0 || status=$?
if grep -q "panicked" "$WORK/daemon.log"; then echo "the daemon panicked:" >&2; grep -A5 panicked "$WORK/daemon.log" >&2; exit 1; fi
exit $status
