"""The embedded hub in one process: Daphne, the feed worker and the provider simulators on
one event loop, so that the in-process channel layer carries control messages (and, later,
ticks) between them with no outside service."""

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

    def handle(self, *args: Any, **options: Any) -> None:
        from mdproject.asgi import application

        simulators = settings.FEEDS["SIMULATORS"] and not options["no_simulators"]
        stop = asyncio.Event()
        feeds: list[asyncio.Task[None]] = []

        def start_feeds() -> None:
            # Runs inside Server.run(), once the reactor's asyncio loop is current.
            task = asyncio.get_event_loop().create_task(feeds_serve(stop, simulators=simulators))
            task.add_done_callback(_stop_server_on_failure)
            feeds.append(task)

        def stop_feeds() -> defer.Deferred | None:
            stop.set()
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
