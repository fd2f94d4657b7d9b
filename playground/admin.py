from __future__ import annotations

from django.contrib import admin

from playground.models import Job, WorkerHeartbeat


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ["hostname", "pid", "seen_at", "token"]
    readonly_fields = ["hostname", "pid", "seen_at", "token"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    """Read-only: jobs change through services, never by hand. Search by X-Request-Id to
    go from a client's report (or a log line, or a Sentry event) to its job."""

    list_display = ["id", "card", "status", "owner", "created_at", "attempts", "request_id"]
    list_filter = ["status", "queue", "weights_untrained"]
    search_fields = ["=id", "=request_id", "=image_sha256", "=weights_revision"]
    list_select_related = ["card__organisation", "owner"]
    ordering = ["-created_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
