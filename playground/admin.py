from __future__ import annotations

from django.contrib import admin

from playground.models import WorkerHeartbeat


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ["hostname", "pid", "seen_at", "token"]
    readonly_fields = ["hostname", "pid", "seen_at", "token"]
