#!/usr/bin/env bash
# Wave sender benchmark (issue: campaign e-mail waves): N recipients, a ~10 KB personalised
# message, no rate limit, against Postfix's smtp-sink on loopback. Prints (a) Postfix's
# smtp-source sending the same count and size over the same number of sessions (the SMTP
# limit of this machine), (b) inflow's wave rate on SQLite and on PostgreSQL (start to
# completed, expansion included) with peak RSS, and the ratio b/a. Target: ratio >= 0.5,
# peak RSS < 100 MB.
# Usage: bench/waves.sh   (N=20000 CONC=4 ENGINES="sqlite postgres";
#                          INFLOW_BENCH_PG_SOCKET=/run/postgresql uses the Unix socket)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}
CONC=${CONC:-4}
PG_ADMIN=${INFLOW_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
if ! command -v /usr/sbin/smtp-sink >/dev/null; then
  echo "installing postfix (for smtp-sink and smtp-source) from Debian packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq && apt-get install -y -qq postfix >/dev/null
fi
cargo build --release --quiet --example wave_bench
WORK=$(mktemp -d /tmp/wavebench.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SINK_PID=
cleanup() { [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
# smtp-sink drops privileges to -u when started as root.
/usr/sbin/smtp-sink -u nobody -m $((CONC * 4)) "127.0.0.1:$PORT" 256 &
SINK_PID=$!
for _ in $(seq 1 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT))" 2>/dev/null && break; sleep 0.1; done
t0=$(date +%s.%N)
/usr/sbin/smtp-source -d -s "$CONC" -m "$N" -l 10240 -f news@example.com -t reader@bench.example "127.0.0.1:$PORT"
t1=$(date +%s.%N)
src_rate=$(python3 -c "print(round($N / ($t1 - $t0)))")
echo "smtp-source: $N messages of 10 KB over $CONC sessions in $(python3 -c "print(f'{$t1 - $t0:.2f}')") s = $src_rate msg/s"
for engine in ${ENGINES:-sqlite postgres}; do
  if [ "$engine" = sqlite ]; then
    url="sqlite://$WORK/inflow.db"
  else
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS inflow_wavebench WITH (FORCE)" -qc "CREATE DATABASE inflow_wavebench" >/dev/null
    url="${PG_ADMIN%/*}/inflow_wavebench"
    [ -n "${INFLOW_BENCH_PG_SOCKET:-}" ] && url="postgres://postgres@localhost/inflow_wavebench?host=$INFLOW_BENCH_PG_SOCKET"
  fi
  out=$(RUST_LOG=warn ${PERF_CMD:-} target/release/examples/wave_bench "$PORT" "$N" "$CONC" "$url")
  echo "$engine: $out"
  rate=$(echo "$out" | sed -E 's/.* = ([0-9]+) msg\/s.*/\1/')
  python3 -c "print(f'ratio {\"$engine\"}: {$rate / $src_rate:.2f} (target >= 0.5)')"
done
