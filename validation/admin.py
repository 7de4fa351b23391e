from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from mdproject.admin_tools import InputFilter, ReadOnlyAdminMixin
from validation.models import AccuracyAudit, ValidationOutcome


class SymbolFilter(InputFilter):
    title = "symbol"
    parameter_name = "symbol"

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = (self.value() or "").strip()
        if not value:
            return queryset
        # Canonical key (exact or partial) or either provider's exact form.
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
    search_fields = ["instrument__key", "instrument__name"]
    list_select_related = ["instrument"]
    date_hierarchy = "first_seen"


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
