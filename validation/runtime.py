"""Django glue for the validator in the feed worker: its configuration from settings, the
symbols' specs from the database, and the records it writes.

``validator_running`` runs the validator's deferred stage beside the worker and, every
``RECORD_INTERVAL``, stores what it found (closed incidents as ``ValidationOutcome`` rows,
the symbols' running counts, escalations) and re-reads the symbols' specs, so an admin edit
of a tier or a threshold takes effect within that interval. Database work runs on Django's
sync thread; nothing here touches the tick path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import date

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from feeds.providers.ticks import Tick
from validation.accuracy import AccuracyTracker
from validation.engine import Recheck, Validator, ValidatorConfig
from validation.sessions import SessionCalendar
from validation.tier1 import Tier1
from validation.tier2 import Tier2, Tier2Config

logger = logging.getLogger(__name__)


def session_calendar_build() -> SessionCalendar:
    """The exchanges' sessions as the settings describe them (``MDHUB_MARKET_HOURS``,
    ``MDHUB_HOLIDAYS``)."""
    conf = settings.VALIDATION
    return SessionCalendar(
        always_open=conf["MARKET_HOURS"] == "always",
        holidays=[date.fromisoformat(d) for d in conf["HOLIDAYS"]],
    )


def validator_build(
    *,
    latest: Callable[[str, str], Tick | None] | None = None,
    republish: Callable[[list[Tick]], None] | None = None,
    recheck: Recheck | None = None,
) -> Validator:
    """A validator configured from the ``VALIDATION`` settings (specs are loaded by
    ``validator_running``); its REST re-checks go through the providers' L3 clients."""
    if recheck is None:
        from validation.services import rest_prices_fetch

        async def recheck(keys: list[str]) -> dict[str, tuple[int, int]]:
            return await rest_prices_fetch(keys=keys)

    conf = settings.VALIDATION
    return Validator(
        tier1=Tier1(calendar=session_calendar_build()),
        tier2=Tier2(config=Tier2Config(discrepancy_bps=conf["DISCREPANCY_BPS"])),
        tracker=AccuracyTracker(
            quiet=conf["INCIDENT_QUIET"],
            target=conf["ACCURACY_TARGET"],
            min_comparisons=conf["MIN_COMPARISONS"],
        ),
        config=ValidatorConfig(recheck_per_second=conf["RECHECK_PER_SECOND"]),
        recheck=recheck,
        republish=republish,
        latest=latest,
    )


def _load(validator: Validator, *, restore: bool) -> None:
    from validation.selectors import validation_escalations_get, validation_specs_get

    close_old_connections()  # the worker lives for days; Django's request hooks never run
    specs = validation_specs_get()
    validator.set_specs(specs)
    escalations = validation_escalations_get()
    if restore:
        for escalation in escalations:
            validator.escalate(escalation)
            validator.tracker.restore(
                escalation.key, preferred=escalation.preferred, reason=escalation.reason
            )
    else:
        validator.escalations_sync(escalations)  # an operator may have cleared some


def _record(validator: Validator) -> None:
    from validation.services import (
        symbol_accuracy_record,
        symbol_escalation_record,
        validation_incidents_record,
    )

    close_old_connections()
    tracker = validator.tracker
    # What cannot be stored now is kept for the next try, not lost.
    incidents = tracker.incidents_drain()
    try:
        validation_incidents_record(incidents=incidents)
    except Exception:
        tracker.incidents_requeue(incidents)
        raise
    deltas = tracker.deltas_drain()
    try:
        symbol_accuracy_record(deltas=deltas)
    except Exception:
        tracker.deltas_undo(deltas)
        raise
    while validator.escalations:
        symbol_escalation_record(escalation=validator.escalations[0])
        validator.escalations.popleft()


async def validation_record(validator: Validator) -> None:
    """Store what the validator found since the last call (incidents, counts, escalations)."""
    await sync_to_async(_record)(validator)


@contextlib.asynccontextmanager
async def validator_running(validator: Validator) -> AsyncIterator[Validator]:
    """The validator's deferred stage and its records, on this loop, until the block ends;
    then everything still pending is judged and stored."""
    await sync_to_async(_load)(validator, restore=True)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(validator.run(stop), name="validation deferred stage"),
        asyncio.create_task(_keep(validator), name="validation records"),
    ]
    try:
        yield validator
    finally:
        stop.set()
        tasks[1].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            validator.flush()
            await validation_record(validator)
        except Exception:
            logger.exception("validation: the last records could not be stored")


async def _keep(validator: Validator) -> None:
    interval = settings.VALIDATION["RECORD_INTERVAL"]
    while True:
        await asyncio.sleep(interval)
        try:
            await validation_record(validator)
            await sync_to_async(_load)(validator, restore=False)
        except Exception:
            logger.exception("validation: storing records failed; retrying next interval")
