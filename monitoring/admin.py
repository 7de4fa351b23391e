from django.contrib import admin

from mdproject.admin_tools import ReadOnlyAdminMixin
from monitoring.models import ConnectionHealth


@admin.register(ConnectionHealth)
class ConnectionHealthAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "recorded_at",
        "connection_id",
        "worker_id",
        "state",
        "verdict",
        "symbols",
        "symbol_cap",
        "messages_per_second",
        "errors_total",
        "reconnects",
        "last_message_at",
        "note",
    ]
    list_filter = ["verdict", "state", "account__provider", "account"]
    search_fields = ["connection_id", "worker_id", "last_error", "note"]
    date_hierarchy = "recorded_at"
