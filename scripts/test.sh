#!/usr/bin/env bash
# Set up on first use, then lint and run the whole test suite twice: in embedded mode and
# with REDIS_URL pointing at a real Redis (a private redis-server started here unless
# REDIS_URL is already set). Extra arguments go to pytest, e.g. ./scripts/test.sh -k admin
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_venv.sh
. scripts/_venv.sh test

echo "== ruff"
ruff check .
ruff format --check .

run_pytest() {
  # pytest exits 5 when it collected no test; with a -k or path filter that is not an error.
  local status=0
  python -m pytest "$@" || status=$?
  if [ "$status" -eq 5 ]; then
    echo "(no tests selected)"; return 0
  fi
  return "$status"
}

echo "== pytest, embedded mode"
(unset REDIS_URL; MDHUB_TEST_MODE=embedded run_pytest "$@")

redis_dir=""
pg_dir=""
cleanup() {
  if [ -n "$redis_dir" ]; then
    kill "$(cat "$redis_dir/redis.pid" 2>/dev/null)" 2>/dev/null || true
    rm -rf "$redis_dir"
  fi
  if [ -n "$pg_dir" ]; then
    postgres_stop "$pg_dir"
    rm -rf "$pg_dir"
  fi
}
trap cleanup EXIT

redis_url="${REDIS_URL:-}"
if [ -z "$redis_url" ]; then
  if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "Installing redis-server (Debian package)"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
      echo "error: the Redis pass needs redis-server on PATH (or REDIS_URL set)" >&2
      exit 1
    fi
  fi
  redis_dir="$(mktemp -d)"
  redis_port="$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
    --dir "$redis_dir" --daemonize yes --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log"
  for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis_url="redis://127.0.0.1:$redis_port/0"
fi

# PostgreSQL for the production-shape test (tests/integration), a private cluster too. Its
# database is the test's own; the rest of this pass keeps the default database settings.
# Without Debian's postgresql package that test skips, or fails when CI is set.
# shellcheck source=scripts/_postgres.sh
. scripts/_postgres.sh
if [ -z "${MDHUB_TEST_POSTGRES_URL:-}" ]; then
  if postgres_bindir >/dev/null; then
    pg_dir="$(mktemp -d)"
    pg_port="$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    # A throwaway cluster: nothing in it has to survive a crash.
    postgres_start "$pg_dir" "$pg_port" -c fsync=off -c synchronous_commit=off \
      -c full_page_writes=off
    export MDHUB_TEST_POSTGRES_URL="$postgres_url"
  else
    echo "PostgreSQL not found (Debian: apt-get install postgresql): tests/integration skips"
  fi
fi

echo "== pytest, Redis mode ($redis_url; PostgreSQL: ${MDHUB_TEST_POSTGRES_URL:-none})"
# tests/sdk drives the official SDKs against the simulators: no Django setting, channel layer
# or cache is involved, so a second run would only cost three minutes.
REDIS_URL="$redis_url" MDHUB_TEST_MODE=redis run_pytest --ignore=tests/sdk "$@"
