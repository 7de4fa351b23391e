"""The Celery app, and its embedded worker and beat.

Configuration comes from Django settings (``CELERY_*``). With ``REDIS_URL`` set, Redis is the
broker and ``celery -A mdproject worker`` / ``celery -A mdproject beat`` run as processes of
their own. In embedded mode the broker is in memory, so the worker and beat run as threads of
the one hub process (``manage.py runhub`` starts them with ``EmbeddedCelery``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from celery import Celery
from celery.beat import EmbeddedService
from celery.worker import WorkController

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mdproject.settings")

app = Celery("mdproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)


class EmbeddedCelery:
    """A Celery worker (thread pool) and beat (DatabaseScheduler), both as threads of this
    process: what the in-memory broker of embedded mode needs, since nothing outside the
    process can reach it."""

    def __init__(self, *, concurrency: int = 2, beat: bool = True) -> None:
        self.concurrency = concurrency
        self.with_beat = beat
        self.worker: WorkController | None = None
        self.beat: threading.Thread | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        app.finalize()
        app.set_current()
        self.worker = WorkController(
            app=app,
            hostname=f"embedded@{socket.gethostname()}",
            pool="threads",
            concurrency=self.concurrency,
            # One worker in one process: no remote-control chatter to keep up.
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        self._thread = threading.Thread(target=self.worker.start, name="celery", daemon=True)
        self._thread.start()
        if self.with_beat:
            self.beat = EmbeddedService(app, thread=True, scheduler_cls=app.conf.beat_scheduler)
            self.beat.start()
        logger.info(
            "celery: embedded worker (%d threads)%s, in-memory broker",
            self.concurrency, " and beat (DatabaseScheduler)" if self.with_beat else "",
        )  # fmt: skip

    def stop(self, timeout: float = 10.0) -> None:
        if self.beat is not None:
            self.beat.stop()  # type: ignore[attr-defined]
            self.beat.join(timeout)
        if self.worker is not None and self._thread is not None:
            self.worker.stop(in_sighandler=False)
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("celery: the embedded worker did not stop within %g s", timeout)
