"""`manage.py run_simulators` and `manage.py simctl` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from tests.conftest import PYTHON, REPO_ROOT, subprocess_env


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    var = tmp_path_factory.mktemp("var")
    env = subprocess_env(MDHUB_VAR_DIR=str(var), DATABASE_URL=f"sqlite:///{var / 'db.sqlite3'}")
    for command in (["migrate", "--noinput"], ["import_instruments", "--sample"]):
        subprocess.run(
            [PYTHON, "manage.py", *command], cwd=REPO_ROOT, env=env, check=True,
            capture_output=True, timeout=120,
        )  # fmt: skip
    return env


@pytest.fixture(scope="module")
def simulators(env):
    proc = subprocess.Popen(
        [PYTHON, "manage.py", "run_simulators", "--fyers-rest-port", "0",
         "--fyers-socket-port", "0", "--upstox-rest-port", "0", "--upstox-feed-port", "0",
         "--seed", "3"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line, "run_simulators printed nothing"
        yield json.loads(line)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def simctl(env, *args: str) -> dict | list:
    result = subprocess.run(
        [PYTHON, "manage.py", "simctl", *args], cwd=REPO_ROOT, env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_simulators_serve_the_database_instruments(env, simulators):
    assert simulators["instruments"] > 2000
    assert simulators["fyers"]["token"].startswith("SIMAPP-100:")
    status = simctl(env, "fyers", "status", "--url", simulators["fyers"]["api_url"])
    assert status["instruments"] == simulators["instruments"]
    assert status["market_open"] is True


def test_faults_and_market_are_scripted_from_the_command_line(env, simulators):
    fyers, upstox = simulators["fyers"]["api_url"], simulators["upstox"]["api_url"]
    rule = simctl(env, "fyers", "fault", "--kind", "spike", "--count", "3",
                  "--keys", "NSE:SBIN", "--url", fyers)  # fmt: skip
    assert rule["id"] >= 1
    assert simctl(env, "upstox", "market-close", "--url", upstox) == {"open": False}
    assert simctl(env, "upstox", "reject-auth", "--url", upstox) == {"reject": True}
    labels = simctl(env, "upstox", "labels", "--url", upstox)
    assert [lb["kind"] for lb in labels][-1] == "reject_auth"
    assert simctl(env, "fyers", "caps", "--topics", "10", "--url", fyers) == {"topics": 10}


def test_simctl_says_clearly_when_no_simulator_listens(env):
    result = subprocess.run(
        [PYTHON, "manage.py", "simctl", "fyers", "status", "--url", "http://127.0.0.1:9"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "no simulator at http://127.0.0.1:9" in result.stderr
