#!/usr/bin/env bash
# Webhook benchmark (issue: PBX webhooks). Prints, in one run:
#   (a) requests/s of an empty axum handler (examples/empty_server.rs),
#   (b) requests/s of inflow's /pbx/generic endpoint, every call durably persisted,
#       on SQLite and on PostgreSQL, and the ratio b/a;
#   p50/p99 latency at ~1,000 requests/s (wrk 4 has no rate flag: 16 connections pausing
#   12 ms between requests, achieved rate printed);
#   the end-to-end rate at which calls become phone-call activities;
#   lost calls: requests answered 2xx minus stored calls (must be 0);
#   latency: one call's final event to its phone-call activity, on an idle daemon just
#   started and after 20 s idle (issue 20: within 2 s, idle or not).
#   (c) the webhook floor of ../shared/bench-floors (issue 23: the same durable work — parse,
#       one group-commit writer, answer after the commit — done by the simplest fast server)
#       under the same wrk load on each engine, right before inflow, and inflow's ratio to it
#       (target >= 0.5). FLOORS=0 leaves it out; bench/floors.sh builds it.
# Usage: bench/webhooks.sh [seconds-per-run]   (installs wrk from Debian if missing)
#   ENGINES="sqlite postgres" (default both); INFLOW_BENCH_PG_SOCKET=/run/postgresql to reach
#   PostgreSQL over its Unix socket instead of 127.0.0.1:5432; INFLOW_BENCH_SQLITE_SYNC=normal
#   runs SQLite with synchronous=NORMAL (default full).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
PORT=18080
BASE_PORT=18081
PG_ADMIN=${INFLOW_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet --bin inflow --example empty_server
FLOOR=""
[ "${FLOORS:-1}" = 1 ] && FLOOR=$(bench/floors.sh webhook-floor)
FLOOR_PORT=18082
BIN=target/release/inflow
WORK=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" | head -1; }

echo "== baseline: empty axum handler =="
target/release/examples/empty_server 127.0.0.1:$BASE_PORT 2>/dev/null &
BASE_PID=$!
wait_port $BASE_PORT
BASE=$(INFLOW_BENCH_RUN=base wrk -t2 -c32 -d${SECS}s -s bench/webhook.lua http://127.0.0.1:$BASE_PORT | grep RESULT)
echo "$BASE"
BASE_RPS=$(echo "$BASE" | field rps)
kill $BASE_PID; wait $BASE_PID 2>/dev/null || true

count() { # engine url sql
  if [ "$1" = sqlite ]; then /usr/bin/python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" "${2#sqlite://}" "$3";
  else psql "$2" -qAtc "$3"; fi
}

# One call's final event to its activity (processed), in ms: engine url label call-id.
latency() {
  local body="{\"call_id\":\"$4\",\"event\":\"end\",\"direction\":\"inbound\",\"external_number\":\"+79035550000\",\"did\":\"+74951234567\",\"disposition\":\"answered\",\"duration_secs\":30}"
  local t0=$(date +%s%N)
  curl -sf -o /dev/null -H "Authorization: Bearer bench-token" -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$PORT/pbx/generic"
  local n=0
  while [ "$(count $1 "$2" "SELECT COUNT(*) FROM pbx_call WHERE call_id = '$4' AND status <> 'open'")" != 1 ]; do
    n=$((n + 1)); [ $n -gt 3000 ] && { echo "LATENCY $1 $3: not processed in 60 s"; return; }
    sleep 0.02
  done
  echo "LATENCY $1 $3: $(( ($(date +%s%N) - t0) / 1000000 )) ms from the final event to its activity"
}

run_engine() {
  local engine=$1 url
  if [ "$engine" = sqlite ]; then url="sqlite://$WORK/bench.db"; else
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS inflow_bench WITH (FORCE)" -qc "CREATE DATABASE inflow_bench" >/dev/null
    url="${PG_ADMIN%/*}/inflow_bench"
    # A local server can be reached over its Unix socket instead of TCP.
    [ -n "${INFLOW_BENCH_PG_SOCKET:-}" ] && url="postgres://postgres@localhost/inflow_bench?host=$INFLOW_BENCH_PG_SOCKET"
  fi
  echo "bench-token" > "$WORK/token"
  local floor_rps=0
  if [ -n "$FLOOR" ]; then
    local furl
    if [ "$engine" = sqlite ]; then furl="sqlite://$WORK/floor.db"; else
      psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS inflow_floorbench WITH (FORCE)" -qc "CREATE DATABASE inflow_floorbench" >/dev/null
      furl="${PG_ADMIN%/*}/inflow_floorbench"
      [ -n "${INFLOW_BENCH_PG_SOCKET:-}" ] && furl="postgres://postgres@localhost/inflow_floorbench?host=$INFLOW_BENCH_PG_SOCKET"
    fi
    "$FLOOR" --db "$furl" --listen 127.0.0.1:$FLOOR_PORT --token bench-token 2>/dev/null &
    local fpid=$!
    wait_port $FLOOR_PORT
    echo "== webhook floor on $engine: max throughput =="
    local fl=$(INFLOW_BENCH_RUN=floor-$engine wrk -t2 -c32 -d${SECS}s -s bench/webhook.lua http://127.0.0.1:$FLOOR_PORT | grep RESULT)
    echo "$fl"
    floor_rps=$(echo "$fl" | field rps)
    kill -TERM $fpid; wait $fpid 2>/dev/null || true
  fi
  cat > "$WORK/inflow.toml" <<TOML
[database]
url = "$url"
sqlite_synchronous = "${INFLOW_BENCH_SQLITE_SYNC:-full}"
[http]
listen = "127.0.0.1:$PORT"
[log]
level = "warn"
[pbx]
sweep_interval_secs = 1
default_owner = "bench@example.com"
[[pbx.lines]]
did = "+74951234567"
owner = "bench@example.com"
create_leads = true
[pbx.generic]
token_file = "$WORK/token"
TOML
  $BIN --config "$WORK/inflow.toml" migrate >/dev/null
  local now_ms=$(($(date +%s) * 1000))
  local ins="INSERT INTO systemuser (systemuserid, lastname, internalemailaddress, createdon, modifiedon) VALUES ('00000000-0000-0000-0000-00000000be7c', 'Bench', 'bench@example.com', $now_ms, $now_ms)"
  if [ "$engine" = sqlite ]; then /usr/bin/python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.execute(\"INSERT INTO contact_point VALUES ('systemuser','00000000-0000-0000-0000-00000000be7c','internalemailaddress','email','bench@example.com',0)\"); c.commit()" "$WORK/bench.db" "$ins";
  else psql "$url" -qc "$ins" -qc "INSERT INTO contact_point VALUES ('systemuser','00000000-0000-0000-0000-00000000be7c','internalemailaddress','email','bench@example.com',0)" >/dev/null; fi
  $BIN --config "$WORK/inflow.toml" run 2>"$WORK/inflow.log" &
  local pid=$!
  wait_port $PORT
  latency $engine "$url" "first call after start" "latency-start"
  local t0=$(date +%s.%N)
  echo "== inflow /pbx/generic on $engine: ~1,000 req/s =="
  local fixed=$(INFLOW_BENCH_RUN=fixed-$engine INFLOW_BENCH_DELAY_MS=12 wrk -t2 -c16 -d${SECS}s -s bench/webhook.lua http://127.0.0.1:$PORT | grep RESULT)
  echo "$fixed"
  echo "== inflow /pbx/generic on $engine: max throughput =="
  local max=$(INFLOW_BENCH_RUN=max-$engine wrk -t2 -c32 -d${SECS}s -s bench/webhook.lua http://127.0.0.1:$PORT | grep RESULT)
  echo "$max"
  # (+1: the latency probe's call.)
  local sent=$(( $(echo "$max" | field requests) - $(echo "$max" | field non2xx) + $(echo "$fixed" | field requests) - $(echo "$fixed" | field non2xx) + 1 ))
  local stored=$(count $engine "$url" "SELECT COUNT(*) FROM pbx_call")
  # Wait (bounded) until every call is processed, then report the end-to-end rate.
  local deadline=$(( $(date +%s) + 600 ))
  while :; do
    local open=$(count $engine "$url" "SELECT COUNT(*) FROM pbx_call WHERE status = 'open'")
    [ "$open" = 0 ] && break
    [ "$(date +%s)" -gt $deadline ] && { echo "still $open calls open after 600 s"; break; }
    sleep 0.5
  done
  local t1=$(date +%s.%N)
  local acts=$(count $engine "$url" "SELECT COUNT(*) FROM activity")
  sleep 20
  latency $engine "$url" "after 20 s idle" "latency-idle"
  kill -TERM $pid; wait $pid || true
  local rps=$(echo "$max" | field rps)
  /usr/bin/python3 - "$engine" "$BASE_RPS" "$rps" "$sent" "$stored" "$acts" "$t0" "$t1" "$(echo "$fixed" | field rps)" "$(echo "$fixed" | field p99_ms)" "$floor_rps" <<'PY'
import sys
eng, base, rps, sent, stored, acts, t0, t1, frps, p99, floor = sys.argv[1:]
base, rps, t0, t1, floor = float(base), float(rps), float(t0), float(t1), float(floor or 0)
vs_floor = f" floor={floor:.0f} req/s floor_ratio={rps/floor:.2f} (target >= 0.5)" if floor else ""
print(f"SUMMARY {eng}: empty={base:.0f} req/s inflow={rps:.0f} req/s ratio={rps/base:.3f}{vs_floor} | "
      f"~1k run: {float(frps):.0f} req/s p99={float(p99):.2f} ms | 2xx answered={sent} calls stored={stored} lost={int(sent)-int(stored)} | "
      f"activities={acts} end-to-end={int(acts)/(t1-t0):.0f} calls/s over {t1-t0:.1f} s")
PY
}

for e in ${ENGINES:-sqlite postgres}; do run_engine "$e"; done
