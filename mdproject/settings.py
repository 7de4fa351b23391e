"""Settings for the market-data hub.

Everything comes from the environment through django-environ, and nothing is required:
with no variables set the hub runs in *embedded mode* (SQLite, in-process channel layer,
local-memory cache, in-process Celery, the local provider simulators). Setting ``REDIS_URL``
switches to the production shape (channels-redis, Redis cache, Redis broker). Every variable
is documented in the README.
"""

from __future__ import annotations

from pathlib import Path

from mdproject.env import BASE_DIR, env, secret_key_from_file

# --- Core -----------------------------------------------------------------------------------

# Local state of the embedded default: SQLite file, generated secret key, static files.
VAR_DIR = Path(env.str("MDHUB_VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="") or secret_key_from_file(VAR_DIR / "secret_key")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",  # first, so `runserver` is Daphne's ASGI server
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_celery_beat",
    "feeds",
    "validation",
    "monitoring",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mdproject.urls"
ASGI_APPLICATION = "mdproject.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The feed worker, Daphne and Celery share the file: WAL lets readers run beside a
    # writer, IMMEDIATE transactions avoid "database is locked" on lock upgrades.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis or embedded ----------------------------------------------------------------------

REDIS_URL = env.str("REDIS_URL", default="")
EMBEDDED_MODE = not REDIS_URL

if EMBEDDED_MODE:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1000, "expiry": 60},
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "mdhub",
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }
else:
    # Pub/sub layer: one PUBLISH per group_send and ~6x the core layer's throughput with no
    # silent capacity drops (shared/notes/channels-layer-facts.md §2). Its per-consumer queues
    # are unbounded, so consumers conflate and bound what they hold themselves.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "mdhub"},
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "mdhub",
        }
    }

# --- Celery ---------------------------------------------------------------------------------

# Embedded mode: an in-memory broker, so a worker started inside the run command needs no
# outside service. With REDIS_URL, Redis is the broker and workers are separate processes.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL or "cache+memory://")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "Asia/Kolkata"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_TIME_LIMIT = 120
CELERY_RESULT_EXPIRES = 3600
# Keep the LOGGING below (JSON in production) in the worker and beat: by default Celery
# replaces the root logger's handlers with its own plain format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Auth, i18n, static ---------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "feeds:watchlist"
LOGOUT_REDIRECT_URL = "login"
# The live pages' JSON API answers a failed CSRF check in JSON; other pages get Django's.
CSRF_FAILURE_VIEW = "feeds.views.csrf_failure"

LANGUAGE_CODE = "en-in"
TIME_ZONE = "Asia/Kolkata"  # exchange time; stored datetimes are UTC (USE_TZ)
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"  # filled by collectstatic (scripts/run.sh)
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every start without it
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Security (production switches; the embedded default serves plain HTTP on loopback) -----

SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"

# --- Logging --------------------------------------------------------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# "json" (the production shape's default): one JSON object per line on stderr with timestamp
# (UTC, ISO 8601), level, logger, message, process and every `extra={...}` field of the call.
# "plain" (the embedded default's): one readable line per record.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if EMBEDDED_MODE else "json").strip().lower()
if LOG_FORMAT not in ("json", "plain"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"LOG_FORMAT must be 'json' or 'plain', not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s %(process)d",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": True,
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # One line per socket open/close is noise at the pool's scale; warnings still show.
        "websockets": {"level": "WARNING"},
        # Two lines per task run (received, succeeded): with the 5 s health check, most of
        # the log. Failures still show; beat still logs each task it sends.
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.app.trace": {"level": "WARNING"},
        # Celery's task loggers do not propagate to the root: a handler of ours here keeps
        # Celery from adding its own plain one (see CELERY_WORKER_HIJACK_ROOT_LOGGER).
        "celery.task": {"handlers": ["console"], "propagate": False},
    },
}

# --- Providers ------------------------------------------------------------------------------
# Base URLs default to the local simulators. Tokens are never settings: a ProviderAccount
# names the environment variable that holds its token, read only when connecting.

