"""Validation incidents, per-symbol accuracy and accuracy audits.

The accuracy tracker keeps running counts in memory and writes a ``ValidationOutcome`` per
incident (a run of flagged ticks for one instrument and check), never a row per tick; its
counts are added to the symbol's ``SymbolValidation`` row in batches.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from feeds.models import Instrument, Provider, Tier
from validation.checks import ValidationTier


class CheckName(models.TextChoices):
    # Tier 1: inline on every tick.
    NOT_POSITIVE = "not_positive", "Price not finite or not positive"
    OFF_TICK_GRID = "off_tick_grid", "Price off the tick grid"
    OUTSIDE_CIRCUIT = "outside_circuit", "Outside circuit limits"
    OUTSIDE_DAY_RANGE = "outside_day_range", "Outside the day's low/high"
    CROSSED_BOOK = "crossed_book", "Bid above ask"
    TIME_BACKWARDS = "time_backwards", "Exchange time went backwards"
    VOLUME_BACKWARDS = "volume_backwards", "Cumulative volume fell"
    DUPLICATE = "duplicate", "Duplicate tick"
    JUMP = "jump", "Jump against the last good price"
    STALE = "stale", "No update while the market is open"
    # Tier 2: cross-source.
    DISCREPANCY = "discrepancy", "Providers disagree"
    PROVIDER_LAG = "provider_lag", "Provider lags persistently"
    # Tier 3: deep, off the hot path.
    OUTLIER_TRIMMED = "outlier_trimmed", "Outlier (trimmed mean, Brownlees-Gallo)"
    OUTLIER_MAD = "outlier_mad", "Outlier (rolling median/MAD)"
    REST_RECHECK = "rest_recheck", "REST re-check disagrees"
    # Escalation of a symbol whose measured agreement fell below target.
    ESCALATION = "escalation", "Symbol escalated"


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"
    CRITICAL = "critical", "Critical"


class Decision(models.TextChoices):
    FLAGGED = "flagged", "Flagged suspect, delivered with the flag"
    CONSENSUS_FYERS = "consensus_fyers", "Consensus: FYERS value"
    CONSENSUS_UPSTOX = "consensus_upstox", "Consensus: Upstox value"
    CONFIRMED = "confirmed", "Re-check confirmed the value"
    ESCALATED = "escalated", "Escalated to a deeper tier / better provider"


class ValidationOutcome(models.Model):
    instrument = models.ForeignKey(
        Instrument, on_delete=models.CASCADE, related_name="validation_outcomes"
    )
    check_name = models.CharField("check", max_length=24, choices=CheckName.choices)
    tier = models.PositiveSmallIntegerField(choices=[(1, "Tier 1"), (2, "Tier 2"), (3, "Tier 3")])
    severity = models.CharField(max_length=8, choices=Severity.choices, db_index=True)
    provider = models.CharField(
        max_length=16, choices=Provider.choices, blank=True, help_text="Blank: cross-source."
    )
    decision = models.CharField(max_length=24, choices=Decision.choices)

    first_seen = models.DateTimeField(db_index=True)
    last_seen = models.DateTimeField()
    occurrences = models.PositiveIntegerField(default=1, help_text="Ticks in this incident.")
    exchange_time = models.DateTimeField(null=True, blank=True)

    observed_value = models.DecimalField(max_digits=18, decimal_places=6, null=True, blank=True)
    reference_value = models.DecimalField(
        max_digits=18,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="What the check compared against (last good price, median, REST quote…).",
    )
    fyers_value = models.DecimalField(max_digits=18, decimal_places=6, null=True, blank=True)
    upstox_value = models.DecimalField(max_digits=18, decimal_places=6, null=True, blank=True)
    consensus_value = models.DecimalField(max_digits=18, decimal_places=6, null=True, blank=True)
    gap_bps = models.DecimalField(
        "gap (bps)", max_digits=12, decimal_places=2, null=True, blank=True
    )
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-first_seen"]
        indexes = [
            models.Index(fields=["instrument", "-first_seen"]),
            models.Index(fields=["check_name", "-first_seen"]),
        ]

    def __str__(self) -> str:
        return f"{self.instrument} {self.check_name} ({self.severity})"


class AccuracyAudit(models.Model):
    """One sampling of cached values against fresh REST quotes (the L3 layer)."""

    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    provider = models.CharField(
        max_length=16, choices=Provider.choices, blank=True, help_text="REST source used."
    )
    tolerance_ticks = models.PositiveSmallIntegerField(default=1)
    sampled = models.PositiveIntegerField(default=0)
    matched = models.PositiveIntegerField(default=0, help_text="Within the tolerance.")
    mismatched = models.PositiveIntegerField(default=0)
    unavailable = models.PositiveIntegerField(
        default=0, help_text="No cached value or no REST quote to compare."
    )
    mismatches = models.JSONField(
        default=list, blank=True, help_text="One entry per mismatch: symbol, cached, REST, age."
    )

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"Audit {self.started_at:%Y-%m-%d %H:%M:%S} ({self.matched}/{self.compared})"

    @property
    def compared(self) -> int:
        return self.matched + self.mismatched

    @property
    def accuracy(self) -> Decimal | None:
        """Matched share of the values that could be compared, in percent."""
        if not self.compared:
            return None
        return (Decimal(self.matched) * 100 / Decimal(self.compared)).quantize(Decimal("0.01"))


class ValidationTierChoice(models.IntegerChoices):
    """``validation.checks.ValidationTier`` for forms and the database (same values)."""

    FAST = ValidationTier.FAST, "Fast (tier 1)"
    CROSS = ValidationTier.CROSS, "Cross-source (tiers 1-2)"
    DEEP = ValidationTier.DEEP, "Deep (tiers 1-3)"


# The validation tier an instrument's (pool) tier implies when no override is set. Critical
# symbols are carried by both providers and checked deepest; high-frequency ones only get
# the constant-time checks, so that their volume never queues behind tiers 2-3.
TIER_BY_INSTRUMENT_TIER: dict[str, ValidationTier] = {
    Tier.CRITICAL: ValidationTier.DEEP,
    Tier.HIGH_FREQUENCY: ValidationTier.FAST,
    Tier.STANDARD: ValidationTier.CROSS,
    Tier.LOW_FREQUENCY: ValidationTier.CROSS,
}


def validation_tier_of(
    *, instrument_tier: str, override: int | None = None, escalated: bool = False
) -> ValidationTier:
    """The tier a symbol is validated at: the operator's override, else the deep tier when
    escalated, else what the instrument's tier implies."""
    if override is not None:
        return ValidationTier(override)
    if escalated:
        return ValidationTier.DEEP
    return TIER_BY_INSTRUMENT_TIER.get(instrument_tier, ValidationTier.CROSS)


