from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages

from catalog.admin_search import CreatedWithin, KeyFirstSearchMixin, RelatedAfterThePageMixin
from playground import services
from playground.models import Job, JobAttempt, JobStatus, WorkerHeartbeat


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    """What the workers write: read it, never add one (its "Add" form was a 500)."""

    list_display = ["hostname", "pid", "seen_at", "token"]
    readonly_fields = ["hostname", "pid", "seen_at", "token"]

    def has_add_permission(self, request) -> bool:
        return False


class JobAttemptInline(admin.TabularInline):
    """Each claim of the job: which worker (<host>:<pid>) ran it, when, and how it ended
    (lost: its worker died or timed out, and the job ran again), read-only."""

    model = JobAttempt
    fields = ["number", "worker", "started_at", "finished_at", "outcome"]
    readonly_fields = fields
    ordering = ["number"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class QueueFilter(admin.SimpleListFilter):
    """The queues jobs are sent to: the configured ones and any a queued job names now.
    Django's own filter for a field lists its values with a SELECT DISTINCT over the whole
    table, on every view of the list (560 ms with 1.5 million jobs, session 42)."""

    title = "queue"
    parameter_name = "queue__exact"

    def lookups(self, request, model_admin):
        # order_by(): a job's default order (newest first) would put created_at in the
        # DISTINCT, one row per queued job instead of one per queue (a backlog's worth).
        queued = Job.objects.filter(status=JobStatus.QUEUED).values_list("queue", flat=True)
        queued = queued.order_by()
        names = {"cpu", "gpu", settings.VITRINE_INFERENCE_QUEUE, *queued.distinct()}
        return [(name, name) for name in sorted(names)]

    def queryset(self, request, queryset):
        return queryset.filter(queue=self.value()) if self.value() else queryset


@admin.register(Job)
class JobAdmin(KeyFirstSearchMixin, RelatedAfterThePageMixin, admin.ModelAdmin):
    """Read-only: jobs change through services, never by hand. Search by X-Request-Id to
    go from a client's report (or a log line, or a Sentry event) to its job. No delete: a
    deleted queued job left its charge held for ever (and its client a 404); "Cancel
    selected queued jobs" is the API's DELETE /v1/jobs/<id> (its charge released, its
    webhook told)."""

    list_display = ["id", "card", "status", "owner", "created_at", "attempts", "request_id"]
    # The last 7 days by default (CreatedWithin): a week of jobs sorted, not the year.
    list_filter = [CreatedWithin, "status", QueueFilter, "weights_untrained"]
    search_fields = ["=id", "=request_id", "=image_sha256", "=weights_revision"]
    key_search_fields = ("pk",)  # a job id alone reads the primary key, not every job
    list_prefetch_related = ("card__organisation", "owner")  # read for the page, once sorted
    ordering = ["-created_at"]
    show_full_result_count = False  # the window's jobs are counted, not every job besides
    actions = ["cancel_queued"]
    inlines = [JobAttemptInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_cancel_permission(self, request) -> bool:
        # Without a permission named, Django offers an action to everyone who may see the
        # list: a staff member allowed only to view jobs cancelled customers' queued jobs.
        # Jobs are never changed here otherwise, so "change job" is what cancelling takes.
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.action(
        description="Cancel selected queued jobs (their charges are released)",
        permissions=["cancel"],
    )
    def cancel_queued(self, request, queryset):
        cancelled = sum(services.job_cancel(job=job) for job in queryset)
        left = queryset.count() - cancelled
        self.message_user(request, f"{cancelled} queued job(s) cancelled, charges released.")
        if left:
            self.message_user(
                request,
                f"{left} job(s) were not queued (a worker has them, or they ended) and were "
                f"left as they are: only a job no worker has claimed can be cancelled.",
                messages.WARNING,
            )

    def has_change_permission(self, request, obj=None) -> bool:
        return False
