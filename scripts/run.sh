#!/usr/bin/env bash
# Set up on first use, then start the hub on its embedded default (no outside services):
#   ./scripts/run.sh          → http://127.0.0.1:8000/  (admin at /admin/)
# HOST and PORT choose the address; any README variable can be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_venv.sh
. scripts/_venv.sh

python manage.py migrate --noinput
python manage.py setup_hub
python manage.py collectstatic --noinput --verbosity 0

host="${HOST:-127.0.0.1}"
port="${PORT:-8000}"
echo "Serving on http://$host:$port/ (admin: http://$host:$port/admin/). Ctrl-C stops."
# One process: Daphne, the feed worker and both provider simulators on one event loop.
exec python manage.py runhub --host "$host" --port "$port"
