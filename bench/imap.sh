#!/usr/bin/env bash
# IMAP ingest benchmark (issue: IMAP ingest): a Dovecot mailbox of N mixed messages
# (inquiries, some with attachments; replies to wave mail; DSN bounces; auto-replies;
# 2-50 KB). Prints (a) the bare async-imap fetch rate in the worker's batches, (b) inflow's
# end-to-end rate (fetch, parse, classify, dedup, commit, flag, checkpoint) on SQLite and
# PostgreSQL, the ratio b/a, and peak RSS of each run. Target: ratio >= 0.5, RSS < 100 MB.
# (c) The ingest floor of ../shared/bench-floors (issue 23: the same durable work — fetch, full
# parse, one multi-row insert per batch, durable commit, flag, checkpoint — done by the simplest
# fast program) on the same mailbox right before inflow on each engine, and inflow's ratio to
# it (target >= 0.5). FLOORS=0 leaves the floor out; bench/floors.sh builds it.
# Usage: bench/imap.sh   (N=10000 BATCH=50 ENGINES="sqlite postgres";
#                         INFLOW_BENCH_PG_SOCKET=/run/postgresql uses the Unix socket)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
BATCH=${BATCH:-50}
PG_ADMIN=${INFLOW_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
command -v /usr/sbin/dovecot >/dev/null || { echo "needs dovecot-imapd (scripts/test-services.sh installs it)" >&2; exit 1; }
cargo build --release --quiet --example imap_bench
floor=""
[ "${FLOORS:-1}" = 1 ] && floor=$(bench/floors.sh ingest-floor)
WORK=$(mktemp -d /tmp/imapbench.XXXXXX)
chmod 755 "$WORK"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { [ -f "$WORK/run/master.pid" ] && kill "$(cat "$WORK/run/master.pid")" 2>/dev/null; sleep 0.5; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/run" "$WORK/state" "$WORK/home"
echo "bench:{PLAIN}secret::::::" > "$WORK/passwd"
cat > "$WORK/dovecot.conf" <<CONF
protocols = imap
listen = 127.0.0.1
base_dir = $WORK/run
state_dir = $WORK/state
log_path = $WORK/dovecot.log
ssl = no
disable_plaintext_auth = no
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $WORK/passwd
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=$WORK/home/%u
}
mail_location = maildir:~/Maildir
namespace inbox {
  inbox = yes
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $PORT
  }
  inet_listener imaps {
    port = 0
  }
}
CONF
python3 bench/gen_mailbox.py "$WORK/home/bench/Maildir" "$N"
chown -R dovecot:dovecot "$WORK/home"
/usr/sbin/dovecot -c "$WORK/dovecot.conf"
for _ in $(seq 1 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT))" 2>/dev/null && break; sleep 0.1; done
# Warm-up: the first SELECT indexes the Maildir; every measured run then reads the same state.
RUST_LOG=warn target/release/examples/imap_bench bare "$PORT" bench secret "$BATCH" >/dev/null
bare=$(RUST_LOG=warn target/release/examples/imap_bench bare "$PORT" bench secret "$BATCH")
echo "$bare"
bare_rate=$(echo "$bare" | sed -E 's/.* = ([0-9]+) msg\/s.*/\1/')
for engine in ${ENGINES:-sqlite postgres}; do
  if [ "$engine" = sqlite ]; then
    url="sqlite://$WORK/inflow.db"
  else
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS inflow_imapbench WITH (FORCE)" -qc "CREATE DATABASE inflow_imapbench" >/dev/null
    url="${PG_ADMIN%/*}/inflow_imapbench"
    [ -n "${INFLOW_BENCH_PG_SOCKET:-}" ] && url="postgres://postgres@localhost/inflow_imapbench?host=$INFLOW_BENCH_PG_SOCKET"
  fi
  floor_rate=""
  if [ -n "$floor" ]; then
    if [ "$engine" = sqlite ]; then
      furl="sqlite://$WORK/floor.db"
    else
      psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS inflow_floorbench WITH (FORCE)" -qc "CREATE DATABASE inflow_floorbench" >/dev/null
      furl="${PG_ADMIN%/*}/inflow_floorbench"
      [ -n "${INFLOW_BENCH_PG_SOCKET:-}" ] && furl="postgres://postgres@localhost/inflow_floorbench?host=$INFLOW_BENCH_PG_SOCKET"
    fi
    fout=$("$floor" --port "$PORT" --user bench --pass secret --db "$furl" --batch "$BATCH")
    echo "$fout"
    floor_rate=$(echo "$fout" | sed -E 's/.* msg_per_s=([0-9]+).*/\1/')
  fi
  out=$(RUST_LOG=${INFLOW_BENCH_LOG:-warn} ${PERF_CMD:-} target/release/examples/imap_bench inflow "$PORT" bench secret "$BATCH" "$url")
  echo "$out"
  rate=$(echo "$out" | sed -E 's/.* = ([0-9]+) msg\/s.*/\1/')
  python3 -c "print(f'ratio {\"$engine\"}: {$rate / $bare_rate:.2f} of the bare fetch')"
  if [ -n "$floor_rate" ]; then
    python3 -c "print(f'floor ratio {\"$engine\"}: {$rate / $floor_rate:.2f} of the ingest floor ({$floor_rate} msg/s) (target >= 0.5)')"
  fi
done
