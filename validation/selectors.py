"""Read paths for validation: the specs the validator runs on, escalations to restore, the
per-symbol accuracy pages and the accuracy audit's sample."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Case, F, FloatField, QuerySet, Value, When
from django.db.models.functions import Cast

from feeds.models import Instrument
from feeds.providers.simulation.universe import INDEX_UNDERLYINGS
from validation.accuracy import Escalation
from validation.checks import ValidationTier
from validation.models import SymbolValidation, validation_tier_of
from validation.tier1 import InstrumentSpec

_DERIVATIVES = ("FUT", "OPT")


def _index_underlyings() -> set[tuple[str, str]]:
    """(exchange, underlying name) pairs that name an index: the known derivative names, and
    every index instrument's own symbol (``NSE:NIFTYIT`` -> ("NSE", "NIFTYIT")). One query."""
    names = {(key.split(":", 1)[0], name) for name, key in INDEX_UNDERLYINGS.items()}
    for key in Instrument.objects.filter(instrument_type="INDEX").values_list("key", flat=True):
        exchange, _, symbol = key.partition(":")
        names.add((exchange, symbol))
    return names


def _underlying_is_index(
    *, instrument_type: str, exchange: str, underlying: str, indices: set[tuple[str, str]]
) -> bool:
    if instrument_type not in _DERIVATIVES or not underlying:
        return False
    # Derivative rows name the underlying without its exchange; a BSE option on SENSEX is
    # listed under BSE, an NSE one on NIFTY under NSE.
    return (exchange, underlying) in indices or underlying in INDEX_UNDERLYINGS


def validation_specs_get() -> dict[str, InstrumentSpec]:
    """Every enabled instrument's spec, by canonical key. Two queries: the instruments with
    their validation row (a left join), and the index names for ``underlying_is_index``."""
    rows = Instrument.objects.filter(enabled=True).values_list(
        "key",
        "instrument_type",
        "exchange",
        "segment",
        "tick_size",
        "tier",
        "underlying",
        "validation__tier_override",
        "validation__escalated",
        "validation__discrepancy_bps",
    )
    indices = _index_underlyings()
    specs: dict[str, InstrumentSpec] = {}
    for (key, instrument_type, exchange, segment, tick_size, tier, underlying, override,
         escalated, discrepancy_bps) in rows:  # fmt: skip
        specs[key] = InstrumentSpec(
            key=key,
            instrument_type=instrument_type,
            exchange=exchange,
            segment=segment,
            # A zero tick in a master row means "not given" (index rows carry none).
            tick_size=tick_size if tick_size else None,
            tier=validation_tier_of(
                instrument_tier=tier, override=override, escalated=bool(escalated)
            ),
            discrepancy_bps=float(discrepancy_bps) if discrepancy_bps is not None else None,
            underlying_is_index=_underlying_is_index(
                instrument_type=instrument_type,
                exchange=exchange,
                underlying=underlying,
                indices=indices,
            ),
        )
    return specs


def validation_escalations_get() -> list[Escalation]:
    """The escalations recorded for enabled instruments, so that a restarted worker keeps
    checking them deep with their preferred provider (a disabled one is not carried)."""
    rows = SymbolValidation.objects.filter(escalated=True, instrument__enabled=True).values_list(
        "instrument__key", "preferred_provider", "escalation_reason"
    )
    return [
        Escalation(key=key, tier=ValidationTier.DEEP, preferred=preferred, reason=reason)
        for key, preferred, reason in rows.order_by("instrument__key")
    ]


def accuracy_target() -> float:
    """The agreement a symbol should reach (a share, 0.995 by default)."""
    return float(settings.VALIDATION["ACCURACY_TARGET"])


def agreement_annotate(queryset: QuerySet[SymbolValidation]) -> QuerySet[SymbolValidation]:
    """``queryset`` annotated with ``agreement_share`` (None without comparisons), so that
    pages can sort and filter on it in the database."""
    return queryset.annotate(
        agreement_share=Case(
            When(
                comparisons__gt=0,
                then=Cast("agreements", FloatField()) / Cast("comparisons", FloatField()),
            ),
            default=Value(None),
            output_field=FloatField(),
        )
    )


def agreement_below_target(queryset: QuerySet[SymbolValidation]) -> QuerySet[SymbolValidation]:
    """Rows of an annotated ``queryset`` whose agreement is measured and below the target."""
    return queryset.filter(agreement_share__lt=accuracy_target())


def symbol_accuracy_list(*, below_target: bool = False, limit: int = 100) -> list[SymbolValidation]:
    """Symbols' accuracy rows with their instrument, worst agreement first (rows without
    comparisons last, then by key)."""
    queryset = agreement_annotate(SymbolValidation.objects.select_related("instrument"))
    if below_target:
        queryset = agreement_below_target(queryset)
    ordered = queryset.order_by(F("agreement_share").asc(nulls_last=True), "instrument__key")
    return list(ordered[: max(0, limit)])


# --- The accuracy audit ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditTarget:
    """What the audit needs of a sampled instrument to judge one tick of difference."""

    key: str
    instrument_type: str
    tick_size: Decimal | None
    underlying_is_index: bool


def accuracy_audit_sample_get(*, sample: int, seed: int | None = None) -> list[AuditTarget]:
    """Up to ``sample`` enabled instruments that a provider carries (one identity at least),
    drawn at random (``seed`` makes the draw repeatable), in key order."""
    rows = list(
        Instrument.objects.filter(enabled=True)
        .exclude(fyers_token="", upstox_key="")
        .order_by("key")
        .values_list("key", "instrument_type", "exchange", "tick_size", "underlying")
    )
    chosen = random.Random(seed).sample(rows, min(max(0, sample), len(rows)))
    indices = _index_underlyings() if any(r[1] in _DERIVATIVES for r in chosen) else set()
    return [
        AuditTarget(
            key=key,
            instrument_type=instrument_type,
            tick_size=tick_size if tick_size else None,
            underlying_is_index=_underlying_is_index(
                instrument_type=instrument_type,
                exchange=exchange,
                underlying=underlying,
                indices=indices,
            ),
        )
        for key, instrument_type, exchange, tick_size, underlying in sorted(chosen)
    ]
