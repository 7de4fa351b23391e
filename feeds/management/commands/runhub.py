"""The embedded hub in one process: Daphne, the feed worker and the provider simulators on
one event loop, so that the in-process channel layer carries control messages and ticks
between them with no outside service; and, on the in-memory broker, a Celery worker and beat
as threads (health checks, audits, reports)."""

from __future__ import annotations

# Daphne installs Twisted's asyncio reactor on import: before anything imports Twisted.
from daphne.server import Server  # isort: skip

import asyncio
import logging
from typing import Any

from daphne.endpoints import build_endpoint_description_strings
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from twisted.internet import defer, reactor

from feeds.runtime import feeds_serve

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Serve the hub on its embedded default: the web app and WebSockets (Daphne), one "
        "feed worker and, unless turned off, both provider simulators, in one process."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--no-simulators", action="store_true", help="Connect to the configured URLs."
        )
        parser.add_argument(
            "--no-celery",
            action="store_true",
            help="Do not start the embedded Celery worker and beat (they start only on the "
            "in-memory broker; with Redis they are processes of their own).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from mdproject.asgi import application
        from mdproject.celery import EmbeddedCelery

        simulators = settings.FEEDS["SIMULATORS"] and not options["no_simulators"]
        celery = None
        if settings.CELERY_BROKER_URL.startswith("memory") and not options["no_celery"]:
            celery = EmbeddedCelery()
            celery.start()
        stop = asyncio.Event()
        feeds: list[asyncio.Task[None]] = []

        def start_feeds() -> None:
            # Runs inside Server.run(), once the reactor's asyncio loop is current.
            task = asyncio.get_event_loop().create_task(feeds_serve(stop, simulators=simulators))
            task.add_done_callback(_stop_server_on_failure)
            feeds.append(task)

        def stop_feeds() -> defer.Deferred | None:
            stop.set()
            if celery is not None:
                celery.stop()
            return defer.Deferred.fromFuture(feeds[0]) if feeds else None

        reactor.addSystemEventTrigger("before", "shutdown", stop_feeds)
        Server(
            application=application,
            endpoints=build_endpoint_description_strings(
                host=options["host"], port=options["port"]
            ),
            ready_callable=start_feeds,
        ).run()


def _stop_server_on_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("feeds stopped with an error; stopping the server", exc_info=task.exception())
        if reactor.running:
            reactor.stop()
