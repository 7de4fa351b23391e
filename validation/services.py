"""Write paths for validation: what the feed worker's validator found (incidents, running
counts, escalations), the operators' per-symbol settings, and the accuracy audit.

The feed worker calls the record functions from ``validation.runtime`` every few seconds;
admin actions and the Celery task call the rest. Nothing else writes these models.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.db import transaction
from django.utils import timezone

from feeds.cache.l1 import l1_reader
from feeds.cache.layers import InstrumentRef, LayeredCache
from feeds.models import Instrument

# The layered cache of this loop and its inputs: there is no public way yet to read one layer.
from feeds.selectors import _layered_cache, _market_inputs, market_data_close
from validation.accuracy import CountsDelta, Escalation, Incident
from validation.models import (
    AccuracyAudit,
    CheckName,
    Decision,
    Severity,
    SymbolValidation,
    ValidationOutcome,
)
from validation.selectors import AuditTarget, accuracy_audit_sample_get
from validation.ticksize import reference_tick

logger = logging.getLogger(__name__)

BULK_BATCH = 1000  # rows per INSERT/UPDATE statement
_IN_CHUNK = 500  # keys per IN (...): well under SQLite's bound on query parameters


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _instrument_ids(keys: Iterable[str]) -> dict[str, int]:
    """Canonical key -> instrument id for the known ``keys`` (one query per 500 keys)."""
    wanted = list(dict.fromkeys(keys))
    ids: dict[str, int] = {}
    for chunk in _chunks(wanted):
        ids.update(Instrument.objects.filter(key__in=chunk).values_list("key", "id"))
    return ids


def _log_unknown(what: str, unknown: Counter[str]) -> None:
    if unknown:
        logger.warning("validation: %d %s of %d unknown instrument(s) skipped (e.g. %s)",
                       sum(unknown.values()), what, len(unknown),
                       ", ".join(sorted(unknown)[:5]))  # fmt: skip


# --- Incidents ------------------------------------------------------------------------------


def _from_ns(ns: int) -> datetime:
    # Integer arithmetic: a float of epoch nanoseconds loses the microseconds.
    seconds, rest = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC) + timedelta(microseconds=rest // 1000)


def _from_ms(ms: int) -> datetime:
    seconds, rest = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, tz=UTC) + timedelta(milliseconds=rest)


# ValidationOutcome's price columns hold 18 digits, 6 after the point.
_PRICE_BOUND = Decimal(10) ** 12
_GAP_BOUND = Decimal(10) ** 10


def _price(value: int | None, scale: int) -> Decimal | None:
    """An integer at ``scale`` as exact rupees (None when absent or too large to store)."""
    if value is None:
        return None
    price = Decimal(value).scaleb(-scale)
    return price if abs(price) < _PRICE_BOUND else None


# Checks whose verdict means the price itself cannot be real: it must not be shown as one.
_ERROR_CHECKS = frozenset(
    c.value
    for c in (CheckName.NOT_POSITIVE, CheckName.OFF_TICK_GRID, CheckName.OUTSIDE_CIRCUIT,
              CheckName.REST_RECHECK)
)  # fmt: skip
# Two prices this far apart (either way) are a decimal shift, not a market move: circuit bands
# are at most 20 % a day, and a x10 or /10 misprint is 10.
_DECIMAL_RATIO = 5


def _decimal_apart(a: int | None, b: int | None) -> bool:
    if a is None or b is None or a <= 0 or b <= 0:
        return False
    return max(a, b) >= _DECIMAL_RATIO * min(a, b)


def incident_severity(*, incident: Incident) -> Severity:
    """How bad an incident is, from its check and decision:

    - critical: an escalation (a symbol's providers disagree too often: it is checked
      deeper and one provider is preferred from now on);
    - info: a re-check *confirmed* the flagged value (the flag was a false alarm);
    - error: the price cannot be real: not finite or not positive, off the tick grid,
      outside the circuit limits, contradicted by the provider's own REST quote, or a
      decimal-size gap (x5 or more either way) against its reference, whichever check caught
      it (a jump, an outlier, a discrepancy between the providers);
    - warning: everything else: suspicious but possibly real or a delivery anomaly (an
      ordinary jump or outlier, a discrepancy, a lagging provider, a stale symbol, a crossed
      book, a price outside the day's range, time or volume going backwards, duplicates).
    """
    if incident.check == CheckName.ESCALATION.value:
        return Severity.CRITICAL
    if incident.decision == Decision.CONFIRMED.value:
        return Severity.INFO
    if incident.check in _ERROR_CHECKS:
        return Severity.ERROR
    if _decimal_apart(incident.observed, incident.reference) or _decimal_apart(
        incident.fyers, incident.upstox
    ):
        return Severity.ERROR
    return Severity.WARNING


def _outcome(incident: Incident, instrument_id: int) -> ValidationOutcome:
    # Anything JSON cannot hold becomes text: one odd value must not block the whole batch
    # (a failed store is retried with the same rows).
    detail = json.loads(json.dumps(incident.detail, default=str))
    prices: dict[str, Decimal | None] = {}
    for name in ("observed", "reference", "fyers", "upstox", "consensus"):
        value = getattr(incident, name)
        prices[name] = _price(value, incident.scale)
        if value is not None and prices[name] is None:  # kept exactly, as sent
            detail.setdefault("unstored", {})[name] = [value, incident.scale]
    gap = incident.gap_bps
    gap_bps = None
    if gap is not None and math.isfinite(gap) and abs(gap) < _GAP_BOUND:
        gap_bps = Decimal(str(round(gap, 2)))
    return ValidationOutcome(
        instrument_id=instrument_id,
        check_name=incident.check,
        tier=incident.tier,
        severity=incident_severity(incident=incident),
        provider=incident.provider,
        decision=incident.decision,
        first_seen=_from_ns(incident.first_ns),
        last_seen=_from_ns(incident.last_ns),
        occurrences=incident.occurrences,
        exchange_time=_from_ms(incident.exchange_ts) if incident.exchange_ts else None,
        observed_value=prices["observed"],
        reference_value=prices["reference"],
        fyers_value=prices["fyers"],
        upstox_value=prices["upstox"],
        consensus_value=prices["consensus"],
        gap_bps=gap_bps,
        detail=detail,
    )


def validation_incidents_record(*, incidents: Iterable[Incident]) -> int:
    """Store closed incidents as ``ValidationOutcome`` rows, all or none (the caller keeps
    them for the next try when this raises); returns how many were stored.

    Prices become exact Decimals (integer / 10**scale), epoch times aware datetimes, and the
    severity comes from ``incident_severity``. Incidents of keys no instrument has are
    skipped and logged."""
    pending = list(incidents)
    if not pending:
        return 0
    ids = _instrument_ids(i.key for i in pending)
    rows, unknown = [], Counter[str]()
    for incident in pending:
        instrument_id = ids.get(incident.key)
        if instrument_id is None:
            unknown[incident.key] += 1
            continue
        rows.append(_outcome(incident, instrument_id))
    _log_unknown("incident(s)", unknown)
    with transaction.atomic():
        ValidationOutcome.objects.bulk_create(rows, batch_size=BULK_BATCH)
    return len(rows)


# --- Running counts -------------------------------------------------------------------------

_COUNT_FIELDS = ("ticks", "flagged", "comparisons", "agreements")


def symbol_accuracy_record(*, deltas: Mapping[str, CountsDelta]) -> int:
    """Add the validator's count deltas to the symbols' rows, creating missing rows; returns
    the rows touched.

    Per chunk of 500 symbols, one transaction: the rows are locked (``select_for_update``),
    read, added to and written back with one bulk update. A read-modify-write because
    ``by_check`` is JSON and is merged; the lock keeps two feed workers that carry the same
    symbol (one per provider) from losing each other's counts."""
    if not deltas:
        return 0
    now = timezone.now()
    touched = 0
    unknown = Counter[str]()
    for chunk in _chunks(list(deltas)):
        with transaction.atomic():
            ids = _instrument_ids(chunk)
            unknown.update(k for k in chunk if k not in ids)
            rows = {
                row.instrument_id: row
                for row in SymbolValidation.objects.select_for_update().filter(
                    instrument_id__in=ids.values()
                )
            }
            missing = [i for i in ids.values() if i not in rows]
            if missing:
                # Another worker may create the same row meanwhile: its row wins, then both
                # add to it below.
                SymbolValidation.objects.bulk_create(
                    [SymbolValidation(instrument_id=i, counting_since=now) for i in missing],
                    batch_size=BULK_BATCH,
                    ignore_conflicts=True,
                )
                rows.update(
                    (row.instrument_id, row)
                    for row in SymbolValidation.objects.select_for_update().filter(
                        instrument_id__in=missing
                    )
                )
            for key, instrument_id in ids.items():
                row, delta = rows[instrument_id], deltas[key]
                for name in _COUNT_FIELDS:
                    setattr(row, name, getattr(row, name) + getattr(delta, name))
                merged = dict(row.by_check or {})
                for name, count in delta.by_check.items():
                    merged[name] = merged.get(name, 0) + count
                row.by_check = merged
                row.counting_since = row.counting_since or now
                row.updated_at = now
            SymbolValidation.objects.bulk_update(
                [rows[i] for i in ids.values()],
                [*_COUNT_FIELDS, "by_check", "counting_since", "updated_at"],
                batch_size=BULK_BATCH,
            )
            touched += len(ids)
    _log_unknown("count delta(s)", unknown)
    return touched


def symbol_accuracy_reset(*, instrument_ids: Iterable[int]) -> int:
    """Start the symbols' counts afresh (after a fix, or a cleared escalation); returns the
    rows reset. The feed workers keep adding from here."""
    return SymbolValidation.objects.filter(instrument_id__in=list(instrument_ids)).update(
        ticks=0, flagged=0, by_check={}, comparisons=0, agreements=0,
        counting_since=timezone.now(), updated_at=None,
    )  # fmt: skip


# --- Escalations and operator settings ------------------------------------------------------


def symbol_escalation_record(*, escalation: Escalation, at: datetime | None = None) -> None:
    """Mark the symbol escalated (checked deep, ``preferred`` provider first) with why, so
    that a restarted worker restores it. Only the escalation fields are written."""
    instrument_id = _instrument_ids([escalation.key]).get(escalation.key)
    if instrument_id is None:
        logger.warning("validation: escalation of unknown instrument %s skipped", escalation.key)
        return
    SymbolValidation.objects.update_or_create(
        instrument_id=instrument_id,
        defaults={
            "escalated": True,
            "escalated_at": at or timezone.now(),
            "preferred_provider": escalation.preferred,
            "escalation_reason": escalation.reason,
        },
    )


def symbol_escalation_clear(*, instrument_ids: Iterable[int]) -> int:
    """Clear the escalations of these instruments; returns how many were escalated.

    A running worker re-reads the specs (the tier) within its record interval, but its
    validator keeps an escalation it made itself until it restarts (see the report on
    ``Validator.overrides``)."""
    return SymbolValidation.objects.filter(
        instrument_id__in=list(instrument_ids), escalated=True
    ).update(escalated=False, escalated_at=None, preferred_provider="", escalation_reason="")


def symbol_validation_settings_set(
    *, instrument: Instrument, tier_override: int | None, discrepancy_bps: Decimal | None
) -> SymbolValidation:
    """Set a symbol's operator settings, creating its row if needed. Only these two fields
    are written, so counts a worker stored meanwhile are never overwritten with an older
    copy. The workers pick the change up at their next spec reload."""
    with transaction.atomic():
        row, _ = SymbolValidation.objects.select_for_update().get_or_create(instrument=instrument)
        row.tier_override = tier_override
        row.discrepancy_bps = discrepancy_bps
        row.full_clean(validate_unique=False)
        row.save(update_fields=["tier_override", "discrepancy_bps"])
    return row


# --- Accuracy audit -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Cached:
    layer: str
    ltp: int
    scale: int
    age: float | None  # seconds, when read


@dataclass(slots=True)
class _Reads:
    before: dict[str, _Cached]
    rest: dict[str, tuple[str, int, int]]  # key -> (provider, ltp, scale)
    after: dict[str, _Cached]
    providers: list[str]  # the REST sources that answered


def _cached_of(layer: str, record: Mapping[str, Any] | None, now_ns: int) -> _Cached | None:
    if record is None:
        return None
    ltp, scale, recv_ns = record.get("ltp"), record.get("scale"), record.get("recv_ns")
    if not isinstance(ltp, int) or not isinstance(scale, int):
        return None
    age = max(0, now_ns - recv_ns) / 1e9 if isinstance(recv_ns, int) else None
    return _Cached(layer, ltp, scale, age)


async def _cached_read(
    cache: LayeredCache, refs: Mapping[str, InstrumentRef]
) -> dict[str, _Cached]:
    """The primary provider's cached value of each key: this process's L1 tables when any is
    registered, and Redis (L2) for the keys they lack. Never REST: that is what is audited."""
    found: dict[str, _Cached] = {}
    read = l1_reader()
    if read is not None:
        now = time.time_ns()
        for key, ref in refs.items():
            cached = _cached_of("l1", read(key).get(ref.primary), now)
            if cached is not None:
                found[key] = cached
    wanted = [k for k in refs if k not in found]
    if wanted and cache.l2 is not None:
        try:
            tables = await cache.l2.read(wanted)
        except Exception as exc:  # Redis away: those values are unavailable
            logger.warning("accuracy audit: L2 read failed: %s: %s", type(exc).__name__, exc)
            tables = {}
        now = time.time_ns()
        for key in wanted:
            cached = _cached_of("l2", (tables.get(key) or {}).get(refs[key].primary), now)
            if cached is not None:
                found[key] = cached
    return found


async def _rest_read(
    cache: LayeredCache, refs: Mapping[str, InstrumentRef]
) -> tuple[dict[str, tuple[str, int, int]], list[str]]:
    """Fresh REST quotes from each key's primary provider: one multi-symbol call per
    provider through its rate budget (the L3 fetchers), the providers in parallel."""
    by_provider: dict[str, dict[str, str]] = {}  # provider -> its symbol -> key
    for key, ref in refs.items():
        symbol = ref.symbol(ref.primary)
        if symbol and ref.primary in cache.l3:
            by_provider.setdefault(ref.primary, {})[symbol] = key
    providers = list(by_provider)
    answers = await asyncio.gather(
        *(cache.l3[p](list(by_provider[p])) for p in providers), return_exceptions=True
    )
    quotes: dict[str, tuple[str, int, int]] = {}
    answered = []
    for provider, answer in zip(providers, answers, strict=True):
        if isinstance(answer, BaseException):
            if not isinstance(answer, Exception):
                raise answer
            logger.warning("accuracy audit: %s REST quotes failed: %s: %s", provider,
                           type(answer).__name__, answer)  # fmt: skip
            continue
        answered.append(provider)
        for symbol, key in by_provider[provider].items():
            record = answer.get(symbol) or {}
            ltp, scale = record.get("ltp"), record.get("scale")
            if isinstance(ltp, int) and isinstance(scale, int):
                quotes[key] = (provider, ltp, scale)
    return quotes, answered


async def _audit_reads(refs: dict[str, InstrumentRef], accounts: dict[str, str]) -> _Reads:
    try:
        cache = await _layered_cache(accounts)
        before = await _cached_read(cache, refs)
        rest, providers = await _rest_read(cache, refs)
        after = await _cached_read(cache, refs)
    finally:
        await market_data_close()  # the loop is this call's own: close its sessions
    return _Reads(before, rest, after, providers)


async def rest_prices_fetch(*, keys: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Fresh REST last prices (value, scale) of ``keys`` from each one's primary provider,
    through the shared rate budgets: tier 3's re-check of flagged prices in the worker."""
    refs, accounts = await sync_to_async(_market_inputs)(list(keys))
    cache = await _layered_cache(accounts)
    quotes, _ = await _rest_read(cache, refs)
    return {key: (ltp, scale) for key, (_, ltp, scale) in quotes.items()}


def _rupees(value: int, scale: int) -> str:
    return str(Decimal(value).scaleb(-scale))


def _tick_units(target: AuditTarget, price: int, scale: int) -> Decimal:
    """One tick of ``target`` in units of ``scale``: the master's tick, else the band
    table's for the price (indices: 0.01), else one unit."""
    try:
        tick = reference_tick(
            master_tick=target.tick_size,
            instrument_type=target.instrument_type,
            reference_price=abs(Decimal(price).scaleb(-scale)),
            underlying_is_index=target.underlying_is_index,
        )
    except ValueError:
        return Decimal(1)
    return tick.scaleb(scale)


def _judge(
    target: AuditTarget, reads: _Reads, tolerance_ticks: int
) -> tuple[str, dict[str, Any] | None]:
    """The verdict on one sampled instrument: matched, mismatched (with what was seen) or
    unavailable."""
    key = target.key
    quote = reads.rest.get(key)
    before, after = reads.before.get(key), reads.after.get(key)
    if quote is None or (before is None and after is None):
        return "unavailable", None
    provider, rest_ltp, rest_scale = quote
    cached = [c for c in (before, after) if c is not None]
    scale = max(rest_scale, *(c.scale for c in cached))
    rest = rest_ltp * 10 ** (scale - rest_scale)
    tick = _tick_units(target, rest, scale)
    gap = min(abs(c.ltp * 10 ** (scale - c.scale) - rest) for c in cached)
    if gap <= tolerance_ticks * tick:
        return "matched", None
    shown = cached[0]  # the value read before, if there was one
    return "mismatched", {
        "symbol": key,
        "provider": provider,
        "cached_before": _rupees(before.ltp, before.scale) if before else None,
        "cached_after": _rupees(after.ltp, after.scale) if after else None,
        "rest": _rupees(rest_ltp, rest_scale),
        "difference_ticks": float(round(gap / tick, 2)),
        "tick_size": format(tick.scaleb(-scale).normalize(), "f"),
        "cache_age": round(shown.age, 3) if shown.age is not None else None,
        "layer": shown.layer,
    }


def accuracy_audit_run(
    *, sample: int = 50, tolerance_ticks: int = 1, seed: int | None = None
) -> AccuracyAudit:
    """Compare the cached values of up to ``sample`` random enabled instruments with fresh
    REST quotes and store the verdict as an ``AccuracyAudit`` row.

    For each instrument, the value of its primary provider (the one whose connection carries
    it) is read from the caches (L1, this process's tables, when one is registered; Redis
    for what they lack; never REST), then that provider's REST quote is fetched (one
    multi-symbol call per provider, through the same rate budget as every other L3 read;
    FYERS takes 50 symbols a request, so a larger sample costs it more requests, and symbols
    the budget cannot take within its wait are unavailable), then the cache is read again.

    Prices move while the request is in flight, so the REST last price *matches* when it
    is within ``tolerance_ticks`` ticks of the cached value read before OR of the one read
    after it: a tick between the first read and the REST answer, or between the answer and
    the second read, is not a cache error. A symbol with no cached value, or no REST quote
    (unknown, refused by the budget, provider down), is *unavailable*, not a mismatch.

    ``provider`` on the row is the REST source when one provider answered, blank when
    both did (each mismatch names its own). Sync (Celery calls it): the async reads run on
    a loop of their own, whose sessions are closed before it returns."""
    started = timezone.now()
    targets = accuracy_audit_sample_get(sample=sample, seed=seed)
    if targets:
        refs, accounts = _market_inputs([t.key for t in targets])
        # A key the refs lack (deleted since the draw) is simply unavailable.
        reads = async_to_sync(_audit_reads, force_new_loop=True)(refs=refs, accounts=accounts)
    else:
        reads = _Reads({}, {}, {}, [])
    verdicts = Counter[str]()
    mismatches = []
    for target in targets:
        verdict, detail = _judge(target, reads, tolerance_ticks)
        verdicts[verdict] += 1
        if detail is not None:
            mismatches.append(detail)
    if verdicts["unavailable"]:
        logger.info("accuracy audit: %d of %d sampled values unavailable (%d without a "
                    "cached value, %d without a REST quote)", verdicts["unavailable"],
                    len(targets), sum(1 for t in targets if t.key not in reads.before
                                      and t.key not in reads.after),
                    sum(1 for t in targets if t.key not in reads.rest))  # fmt: skip
    return AccuracyAudit.objects.create(
        started_at=started,
        finished_at=timezone.now(),
        provider=reads.providers[0] if len(reads.providers) == 1 else "",
        tolerance_ticks=tolerance_ticks,
        sampled=len(targets),
        matched=verdicts["matched"],
        mismatched=verdicts["mismatched"],
        unavailable=verdicts["unavailable"],
        mismatches=mismatches,
    )
