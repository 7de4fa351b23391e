"""Small admin building blocks shared by the apps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.contrib import admin
from django.http import HttpRequest


class ReadOnlyAdminMixin:
    """For records that the hub writes (assignments, health, outcomes): view, never edit."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class InputFilter(admin.SimpleListFilter):
    """A list filter with a text box, for fields with too many values to list (symbols)."""

    template = "admin/input_filter.html"

    def lookups(self, request: HttpRequest, model_admin: Any) -> tuple[tuple[str, str], ...]:
        # Django shows a filter only when it has lookups; the text box replaces them.
        return (("", ""),)

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:
        all_choice = next(iter(super().choices(changelist)))
        # Hidden inputs keep the other active filters when the box is submitted.
        all_choice["query_parts"] = [
            (name, value)
            for name, values in changelist.get_filters_params().items()
            if name != self.parameter_name
            for value in (values if isinstance(values, list) else [values])
        ]
        yield all_choice
