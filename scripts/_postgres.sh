# Sourced by test.sh and run-production.sh: a private PostgreSQL cluster from Debian's
# `postgresql` package (binaries under /usr/lib/postgresql/VERSION/bin), on loopback only.
#
#   postgres_bindir                       the newest installed bin directory, or fails
#   postgres_start DIR PORT [OPTION...]   initdb DIR on first use (superuser `postgres`, trust
#                                         auth), start the server on 127.0.0.1:PORT with its
#                                         socket in DIR; sets postgres_url (database `postgres`)
#   postgres_ensure_db NAME               create database NAME on it unless it exists
#   postgres_stop DIR                     fast shutdown (no-op when not running)
#
# PostgreSQL refuses to run as root: as root, DIR is handed to the `postgres` user (Debian's
# package creates it) and the server runs as that user. DIR's parent directories must let
# that user through.

postgres_bindir() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
  done
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"; return 0
  fi
  return 1
}

_postgres_as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

postgres_start() {
  local dir="$1" port="$2" bin
  shift 2
  if ! bin="$(postgres_bindir)"; then
    echo "error: PostgreSQL not found (Debian/Ubuntu: apt-get install postgresql)" >&2
    return 1
  fi
  mkdir -p "$dir"
  chmod 700 "$dir"
  if [ "$(id -u)" = 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
      echo "error: running as root, but there is no 'postgres' user to run PostgreSQL as" >&2
      return 1
    fi
    chown postgres: "$dir"
    if ! runuser -u postgres -- test -w "$dir"; then
      echo "error: the postgres user cannot reach $dir (a parent directory is private);" \
        "choose a directory it can reach" >&2
      return 1
    fi
  fi
  if [ ! -f "$dir/PG_VERSION" ]; then
    local out
    if ! out="$(_postgres_as_owner "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 \
      --no-locale 2>&1)"; then
      echo "$out" >&2
      return 1
    fi
  fi
  # Loopback TCP only; the Unix socket lives in the cluster's own directory.
  if ! _postgres_as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k '$dir' $*" start >/dev/null; then
    tail -n 20 "$dir/server.log" >&2
    return 1
  fi
  postgres_url="postgres://postgres@127.0.0.1:$port/postgres"
  _postgres_port="$port"
}

postgres_ensure_db() {
  local bin
  bin="$(postgres_bindir)"
  if [ -z "$("$bin/psql" -h 127.0.0.1 -p "$_postgres_port" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$1'")" ]; then
    "$bin/createdb" -h 127.0.0.1 -p "$_postgres_port" -U postgres "$1"
  fi
}

postgres_stop() {
  local bin
  bin="$(postgres_bindir)" || return 0
  if [ -f "$1/postmaster.pid" ]; then
    _postgres_as_owner "$bin/pg_ctl" -D "$1" -m fast -w -t 30 stop >/dev/null 2>&1 || true
  fi
}
