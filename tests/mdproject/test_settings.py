"""Settings load with no environment at all, and with every variable set."""

from __future__ import annotations

import json
import stat
import subprocess

from tests.conftest import PYTHON, REPO_ROOT, subprocess_env

DUMP = """
import json, django
from django.conf import settings
django.setup()
db = settings.DATABASES["default"]
print(json.dumps({
    "debug": settings.DEBUG,
    "embedded": settings.EMBEDDED_MODE,
    "secret": settings.SECRET_KEY,
    "hosts": settings.ALLOWED_HOSTS,
    "db_engine": db["ENGINE"], "db_name": str(db["NAME"]), "db_host": db.get("HOST", ""),
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "cache": settings.CACHES["default"]["BACKEND"],
    "broker": settings.CELERY_BROKER_URL,
    "fyers": settings.FYERS, "upstox": settings.UPSTOX,
}))
"""


def load_settings(**env: str) -> dict:
    result = subprocess.run(
        [PYTHON, "-c", DUMP],
        cwd=REPO_ROOT,
        env=subprocess_env(DJANGO_SETTINGS_MODULE="mdproject.settings", **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_no_environment_gives_embedded_defaults(tmp_path):
    loaded = load_settings(MDHUB_VAR_DIR=str(tmp_path))

    assert loaded["embedded"] is True
    assert loaded["debug"] is False
    assert loaded["db_engine"] == "django.db.backends.sqlite3"
    assert loaded["db_name"] == str(tmp_path / "db.sqlite3")
    assert loaded["layer"] == "channels.layers.InMemoryChannelLayer"
    assert loaded["cache"] == "django.core.cache.backends.locmem.LocMemCache"
    assert loaded["broker"] == "memory://"
    assert "localhost" in loaded["hosts"]
    # Provider defaults point at the local simulators and carry the documented caps.
    assert loaded["fyers"]["API_URL"] == "http://127.0.0.1:8765"
    assert loaded["fyers"]["SOCKET_URL"] == "ws://127.0.0.1:8766/hsm/v1-5/prod"
    assert loaded["fyers"]["SYMBOLS_PER_CONNECTION"] == 200
    assert loaded["upstox"]["FEED_URL"] == "ws://127.0.0.1:8771/v3/feed/market-data-feed"
    assert loaded["fyers"]["RATE_PER_SECOND"] == 10
    assert loaded["upstox"]["RATE_PER_MINUTE"] == 500


def test_generated_secret_key_is_private_and_stable(tmp_path):
    first = load_settings(MDHUB_VAR_DIR=str(tmp_path))["secret"]
    key_file = tmp_path / "secret_key"

    assert len(first) >= 50
    assert key_file.read_text().strip() == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_settings(MDHUB_VAR_DIR=str(tmp_path))["secret"] == first


def test_full_environment_is_honoured(tmp_path):
    loaded = load_settings(
        MDHUB_VAR_DIR=str(tmp_path),
        SECRET_KEY="k" * 50,
        DEBUG="true",
        ALLOWED_HOSTS="hub.example.com,10.0.0.5",
        DATABASE_URL="postgres://hub:pw@db.internal:5432/mdhub",
        REDIS_URL="redis://cache.internal:6379/2",
        FYERS_API_URL="https://api-t1.fyers.in",
        FYERS_SOCKET_URL="wss://socket.fyers.in/hsm/v1-5/prod",
        FYERS_SYMBOLS_PER_CONNECTION="5000",
        FYERS_MAX_CONNECTIONS="3",
        UPSTOX_API_URL="https://api.upstox.com",
        UPSTOX_FEED_URL="wss://api.upstox.com/v3/feed/market-data-feed",
        UPSTOX_MAX_CONNECTIONS="5",
    )

    assert loaded["embedded"] is False
    assert loaded["debug"] is True
    assert loaded["secret"] == "k" * 50
    assert not (tmp_path / "secret_key").exists()
    assert loaded["hosts"] == ["hub.example.com", "10.0.0.5"]
    assert loaded["db_engine"] == "django.db.backends.postgresql"
    assert (loaded["db_name"], loaded["db_host"]) == ("mdhub", "db.internal")
    assert loaded["layer"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    assert loaded["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert loaded["broker"] == "redis://cache.internal:6379/2"
    assert loaded["fyers"]["SOCKET_URL"] == "wss://socket.fyers.in/hsm/v1-5/prod"
    assert loaded["fyers"]["SYMBOLS_PER_CONNECTION"] == 5000
    assert loaded["fyers"]["MAX_CONNECTIONS"] == 3
    assert loaded["upstox"]["API_URL"] == "https://api.upstox.com"
    assert loaded["upstox"]["MAX_CONNECTIONS"] == 5


def test_tokens_are_not_settings():
    """Credentials live in the environment only: no setting holds a token value."""
    loaded = load_settings(FYERS_ACCESS_TOKEN="APP-100:secret.jwt.value", MDHUB_VAR_DIR="/tmp")
    assert "secret.jwt.value" not in json.dumps(loaded)
