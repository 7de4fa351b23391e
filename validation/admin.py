"""Admin for validation: outcomes, accuracy audits, and per-symbol accuracy and settings.

Writes go through services.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import F, Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from feeds.models import Instrument
from mdproject.admin_tools import InputFilter, ReadOnlyAdminMixin
from validation import services
from validation.models import (
    TIER_BY_INSTRUMENT_TIER,
    AccuracyAudit,
    SymbolValidation,
    ValidationOutcome,
    ValidationTierChoice,
)
from validation.selectors import accuracy_target, agreement_annotate, agreement_below_target

# An instrument by its canonical key, its name or either provider's own form.
INSTRUMENT_SEARCH = [
    "instrument__key",
    "instrument__name",
    "instrument__fyers_symbol",
    "instrument__upstox_key",
]


class SymbolFilter(InputFilter):
    title = "symbol"
    parameter_name = "symbol"

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = (self.value() or "").strip()
        if not value:
            return queryset
        # A whole canonical key means that instrument alone (NSE:SBI is not NSE:SBIN); any
        # other text matches keys partially, or either provider's exact form.
        if Instrument.objects.filter(key=value).exists():
            return queryset.filter(instrument__key=value)
        return queryset.filter(
            Q(instrument__key__icontains=value)
            | Q(instrument__fyers_symbol__iexact=value)
            | Q(instrument__upstox_key__iexact=value)
        )


@admin.register(ValidationOutcome)
class ValidationOutcomeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "first_seen",
        "instrument",
        "check_name",
        "tier",
        "severity",
        "provider",
        "decision",
        "occurrences",
        "observed_value",
        "reference_value",
        "gap_bps",
    ]
    list_filter = [SymbolFilter, "check_name", "severity", "tier", "provider", "decision"]
    search_fields = INSTRUMENT_SEARCH
    list_select_related = ["instrument"]
    date_hierarchy = "first_seen"
    # Outcomes pile up: no unfiltered COUNT(*) over the whole table on every page.
    show_full_result_count = False


@admin.register(AccuracyAudit)
class AccuracyAuditAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "started_at",
        "provider",
        "sampled",
        "matched",
        "mismatched",
        "unavailable",
        "accuracy_percent",
    ]
    list_filter = ["provider"]
    date_hierarchy = "started_at"

    @admin.display(description="accuracy %")
    def accuracy_percent(self, obj: AccuracyAudit) -> Any:
        return obj.accuracy if obj.accuracy is not None else "—"


# --- Per-symbol accuracy --------------------------------------------------------------------


class AgreementFilter(admin.SimpleListFilter):
    title = "agreement"
    parameter_name = "agreement"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        target = f"{accuracy_target():.1%}"
        return [
            ("below", f"Below target ({target})"),
            ("met", f"At or above target ({target})"),
            ("none", "No comparisons yet"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        match self.value():
            case "below":
                return agreement_below_target(queryset)
            case "met":
                return queryset.filter(agreement_share__gte=accuracy_target())
            case "none":
                return queryset.filter(comparisons=0)
        return queryset


class EffectiveTierFilter(admin.SimpleListFilter):
    title = "validation tier (effective)"
    parameter_name = "effective_tier"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[int, str]]:
        return list(ValidationTierChoice.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() not in {str(v) for v in ValidationTierChoice.values}:
            return queryset
        tier = int(self.value() or 0)
        # The same rule as validation_tier_of, in SQL: override, else escalated, else the
        # instrument's tier.
        automatic = [t for t, v in TIER_BY_INSTRUMENT_TIER.items() if v == tier]
        matches = Q(tier_override=tier) | Q(
            tier_override__isnull=True, escalated=False, instrument__tier__in=automatic
        )
        if tier == ValidationTierChoice.DEEP:
            matches |= Q(tier_override__isnull=True, escalated=True)
        return queryset.filter(matches)


def _percent(share: float | None, digits: int = 2) -> str:
    return "—" if share is None else f"{share * 100:.{digits}f}"


TRACKED_FIELDS = [
    "ticks",
    "flagged",
    "by_check",
    "comparisons",
    "agreements",
    "counting_since",
    "updated_at",
    "escalated",
    "escalated_at",
    "preferred_provider",
    "escalation_reason",
]


@admin.register(SymbolValidation)
class SymbolValidationAdmin(admin.ModelAdmin):
    """The per-symbol accuracy view: running counts and escalations written by the feed
    workers (read-only here), and the two operator settings."""

    list_display = [
        "instrument",
        "instrument_tier",
        "effective_tier",
        "ticks",
        "flagged_percent",
        "agreement_percent",
        "comparisons",
        "escalated",
        "preferred_provider",
        "updated_at",
        "outcomes",
    ]
    list_filter = ["escalated", "instrument__tier", AgreementFilter, EffectiveTierFilter]
    search_fields = INSTRUMENT_SEARCH
    list_select_related = ["instrument"]
    autocomplete_fields = ["instrument"]
    list_per_page = 100
    actions = ["clear_escalation", "reset_counts"]
    readonly_fields = [
        *TRACKED_FIELDS,
        "effective_tier",
        "flagged_percent",
        "agreement_percent",
        "outcomes",
    ]
    fieldsets = [
        (None, {"fields": ["instrument", "effective_tier", "outcomes"]}),
        ("Operator settings", {"fields": ["tier_override", "discrepancy_bps"]}),
        (
            "Accuracy (written by the feed workers)",
            {
                "fields": [
                    ("ticks", "flagged", "flagged_percent"),
                    ("comparisons", "agreements", "agreement_percent"),
                    "by_check",
                    ("counting_since", "updated_at"),
                ]
            },
        ),
        (
            "Escalation",
            {
                "fields": [
                    ("escalated", "escalated_at", "preferred_provider"),
                    "escalation_reason",
                ]
            },
        ),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return agreement_annotate(super().get_queryset(request))

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        # Worst agreement first; symbols without comparisons after them.
        return [F("agreement_share").asc(nulls_last=True), "instrument__key"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        # The row belongs to its instrument: chosen when adding, fixed after.
        return [*fields, "instrument"] if obj is not None else fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # counts and escalations are history; "reset counts" starts afresh

    @admin.display(description="instrument tier", ordering="instrument__tier")
    def instrument_tier(self, obj: SymbolValidation) -> str:
        return obj.instrument.get_tier_display().split(" (")[0]

    @admin.display(description="validation tier")
    def effective_tier(self, obj: SymbolValidation) -> str:
        label = ValidationTierChoice(obj.effective_tier).label
        return label if obj.tier_override is None else f"{label}, set by an operator"

    @admin.display(description="flagged %", ordering="flagged")
    def flagged_percent(self, obj: SymbolValidation) -> str:
        return _percent(obj.flagged_share, 3)

    @admin.display(description="agreement %", ordering="agreement_share")
    def agreement_percent(self, obj: SymbolValidation) -> str:
        agreement = obj.agreement
        if agreement is not None and agreement < accuracy_target():
            return format_html(
                '<strong style="color: #ba2121" title="below the {} target">▼ {}</strong>',
                f"{accuracy_target():.1%}",
                _percent(agreement),
            )
        return _percent(agreement)

    @admin.display(description="outcomes")
    def outcomes(self, obj: SymbolValidation) -> str:
        if obj.pk is None:
            return "—"
        url = reverse("admin:validation_validationoutcome_changelist")
        return format_html(
            '<a href="{}?{}">outcomes</a>', url, urlencode({"symbol": obj.instrument.key})
        )

    @admin.action(description="Clear escalation")
    def clear_escalation(self, request: HttpRequest, queryset: QuerySet) -> None:
        cleared = services.symbol_escalation_clear(
            instrument_ids=queryset.values_list("instrument_id", flat=True)
        )
        self.message_user(request, f"{cleared} escalation(s) cleared.")

    @admin.action(description="Reset counts")
    def reset_counts(self, request: HttpRequest, queryset: QuerySet) -> None:
        reset = services.symbol_accuracy_reset(
            instrument_ids=queryset.values_list("instrument_id", flat=True)
        )
        self.message_user(request, f"Counts of {reset} symbol(s) reset.")

    def save_model(
        self, request: HttpRequest, obj: SymbolValidation, form: ModelForm, change: bool
    ) -> None:
        # Only the operator fields: a plain save would write back counts read with the form.
        saved = services.symbol_validation_settings_set(
            instrument=obj.instrument,
            tier_override=form.cleaned_data.get("tier_override"),
            discrepancy_bps=form.cleaned_data.get("discrepancy_bps"),
        )
        obj.pk = saved.pk
