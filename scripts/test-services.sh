#!/usr/bin/env bash
# Makes sure the services the test suite talks to are running on this machine:
#   PostgreSQL on 127.0.0.1:5432 (the store suite runs every body on it as well as on SQLite);
#   aiosmtpd for /usr/bin/python3 (tests/support/smtp_sink.py is the tests' SMTP server);
#   dkimpy for /usr/bin/python3 (tests/support/dkim_verify.py checks DKIM signatures);
#   Dovecot (dovecot-imapd, and dovecot-submissiond for SMTP AUTH XOAUTH2), which the IMAP
#   and OAuth tests run in temp dirs of their own;
#   chromium, chromium-driver and axe-core for the web console's browser test;
#   MariaDB on 127.0.0.1:3306 for the FreePBX CDR table test.
# On the project's machines PostgreSQL is already running; on a fresh Debian machine this
# installs it from Debian packages and starts it. Prints the INFLOW_TEST_PG_URL to use.
set -euo pipefail

PG_URL_DEFAULT="postgres://postgres@127.0.0.1:5432/postgres"

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }

if ! command -v pg_isready >/dev/null 2>&1 || ! pg_up; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "test-services: installing PostgreSQL from Debian packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
  fi
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
  pg_up || { echo "test-services: PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1; }
fi

if ! /usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  echo "test-services: installing python3-aiosmtpd from Debian packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq python3-aiosmtpd >/dev/null
fi

# dkimpy verifies the DKIM signatures of wave mail (tests/support/dkim_verify.py).
if ! /usr/bin/python3 -c 'import dkim' >/dev/null 2>&1; then
  echo "test-services: installing python3-dkim from Debian packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq python3-dkim >/dev/null
fi

# Dovecot for the IMAP tests: the tests start their own instances (tests/it/dovecot.rs);
# the packaged service itself is not needed and is not started.
if ! command -v /usr/sbin/dovecot >/dev/null 2>&1; then
  echo "test-services: installing dovecot-imapd from Debian packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq dovecot-imapd >/dev/null
fi
# Dovecot's submission server: the SMTP AUTH XOAUTH2 tests (tests/it/oauth.rs) relay
# through it, with tokens checked by the same oauth2 passdb as IMAP.
if [ ! -x /usr/lib/dovecot/submission ]; then
  echo "test-services: installing dovecot-submissiond from Debian packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq dovecot-submissiond >/dev/null
fi

# The web console's browser test (tests/it/console.rs) drives Debian's chromium through
# chromedriver, and checks each page with axe-core (pinned, from the npm registry).
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  echo "test-services: installing chromium and chromium-driver from Debian packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium chromium-driver >/dev/null
fi
AXE_DIR=/opt/inflow-test
if [ ! -f "$AXE_DIR/node_modules/axe-core/axe.min.js" ]; then
  echo "test-services: installing axe-core 4.10.3 into $AXE_DIR" >&2
  mkdir -p "$AXE_DIR"
  npm install --silent --no-audit --no-fund --prefix "$AXE_DIR" axe-core@4.10.3 >/dev/null
fi

# MariaDB on 127.0.0.1:3306 (root, no password): the FreePBX CDR table test
# (tests/it/pbx.rs) creates its own database and read-only user there. The project's
# machines run it; on a fresh Debian machine this installs and starts it.
my_up() { mariadb -h 127.0.0.1 -P 3306 -u root -e 'select 1' >/dev/null 2>&1; }
if ! command -v mariadb >/dev/null 2>&1 || ! my_up; then
  if [ ! -x /usr/sbin/mariadbd ]; then
    echo "test-services: installing mariadb-server from Debian packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq mariadb-server >/dev/null
  fi
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql --bind-address=127.0.0.1 --port=3306
  for _ in $(seq 1 60); do my_up && break; sleep 0.5; done
  my_up || { echo "test-services: MariaDB did not come up on 127.0.0.1:3306" >&2; exit 1; }
fi

# A fresh Debian cluster asks for a password on TCP; give the postgres role one we know.
if ! psql "$PG_URL_DEFAULT" -qAtc 'select 1' >/dev/null 2>&1; then
  su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
  echo "postgres://postgres:postgres@127.0.0.1:5432/postgres"
else
  echo "$PG_URL_DEFAULT"
fi
