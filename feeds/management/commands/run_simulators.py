"""Run the FYERS and Upstox simulators on the instruments in the database."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feeds.providers.simulation.run import add_simulator_arguments, serve_until_stopped
from feeds.providers.simulation.universe import sim_instrument_from
from feeds.selectors import instruments_for_simulation


class Command(BaseCommand):
    help = (
        "Serve local simulators of both brokers (REST + WebSocket, the real protocols) over "
        "the instruments in the database, sharing one seeded market. Prints one JSON line "
        "with ports and fresh test tokens, then runs until interrupted. Script faults on a "
        "running simulator with `manage.py simctl`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_simulator_arguments(parser)
        parser.add_argument(
            "--enabled-only", action="store_true", help="List only enabled instruments."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        instruments = [
            sim_instrument_from(inst)
            for inst in instruments_for_simulation(enabled_only=options["enabled_only"])
        ]
        if not instruments:
            raise CommandError("No instruments: run `manage.py import_instruments --sample` first.")
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        try:
            asyncio.run(serve_until_stopped(instruments, options, out=self.stdout))
        except OSError as exc:
            raise CommandError(f"cannot listen: {exc}") from exc
