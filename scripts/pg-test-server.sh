#!/usr/bin/env bash
# A throwaway PostgreSQL server for the test suite.
#
#   scripts/pg-test-server.sh start    initdb + start (if not running); print the SQLAlchemy URL
#   scripts/pg-test-server.sh url      print the URL of the running server (exit 1 if none)
#   scripts/pg-test-server.sh status   say whether it runs (exit 0 running, 1 not)
#   scripts/pg-test-server.sh stop     stop it and delete its files (fine if it does not run)
#
# The cluster listens on 127.0.0.1 only, on a free port, with trust authentication (loopback
# only, throwaway data), fsync off, and no Unix socket. It has a database `imagelake_test`.
# Only the URL goes to stdout, so `url=$(scripts/pg-test-server.sh start)` works.
#
# Uses Debian's server binaries (/usr/lib/postgresql/<newest>/bin), or PG_BINDIR if set. As root
# the server runs as the `postgres` user (PostgreSQL refuses to run as root); otherwise as you.
# State lives in IMAGELAKE_PG_DIR, by default a folder under /tmp named after this checkout, so
# two checkouts on one machine get two servers.
set -euo pipefail

# Root's tools (runuser; ldconfig and start-stop-daemon for dpkg) live in sbin, which a minimal
# PATH may lack.
case ":$PATH:" in *:/usr/sbin:*) ;; *) export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" ;; esac

say() { printf 'pg-test-server: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

here=$(cd "$(dirname "$0")/.." && pwd -P)
checkout_key=$(printf '%s' "$here" | sha256sum | cut -c1-12)
state=${IMAGELAKE_PG_DIR:-${TMPDIR:-/tmp}/imagelake-pg-test-$(id -u)-$checkout_key}
data="$state/data"
log="$state/postgres.log"
port_file="$state/port"
pid_file="$state/postgres.pid"
db=imagelake_test

find_bindir() {
  if [ -n "${PG_BINDIR:-}" ]; then
    [ -x "$PG_BINDIR/pg_ctl" ] || die "PG_BINDIR=$PG_BINDIR has no pg_ctl"
    printf '%s\n' "$PG_BINDIR"
    return
  fi
  # Debian keeps the server binaries out of PATH; take the newest installed major version.
  local dir
  dir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
    printf '%s\n' "$dir"
    return
  fi
  die "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin; install them with: sudo bash scripts/setup-system.sh (Debian package postgresql), or set PG_BINDIR"
}

# Run a server-side command as the user that owns the cluster.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

url_for() { printf 'postgresql+psycopg://postgres@127.0.0.1:%s/%s\n' "$1" "$db"; }

is_running() {
  [ -f "$port_file" ] && [ -f "$data/postmaster.pid" ] && as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1
}

free_port() {
  local py
  for py in python3 python; do
    if command -v "$py" >/dev/null 2>&1; then
      "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
      return
    fi
  done
  # No python: pick from the dynamic range and let the start attempt tell whether it was free.
  echo $((49152 + RANDOM % 16000))
}

make_cluster() {
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "no 'postgres' user; install the Debian package postgresql (sudo bash scripts/setup-system.sh)"
    command -v runuser >/dev/null 2>&1 || die "runuser (Debian package util-linux) is needed to run PostgreSQL as the postgres user"
  fi
  rm -rf "$state"
  mkdir -p "$state"
  chmod 0755 "$state"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$state"
    # The postgres user must reach the state folder through every parent folder.
    runuser -u postgres -- test -w "$state" \
      || die "the postgres user cannot write $state (a parent folder is private?); set IMAGELAKE_PG_DIR to a folder under /tmp"
  fi
  as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --no-locale \
    --no-sync >"$state/initdb.log" 2>&1 || { cat "$state/initdb.log" >&2; die "initdb failed"; }
  cat >>"$data/postgresql.conf" <<EOF

# imagelake throwaway test cluster (scripts/pg-test-server.sh)
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
external_pid_file = '$pid_file'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 50
shared_buffers = 64MB
EOF
}

start() {
  if is_running; then
    url_for "$(cat "$port_file")"
    return
  fi
  make_cluster
  local port attempt
  for attempt in 1 2 3; do
    port=$(free_port)
    if as_owner "$bindir/pg_ctl" -D "$data" -l "$log" -o "-p $port" -w -t 60 start >/dev/null 2>&1; then
      echo "$port" >"$port_file"
      break
    fi
    port=""
    say "start attempt $attempt failed (port taken?); log: $log"
  done
  [ -n "$port" ] || { tail -n 20 "$log" >&2 || true; die "could not start PostgreSQL"; }
  "$bindir/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "CREATE DATABASE $db" >/dev/null || { stop; die "could not create database $db"; }
  say "running on 127.0.0.1:$port (pid $(cat "$pid_file" 2>/dev/null || echo '?'), data $data)"
  url_for "$port"
}

stop() {
  if [ -f "$data/postmaster.pid" ]; then
    as_owner "$bindir/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1 \
      || say "pg_ctl stop failed; see $log"
  fi
  rm -rf "$state"
}

bindir=$(find_bindir)
case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url)
    is_running || die "not running (start it with: scripts/pg-test-server.sh start)"
    url_for "$(cat "$port_file")"
    ;;
  status)
    if is_running; then say "running: $(url_for "$(cat "$port_file")")"; else say "not running"; exit 1; fi
    ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