FYERS = {
    # Real: https://api-t1.fyers.in and wss://socket.fyers.in/hsm/v1-5/prod
    "API_URL": env.str("FYERS_API_URL", default="http://127.0.0.1:8765"),
    "SOCKET_URL": env.str("FYERS_SOCKET_URL", default="ws://127.0.0.1:8766/hsm/v1-5/prod"),
    # Topics per socket for the pool. FYERS now documents 5000 per API key; the design caps
    # each connection at 200 so that many connections share the load.
    "SYMBOLS_PER_CONNECTION": env.int("FYERS_SYMBOLS_PER_CONNECTION", default=200),
    "MAX_CONNECTIONS": env.int("FYERS_MAX_CONNECTIONS", default=10),
    "TOKEN_ENV": env.str("FYERS_TOKEN_ENV", default="FYERS_ACCESS_TOKEN"),
    "RATE_PER_SECOND": env.int("FYERS_RATE_PER_SECOND", default=10),
    "RATE_PER_MINUTE": env.int("FYERS_RATE_PER_MINUTE", default=200),
}

UPSTOX = {
    # Real: https://api.upstox.com and wss://api.upstox.com/v3/feed/market-data-feed
    "API_URL": env.str("UPSTOX_API_URL", default="http://127.0.0.1:8770"),
    "FEED_URL": env.str("UPSTOX_FEED_URL", default="ws://127.0.0.1:8771/v3/feed/market-data-feed"),
    # 2 connections per user on the normal plan, 5 on Upstox Plus (providers/UPSTOX.md §7.1).
    "MAX_CONNECTIONS": env.int("UPSTOX_MAX_CONNECTIONS", default=2),
    "TOKEN_ENV": env.str("UPSTOX_TOKEN_ENV", default="UPSTOX_ACCESS_TOKEN"),
    "RATE_PER_SECOND": env.int("UPSTOX_RATE_PER_SECOND", default=50),
    "RATE_PER_MINUTE": env.int("UPSTOX_RATE_PER_MINUTE", default=500),
}

# --- Feed workers -------------------------------------------------------------------------

FEEDS = {
    # A dead worker's connections are taken over by another once its leases lapse.
    "LEASE_TTL": env.float("FEEDS_LEASE_TTL", default=10.0),
    # A failed connection must be live this long before its symbols move back to it.
    "RECOVER_AFTER": env.float("FEEDS_RECOVER_SECONDS", default=5.0),
    # No data and no pong for this long while the market is open: the connection is failed
    # over (the clients ping at half this interval).
    "SILENCE_TIMEOUT": env.float("FEEDS_SILENCE_SECONDS", default=1.0),
    # Full re-read of instruments and accounts, in case a control message was missed.
    "RECONCILE_INTERVAL": env.float("FEEDS_RECONCILE_SECONDS", default=30.0),
    # How often each worker writes its own ConnectionHealth rows (no verdict). 0: never; the
    # health check (Celery beat, every 5 s) records the connections with its verdicts.
    "HEALTH_RECORD_INTERVAL": env.float("FEEDS_HEALTH_RECORD_SECONDS", default=0.0),
    # The embedded run starts both provider simulators in-process and points the accounts'
    # token variables at simulator tokens. Off by default once REDIS_URL says production.
    "SIMULATORS": env.bool("MDHUB_SIMULATORS", default=EMBEDDED_MODE),
}

# --- Delivery: caches, fan-out and the WebSocket API ---------------------------------------

DELIVERY = {
    # The feed worker publishes one batch of ticks per flush (and writes L2 in the same beat).
    "FLUSH_INTERVAL": env.float("MDHUB_FLUSH_MS", default=5.0) / 1000,
    # A cached value younger than this is "fresh"; older ones make the cache look further.
    "FRESH_AGE": env.float("MDHUB_FRESH_MS", default=100.0) / 1000,
    # L2 keys of instruments no longer written expire after this long.
    "L2_TTL": env.float("MDHUB_L2_TTL_SECONDS", default=86_400.0),
    # How often the worker persists the last tick of each changed instrument (L4).
    "PERSIST_INTERVAL": env.float("MDHUB_PERSIST_SECONDS", default=15.0),
    # L3: how long a snapshot may wait for the REST rate budget before falling to L4.
    "REST_MAX_WAIT": env.float("MDHUB_REST_MAX_WAIT", default=0.25),
    # Per-user defaults of the WebSocket API (a user's ClientLimits row overrides them).
    "MAX_SUBSCRIPTIONS": env.int("MDHUB_MAX_SUBSCRIPTIONS", default=500),
    "MAX_REQUESTS_PER_SECOND": env.int("MDHUB_MAX_REQUESTS_PER_SECOND", default=20),
    "MAX_UPDATES_PER_SECOND": env.int("MDHUB_MAX_UPDATES_PER_SECOND", default=200),
    "MAX_CONNECTIONS": env.int("MDHUB_MAX_CONNECTIONS", default=10),
    # A token-less connection must authenticate with its first message within this.
    "AUTH_TIMEOUT": env.float("MDHUB_AUTH_TIMEOUT", default=5.0),
    # A client whose oldest unsent update is older than MAX_LAG for PATIENCE is closed.
    "CLIENT_MAX_LAG": env.float("MDHUB_CLIENT_MAX_LAG", default=2.0),
    "CLIENT_PATIENCE": env.float("MDHUB_CLIENT_PATIENCE", default=10.0),
    # Fault drill: every tick batch costs the fan-out this long to take in (as on a web process
    # far from Redis), to see the performance monitor react. 0 in real use.
    "FAULT_BATCH_DELAY": env.float("MDHUB_FAULT_BATCH_DELAY_MS", default=0.0) / 1000,
}