class SymbolValidation(models.Model):
    """One instrument's validation settings (set by operators) and running accuracy (added
    to by the feed workers; never edited by hand)."""

    instrument = models.OneToOneField(
        Instrument, on_delete=models.CASCADE, related_name="validation"
    )

    # Operator settings.
    tier_override = models.PositiveSmallIntegerField(
        "validation tier",
        choices=ValidationTierChoice.choices,
        null=True,
        blank=True,
        help_text="Blank: automatic (critical: deep, high frequency: fast, others: "
        "cross-source; deep while escalated).",
    )
    discrepancy_bps = models.DecimalField(
        "discrepancy threshold (bps)",
        max_digits=8,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.01")), MaxValueValidator(Decimal("10000"))],
        help_text="Cross-source gap flagged as a discrepancy, in basis points (100 = 1 %). "
        "Blank: the default.",
    )

    # Running counts, written by the feed workers.
    ticks = models.PositiveBigIntegerField(default=0)
    flagged = models.PositiveBigIntegerField(default=0)
    by_check = models.JSONField(default=dict, blank=True, help_text="Flags per check.")
    comparisons = models.PositiveBigIntegerField(default=0, help_text="Cross-source comparisons.")
    agreements = models.PositiveBigIntegerField(
        default=0, help_text="Comparisons within the threshold."
    )
    counting_since = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True, help_text="Last counts stored.")

    # Escalation: agreement fell below the target; deep checks, the better provider preferred.
    escalated = models.BooleanField(default=False, db_index=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    preferred_provider = models.CharField(max_length=16, choices=Provider.choices, blank=True)
    escalation_reason = models.TextField(blank=True)

    class Meta:
        verbose_name = "symbol accuracy"
        verbose_name_plural = "symbol accuracy"

    def __str__(self) -> str:
        return str(self.instrument)

    @property
    def flagged_share(self) -> float | None:
        """Flagged ticks over ticks seen; None before any tick."""
        return self.flagged / self.ticks if self.ticks else None

    @property
    def agreement(self) -> float | None:
        """Cross-source comparisons that agreed, over all; None before any comparison."""
        return self.agreements / self.comparisons if self.comparisons else None

    @property
    def effective_tier(self) -> ValidationTier:
        return validation_tier_of(
            instrument_tier=self.instrument.tier,
            override=self.tier_override,
            escalated=self.escalated,
        )
