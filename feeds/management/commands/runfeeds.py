"""Run one feed worker: the provider connections, kept true to the pool assignment."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from feeds.runtime import feeds_serve, worker_config_from_settings


class Command(BaseCommand):
    help = (
        "Run a feed worker: one asyncio loop holding the provider connections. It plans the "
        "pool (when it holds the planner lease), claims its share of connections, and "
        "applies admin changes within seconds. Several may run against one Redis."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--worker-id", default=None, help="Default: host-pid.")
        parser.add_argument(
            "--simulators",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Start both provider simulators in this process (default: FEEDS SIMULATORS, "
            "on in embedded mode).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        simulators = options["simulators"]
        if simulators is None:
            simulators = settings.FEEDS["SIMULATORS"]
        config = worker_config_from_settings(worker_id=options["worker_id"])
        asyncio.run(_main(simulators=simulators, config=config))


async def _main(**kwargs: Any) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await feeds_serve(stop, **kwargs)