# --- Validation ------------------------------------------------------------------------------

VALIDATION = {
    # Cross-source: the two providers disagreeing by more than this is a discrepancy (the
    # design's 1 %); a symbol's own threshold in the admin overrides it.
    "DISCREPANCY_BPS": env.float("MDHUB_DISCREPANCY_BPS", default=100.0),
    # "exchange": NSE/BSE/MCX hours in IST (pre-open relaxations, no staleness alarms while
    # closed). "always": the embedded simulators trade around the clock.
    "MARKET_HOURS": env.str(
        "MDHUB_MARKET_HOURS", default="always" if FEEDS["SIMULATORS"] else "exchange"
    ),
    # Exchange holidays (YYYY-MM-DD, comma-separated): closed all day.
    "HOLIDAYS": env.list("MDHUB_HOLIDAYS", default=[]),
    # The accuracy target: a symbol whose providers agree less often is escalated.
    "ACCURACY_TARGET": env.float("MDHUB_ACCURACY_TARGET", default=0.995),
    "MIN_COMPARISONS": env.int("MDHUB_ACCURACY_MIN_COMPARISONS", default=200),
    # A check quiet this long closes its incident (one ValidationOutcome row per incident).
    "INCIDENT_QUIET": env.float("MDHUB_INCIDENT_QUIET_SECONDS", default=5.0),
    # How often the worker stores incidents and counts, and re-reads the symbols' settings.
    "RECORD_INTERVAL": env.float("MDHUB_VALIDATION_RECORD_SECONDS", default=5.0),
    # REST re-checks of flagged prices of critical symbols, per second (REST budgets are small).
    "RECHECK_PER_SECOND": env.float("MDHUB_RECHECK_PER_SECOND", default=2.0),
}

# --- Monitoring -------------------------------------------------------------------------------

MONITORING = {
    # The health check's thresholds (monitoring/health.py has the rules).
    "BEAT_STALE": env.float("MDHUB_HEALTH_BEAT_STALE_SECONDS", default=5.0),
    "DATA_SILENCE": env.float("MDHUB_HEALTH_DATA_SILENCE_SECONDS", default=10.0),
    "ORDER_COOLDOWN": env.float("MDHUB_HEALTH_ORDER_COOLDOWN_SECONDS", default=30.0),
    # A connection's health row is written when its verdict or state changes, and at least
    # this often otherwise.
    "RECORD_EVERY": env.float("MDHUB_HEALTH_RECORD_SECONDS", default=60.0),
    # Health rows, validation outcomes, audits, reports and resolved alerts older than this
    # are pruned daily.
    "RETENTION_DAYS": env.int("MDHUB_RETENTION_DAYS", default=7),
    # Every process publishes its performance counters this often (a "perf" heartbeat).
    "PERF_BEAT": env.float("MDHUB_PERF_BEAT_SECONDS", default=2.0),
    # The performance monitor acts when the average receive -> delivery latency of a report's
    # window is above LATENCY_LIMIT ms, or when fewer than CACHE_EFFICIENCY_MIN of snapshot
    # lookups were answered from memory (L1/L2); monitoring/tuning.py has the rules.
    "LATENCY_LIMIT_MS": env.float("MDHUB_PERF_LATENCY_LIMIT_MS", default=80.0),
    "CACHE_EFFICIENCY_MIN": env.float("MDHUB_PERF_CACHE_EFFICIENCY_MIN", default=0.70),
    # GET /metrics (Prometheus) admits staff sessions and requests with "Authorization: Bearer
    # <token>" equal to this; empty (the default) turns token access off. A secret: never logged.
    "METRICS_TOKEN": env.str("MDHUB_METRICS_TOKEN", default=""),
}

# --- Instrument masters ---------------------------------------------------------------------

# Loaded by `setup_hub` on first run of the embedded default.
SAMPLE_MASTERS_DIR = BASE_DIR / "feeds" / "instruments" / "sample_data"
