# Sourced by run.sh and test.sh: make .venv with Python 3.11 and install the project into it.
# Re-installs only when pyproject.toml changed since the last install (stamp file).
# Usage: source scripts/_venv.sh [extra]   e.g. "test" for the test tools.

_extra="${1:-}"
_py="${PYTHON:-}"
if [ -z "$_py" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      _py="$candidate"; break
    fi
  done
fi
if [ -z "$_py" ]; then
  echo "error: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "Creating virtualenv .venv with $("$_py" --version)"
  "$_py" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate

# Stamps name the pyproject hash and the extras installed with it ("base" or e.g. "test");
# any install of the current hash serves the base, the extras need their own stamp.
_hash="$(sha256sum pyproject.toml | cut -c1-16)"
_stamp=".venv/.installed-$_hash-${_extra:-base}"
if [ ! -f "$_stamp" ] && { [ -n "$_extra" ] || ! ls .venv/.installed-"$_hash"-* >/dev/null 2>&1; }; then
  echo "Installing dependencies into .venv (first run takes a minute)"
  python -m pip install --quiet --disable-pip-version-check --upgrade pip
  python -m pip install --quiet --disable-pip-version-check -e ".${_extra:+[$_extra]}"
  find .venv -maxdepth 1 -name '.installed-*' ! -name ".installed-$_hash-*" -delete
  touch "$_stamp"
fi
