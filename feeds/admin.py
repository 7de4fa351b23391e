"""Admin for instruments, provider accounts, pool assignments and placement issues.

Writes go through services.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from feeds import services
from feeds.models import (
    UPSTOX_DEFAULT_MODE_LIMITS,
    ApiToken,
    ClientLimits,
    Instrument,
    LastTick,
    PlacementIssue,
    PoolAssignment,
    Provider,
    ProviderAccount,
    Tier,
)
from feeds.services import MASTER_FIELDS
from mdproject.admin_tools import ReadOnlyAdminMixin


class ProviderCoverageFilter(admin.SimpleListFilter):
    title = "listed by"
    parameter_name = "coverage"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("both", "Both providers"), ("fyers", "FYERS only"), ("upstox", "Upstox only")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        has_fyers, has_upstox = ~Q(fyers_token=""), ~Q(upstox_key="")
        match self.value():
            case "both":
                return queryset.filter(has_fyers & has_upstox)
            case "fyers":
                return queryset.filter(has_fyers & Q(upstox_key=""))
            case "upstox":
                return queryset.filter(has_upstox & Q(fyers_token=""))
        return queryset


def _set_tier_action(tier: Tier) -> Callable[..., None]:
    def action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
        changed = services.instruments_set_tier(
            instrument_ids=queryset.values_list("pk", flat=True), tier=tier.value
        )
        modeladmin.message_user(request, f"{changed} instrument(s) moved to {tier.label}.")

    action.__name__ = f"set_tier_{tier.value}"
    return admin.action(description=f"Set tier to {tier.label.split(' (')[0]}")(action)


class PoolAssignmentInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = PoolAssignment
    fields = ["account", "connection_slot", "data_mode", "reason", "since", "worker_id"]
    readonly_fields = fields
    extra = 0


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = [
        "key",
        "name",
        "exchange",
        "segment",
        "instrument_type",
        "expiry",
        "tier",
        "priority",
        "enabled",
        "data_mode",
        "on_fyers",
        "on_upstox",
        "placement",
    ]
    list_display_links = ["key"]
    list_select_related = ["placement_issue"]  # the placement column, without a query per row
    list_editable = ["tier", "priority", "enabled"]
    list_filter = [
        "exchange",
        "segment",
        "instrument_type",
        "tier",
        "enabled",
        "data_mode",
        ProviderCoverageFilter,
    ]
    search_fields = [
        "key",
        "name",
        "isin",
        "fyers_symbol",
        "fyers_token",
        "upstox_key",
        "upstox_trading_symbol",
        "exchange_token",
        "underlying",
    ]
    list_per_page = 100
    actions = [
        *(_set_tier_action(tier) for tier in Tier),
        "enable_instruments",
        "disable_instruments",
    ]
    fieldsets = [
        (
            "Instrument",
            {
                "fields": [
                    "key",
                    ("exchange", "segment", "instrument_type"),
                    "name",
                    ("isin", "exchange_token"),
                    ("tick_size", "lot_size"),
                    ("underlying", "expiry", "strike", "option_type"),
                ]
            },
        ),
        (
            "Provider identities",
            {"fields": [("fyers_symbol", "fyers_token"), ("upstox_key", "upstox_trading_symbol")]},
        ),
        ("Operator settings", {"fields": [("tier", "priority"), ("enabled", "data_mode")]}),
        ("History", {"fields": [("created_at", "updated_at")]}),
    ]
    inlines = [PoolAssignmentInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Instrument | None = None) -> list:
        # Master data is owned by import_instruments; editing it here would be undone.
        if obj is None:
            return ["created_at", "updated_at"]
        return ["key", *MASTER_FIELDS, "created_at", "updated_at", "placement_detail"]

    def get_fieldsets(self, request: HttpRequest, obj: Instrument | None = None) -> list:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None:
            fieldsets.insert(-1, ("Placement", {"fields": ["placement_detail"]}))
        return fieldsets

    @admin.display(description="placement", ordering="placement_issue__kind")
    def placement(self, obj: Instrument) -> str:
        issue = _placement_issue(obj)
        return issue.get_kind_display() if issue else "—"

    @admin.display(description="placement issue")
    def placement_detail(self, obj: Instrument) -> str:
        issue = _placement_issue(obj)
        if issue is None:
            return "—"
        return f"{issue.get_kind_display()}: {issue.reason}"

    @admin.display(boolean=True, description="FYERS")
    def on_fyers(self, obj: Instrument) -> bool:
        return bool(obj.fyers_token)

    @admin.display(boolean=True, description="Upstox")
    def on_upstox(self, obj: Instrument) -> bool:
        return bool(obj.upstox_key)

    @admin.action(description="Enable selected instruments")
    def enable_instruments(self, request: HttpRequest, queryset: QuerySet) -> None:
        changed = services.instruments_set_enabled(
            instrument_ids=queryset.values_list("pk", flat=True), enabled=True
        )
        self.message_user(request, f"{changed} instrument(s) enabled.")

    @admin.action(description="Disable selected instruments")
    def disable_instruments(self, request: HttpRequest, queryset: QuerySet) -> None:
        changed = services.instruments_set_enabled(
            instrument_ids=queryset.values_list("pk", flat=True), enabled=False
        )
        self.message_user(request, f"{changed} instrument(s) disabled.", messages.SUCCESS)

    def save_model(
        self, request: HttpRequest, obj: Instrument, form: ModelForm, change: bool
    ) -> None:
        if change:
            changes = {name: form.cleaned_data[name] for name in form.changed_data}
            services.instrument_update(instrument=obj, changes=changes)
        else:
            super().save_model(request, obj, form, change)


@admin.register(ProviderAccount)
class ProviderAccountAdmin(admin.ModelAdmin):
    list_display = [
        "label",
        "provider",
        "enabled",
        "max_connections",
        "max_symbols_per_connection",
        "token_env",
        "token_present",
    ]
    list_filter = ["provider", "enabled"]
    search_fields = ["label", "token_env"]

    @admin.display(boolean=True, description="token set")
    def token_present(self, obj: ProviderAccount) -> bool:
        # Whether the named variable is set in this (web) process; its value is never shown.
        return bool(os.environ.get(obj.token_env))

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        if initial.get("provider") == Provider.UPSTOX:
            initial.setdefault("mode_limits", UPSTOX_DEFAULT_MODE_LIMITS)
        return initial


@admin.register(PoolAssignment)
class PoolAssignmentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "instrument",
        "provider",
        "account",
        "connection_slot",
        "data_mode",
        "reason",
        "since",
        "worker_id",
    ]
    list_filter = ["account__provider", "account", "reason", "data_mode"]
    search_fields = ["instrument__key", "instrument__fyers_symbol", "instrument__upstox_key"]
    list_select_related = ["instrument", "account"]
    date_hierarchy = "since"

    @admin.display(ordering="account__provider")
    def provider(self, obj: PoolAssignment) -> str:
        return obj.account.get_provider_display()


def _placement_issue(instrument: Instrument) -> PlacementIssue | None:
    try:
        return instrument.placement_issue
    except ObjectDoesNotExist:
        return None


@admin.register(PlacementIssue)
class PlacementIssueAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["instrument_key", "tier", "priority", "kind", "reason", "since"]
    list_filter = ["kind", "instrument__tier"]
    search_fields = ["instrument__key"]
    list_select_related = ["instrument"]
    fields = ["instrument", "kind", "reason", "since", "worker_id"]

    @admin.display(description="instrument", ordering="instrument__key")
    def instrument_key(self, obj: PlacementIssue) -> str:
        return obj.instrument.key

    @admin.display(ordering="instrument__tier")
    def tier(self, obj: PlacementIssue) -> str:
        return obj.instrument.get_tier_display()

    @admin.display(ordering="instrument__priority")
    def priority(self, obj: PlacementIssue) -> int:
        return obj.instrument.priority


# --- WebSocket API access -----------------------------------------------------------------


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "user", "created_at", "last_used_at", "expires_at",
                    "revoked"]  # fmt: skip
    list_filter = ["revoked"]
    search_fields = ["prefix", "name", "user__username"]
    autocomplete_fields = ["user"]
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        if obj is None:
            return ["user", "name", "expires_at"]
        return ["user", "name", "prefix", "created_at", "last_used_at", "expires_at", "revoked"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        return [] if obj is None else ["user", "prefix", "created_at", "last_used_at"]

    def save_model(
        self, request: HttpRequest, obj: ApiToken, form: ModelForm, change: bool
    ) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        row, token = services.api_token_create(user=obj.user, name=obj.name,
                                               expires_at=obj.expires_at)  # fmt: skip
        obj.pk, obj.prefix, obj.digest, obj.created_at = (
            row.pk,
            row.prefix,
            row.digest,
            row.created_at,
        )
        # Only a digest is stored: this is the one time anybody sees the token.
        messages.warning(request, f"Copy this token now; it is not shown again: {token}")

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = queryset.update(revoked=True)
        self.message_user(request, f"{count} token(s) revoked; connections using them "
                          "are refused from their next connect.")  # fmt: skip


@admin.register(ClientLimits)
class ClientLimitsAdmin(admin.ModelAdmin):
    list_display = ["user", "max_subscriptions", "max_requests_per_second",
                    "max_updates_per_second", "max_connections"]  # fmt: skip
    search_fields = ["user__username"]
    autocomplete_fields = ["user"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        delivery = settings.DELIVERY  # start from the defaults everybody else has
        return {
            "max_subscriptions": delivery["MAX_SUBSCRIPTIONS"],
            "max_requests_per_second": delivery["MAX_REQUESTS_PER_SECOND"],
            "max_updates_per_second": delivery["MAX_UPDATES_PER_SECOND"],
            "max_connections": delivery["MAX_CONNECTIONS"],
            **super().get_changeform_initial_data(request),
        }


@admin.register(LastTick)
class LastTickAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["instrument", "provider", "received_at"]
    list_filter = ["provider"]
    search_fields = ["instrument__key"]
    list_select_related = ["instrument"]
