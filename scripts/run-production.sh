#!/usr/bin/env bash
# The production shape on one machine, to prove it: a private Redis and a private PostgreSQL
# cluster (Debian's redis-server and postgresql packages), the database migrated and set up,
# then every process of the Procfile under honcho: two Daphne servers, two feed workers, the
# Celery worker and beat, and the broker simulators. Ctrl-C stops them all, then Redis and
# PostgreSQL.
#   ./scripts/run-production.sh    → http://127.0.0.1:8001/ and http://127.0.0.1:8002/
# State (the PostgreSQL cluster, Redis's log) is kept in var/production/ between runs (or in
# MDHUB_PRODUCTION_DIR). With REDIS_URL or DATABASE_URL set, those servers are used instead.
# WEB1_PORT, WEB2_PORT, WEB_HOST and every README variable can be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_venv.sh
. scripts/_venv.sh production
# shellcheck source=scripts/_postgres.sh
. scripts/_postgres.sh

state="$(realpath -m "${MDHUB_PRODUCTION_DIR:-var/production}")"
mkdir -p "$state"
free_port() {
  python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

redis_dir=""
pg_dir=""
cleanup() {
  if [ -n "$redis_dir" ] && [ -f "$redis_dir/redis.pid" ]; then
    kill "$(cat "$redis_dir/redis.pid")" 2>/dev/null || true
  fi
  if [ -n "$pg_dir" ]; then
    postgres_stop "$pg_dir"
  fi
}
trap cleanup EXIT

if [ -z "${REDIS_URL:-}" ]; then
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "error: redis-server not found (Debian/Ubuntu: apt-get install redis-server)" >&2
    exit 1
  fi
  redis_dir="$state/redis"
  mkdir -p "$redis_dir"
  redis_port="$(free_port)"
  redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
    --dir "$redis_dir" --daemonize yes --pidfile "$redis_dir/redis.pid" \
    --logfile "$redis_dir/redis.log"
  for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  export REDIS_URL="redis://127.0.0.1:$redis_port/0"
fi
if [ -z "${DATABASE_URL:-}" ]; then
  pg_dir="$state/postgres"
  postgres_start "$pg_dir" "$(free_port)"
  postgres_ensure_db mdhub
  export DATABASE_URL="${postgres_url%/postgres}/mdhub"
fi
# The simulators trade around the clock; real brokers follow the exchanges' hours.
export MDHUB_MARKET_HOURS="${MDHUB_MARKET_HOURS:-always}"
echo "Redis: $REDIS_URL; PostgreSQL: $DATABASE_URL"

python manage.py migrate --noinput
python manage.py setup_hub
python manage.py collectstatic --noinput --verbosity 0

echo "Serving on http://${WEB_HOST:-127.0.0.1}:${WEB1_PORT:-8001}/ and" \
  "http://${WEB_HOST:-127.0.0.1}:${WEB2_PORT:-8002}/ (logs: JSON lines). Ctrl-C stops."
# honcho starts each Procfile line in its own process group, stops them all (SIGTERM, then
# SIGKILL after 5 s) on Ctrl-C or as soon as one of them exits.
honcho start -f Procfile
