"""Log format: JSON lines in the production shape (REDIS_URL set), plain lines in the embedded
default; LOG_FORMAT overrides either. Celery's own logging set-up keeps the format.

Each case loads the settings in a child process, as a real process of the hub would.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime

import pytest

from tests.conftest import PYTHON, REPO_ROOT, subprocess_env

PROBE = """
import logging, sys
import django
from django.conf import settings
django.setup()
if "--celery" in sys.argv:
    # What `celery worker` and `celery beat` do to logging before they run.
    from celery.utils.log import get_task_logger
    from mdproject.celery import app
    app.log.setup(loglevel="INFO")
    get_task_logger("validation.tasks").info("from a task", extra={"task_field": 1})
print(settings.LOG_FORMAT, flush=True)
logging.getLogger("feeds.pool.worker").warning(
    "connection %s %s", "fyers:primary:0", "down",
    extra={"connection": "fyers:primary:0", "verdict": "down", "worker": "feeds-1"},
)
"""


def probe(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-c", PROBE, *args],
        cwd=REPO_ROOT,
        env=subprocess_env(
            DJANGO_SETTINGS_MODULE="mdproject.settings", MDHUB_VAR_DIR=str(tmp_path), **env
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )


# No Redis server is contacted: setting REDIS_URL only chooses the production shape.
REDIS = {"REDIS_URL": "redis://127.0.0.1:9/0"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "plain"),
        (REDIS, "json"),
        ({**REDIS, "LOG_FORMAT": "plain"}, "plain"),
        ({"LOG_FORMAT": "JSON"}, "json"),
    ],
    ids=["embedded", "production", "production-plain", "embedded-json"],
)
def test_format_follows_the_shape_unless_log_format_says(tmp_path, env, expected) -> None:
    done = probe(tmp_path, **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected
    line = done.stderr.strip().splitlines()[-1]
    if expected == "plain":
        assert line.endswith(" WARNING feeds.pool.worker: connection fyers:primary:0 down")
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)


def test_a_json_line_has_the_fields_and_the_extras(tmp_path) -> None:
    done = probe(tmp_path, **REDIS)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines  # nothing else on stderr
    record = json.loads(lines[0])
    assert record["level"] == "WARNING"
    assert record["logger"] == "feeds.pool.worker"
    assert record["message"] == "connection fyers:primary:0 down"
    assert isinstance(record["process"], int) and record["process"] > 0
    stamp = datetime.fromisoformat(record["timestamp"])
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0
    assert record["connection"] == "fyers:primary:0"
    assert record["verdict"] == "down"
    assert record["worker"] == "feeds-1"


def test_celery_keeps_the_json_format_for_its_own_and_task_loggers(tmp_path) -> None:
    done = probe(tmp_path, "--celery", **REDIS)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.strip().splitlines()]
    by_logger = {r["logger"]: r for r in records}
    assert by_logger["validation.tasks"]["message"] == "from a task"
    assert by_logger["validation.tasks"]["task_field"] == 1
    assert by_logger["feeds.pool.worker"]["verdict"] == "down"


def test_an_unknown_format_is_refused(tmp_path) -> None:
    done = probe(tmp_path, LOG_FORMAT="xml")
    assert done.returncode != 0
    assert "LOG_FORMAT must be 'json' or 'plain'" in done.stderr
