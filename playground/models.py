from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class WorkerHeartbeat(models.Model):
    """Written by the ``health_ping`` task: proof that a worker took a message and ran it."""

    token = models.CharField(max_length=64, unique=True)
    hostname = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-seen_at"]

    def __str__(self) -> str:
        return f"{self.hostname} at {self.seen_at:%Y-%m-%d %H:%M:%S}"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Job(models.Model):
    """One detection request. The row, not Celery's result backend, is what clients poll."""

    Status = JobStatus
    FINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed with its jobs' order (Meta: job_owner_created), not on its own: every read
    # of an owner's jobs lists them newest first, a page at a time.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        db_index=False,
    )  # fmt: skip
    session_key = models.CharField(max_length=64, blank=True, help_text="Anonymous visitor.")
    card = models.ForeignKey("catalog.ModelCard", on_delete=models.PROTECT, related_name="jobs")
    # No index of its own: nothing looks jobs up by route alone (a batch's pick filters
    # queued jobs, Meta), and PROTECT only matters when staff delete a route (rare), which
    # may then scan the table. Every index here is written by each of a job's three writes.
    route = models.ForeignKey(
        "catalog.PriceRoute", on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        db_index=False,
    )  # fmt: skip
    parameters = models.JSONField(default=dict, blank=True)
    # Its permalink is private to its owner unless they make it public (playground/runs.py).
    is_public = models.BooleanField(default=False)
    # Provenance: the pinned checkpoint revision (or the provider's model id) it ran with.
    model_revision = models.CharField(max_length=200, blank=True)

    # The upload's name in the shared "jobs" storage (playground/storage.py), generated;
    # emptied when retention deletes the image (image_deleted_at says when).
    image_name = models.CharField(max_length=100, blank=True)
    image_deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="When retention deleted the upload."
    )
    image_sha256 = models.CharField(max_length=64)
    image_bytes = models.PositiveIntegerField()
    original_width = models.PositiveIntegerField()
    original_height = models.PositiveIntegerField()
    width = models.PositiveIntegerField(help_text="After EXIF orientation.")
    height = models.PositiveIntegerField(help_text="After EXIF orientation.")

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    queue = models.CharField(max_length=32)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(
        default=timezone.now, help_text="When it last entered the queue (created or re-queued)."
    )
    enqueued_at = models.DateTimeField(
        null=True, blank=True, help_text="When its message was last sent; empty if that failed."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="A running job past this is presumed lost."
    )
    worker = models.CharField(max_length=200, blank=True)
    # What a running job waits on, for the live state the demo shows: "loading_model" while
    # its worker loads the checkpoint into this process (the first job of a model there).
    phase = models.CharField(max_length=16, blank=True, help_text="loading_model, or empty.")

    timings = models.JSONField(default=dict, blank=True, help_text="Seconds per stage.")
    result = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    cost_ref = models.CharField(max_length=64, blank=True, help_text="The charge, if any.")
    # Not indexed: it is found in the logs, and the admin's search (an exact match, any
    # case, ORed with the other search fields) reads the table whatever its indexes.
    request_id = models.CharField(
        max_length=128, blank=True, help_text="X-Request-Id of the request."
    )
    # Provenance, written by the worker that ran it (playground/provenance.py).
    weights_revision = models.CharField(
        max_length=80, blank=True, help_text="Hub commit, or sha256: of the loaded folder."
    )
    weights_untrained = models.BooleanField(
        default=False, help_text="The checkpoint is marked untrained (random weights)."
    )
    runtime_backend = models.CharField(max_length=200, blank=True)
    runtime_precision = models.CharField(
        max_length=16, blank=True, help_text="fp32, fp16, bf16, int8"
    )

    class Meta:
        ordering = ["-created_at"]
        # Each partial: a job is written three times (created, claimed, finished), each a
        # new row version in every index whose condition it meets, so an index over every
        # status would take all three. The reaper reads running jobs by lease, the queue's
        # position and the sweeper queued ones by age, retention and the latency stats
        # finished ones by age.
        indexes = [
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status=JobStatus.RUNNING),
                name="job_running_lease",
            ),
            models.Index(
                fields=["queued_at"], condition=Q(status=JobStatus.QUEUED), name="job_queued_at"
            ),
            models.Index(
                fields=["finished_at"],
                condition=Q(finished_at__isnull=False),
                name="job_finished_at",
            ),
            # An owner's jobs newest first (My runs, GET /v1/jobs and its cursor): a page
            # reads its rows in order, not every job of the owner sorted (playground/0017).
            # It also serves every other read by owner (a closed account's runs).
            models.Index(fields=["owner", "created_at", "id"], name="job_owner_created"),
            # An account's jobs in flight, counted by every paid call (playground/limits.py
            # inflight_jobs_check): without it a count that read the owner's whole history
            # (a seq scan, 1.1 s per call for an account with 405,000 jobs). Queued and
            # running jobs only: an entry when a job is queued and when it is claimed.
            models.Index(
                fields=["owner"],
                condition=Q(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]),
                name="job_owner_inflight",
            ),
            # Retention's work: finished jobs that still hold an image, and free tries
            # (no charge: cost_ref empty) whatever became of theirs; a week of jobs, not
            # the year whose images are gone. A job enters it once, when it finishes.
            models.Index(
                fields=["finished_at"],
                condition=Q(finished_at__isnull=False)
                & (Q(image_deleted_at__isnull=True) | Q(cost_ref="")),
                name="job_retention",
            ),
            # Not declared here: job_created_brin, a BRIN index on created_at (the admin's
            # job list, newest first over a window; playground/0020), PostgreSQL only. No
            # entry per row; SQLite, which rebuilds a table with every index Meta declares,
            # has no BRIN.
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in JobStatus]), name="job_valid_status"
            ),
            models.CheckConstraint(
                condition=Q(attempts__lte=models.F("max_attempts")), name="job_attempts_capped"
            ),
            models.CheckConstraint(
                condition=~Q(status=JobStatus.SUCCEEDED) | Q(result__isnull=False),
                name="job_succeeded_has_result",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.status}"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL


class JobAttempt(models.Model):
    """One claim of a job by a worker: how many times it ran, where, and how it ended."""

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        LOST = "lost", "Lost (worker died or timed out)"
        RETRY = "retry", "Retried after a transient error"
        CANCELLED = "cancelled", "Cancelled (its call gave it up)"

    # Looked up by job through the unique (job, number) index (Meta): no second index.
    job = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="attempt_log", db_index=False
    )
    number = models.PositiveSmallIntegerField()
    worker = models.CharField(max_length=200)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)

    class Meta:
        ordering = ["job", "number"]
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="job_attempt_unique_number")
        ]

    def __str__(self) -> str:
        return f"{self.job_id} #{self.number} {self.outcome}"


class WebhookDelivery(models.Model):
    """A job's webhook: where its finished resource is POSTed, and how that went.

    Created with the job (``waiting``); ``pending`` once the job is final and a delivery
    task is queued; ``delivered`` on a 2xx; ``failed`` when the attempts ran out or the
    address was refused (``playground/webhooks.py``).
    """

    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting for the job"
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="webhook_delivery")
    url = models.URLField(max_length=2000)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.WAITING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # The absolute base of the site the job was created on (``https://host[:port]``, from
    # the creating request): the body's URLs are built on it when ``SITE_URL`` is empty, as
    # the API's own answers are built on the request. Here, not on the job: only jobs with
    # a webhook pay for it. Empty on rows made before it was recorded. Its database default
    # (db_default, playground/0016) is what lets the previous release, still running
    # during a rolling deploy, insert deliveries without naming the column (a 500 before).
    site_url = models.CharField(max_length=2000, blank=True, default="", db_default="")
    # When the message for this delivery's next attempt could not be sent (the broker away:
    # ``webhooks._enqueue``), the time it was due; the reaper's next sweep after the broker
    # is back sends it for then (``webhooks_sweep``), and the attempt's claim clears it.
    # Before session 44 such a delivery waited for the sweep of lost messages, over an hour.
    resend_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status"], name="webhook_delivery_status_idx")]

    def __str__(self) -> str:
        return f"webhook of {self.job_id} {self.status}"


class IdempotencyRecord(models.Model):
    """An ``Idempotency-Key`` a caller sent with a paid call, and the job it created.

    Unique per account and key: a retry (or a concurrent duplicate) of the same call finds
    this row and answers with the same job instead of creating and charging a second one.
    ``fingerprint`` is a hash of what the call asked for (flavour, model, route, image
    sha256, parameters); the same key with another fingerprint is refused (422).
    Written in the transaction that creates the job, so a row always names a job.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    # Null only inside the creating transaction, between the claim and the job's insert.
    job = models.ForeignKey(Job, on_delete=models.CASCADE, null=True, related_name="+")
    # The key's call was a cache hit of another call's job (x-use-cache): it charged
    # nothing, and its replays say so (X-Vitrine-Cache: hit, X-Vitrine-Cost: 0). The
    # database's default (playground/0019) lets the previous release insert without it.
    cached = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_unique_user_key")
        ]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key}"


class CachedCall(models.Model):
    """A Hugging Face flavour call whose result later identical calls may reuse
    (``x-use-cache: true``): same account, model revision, route, image sha256 and
    parameters, all hashed into ``fingerprint``. Not unique: ``x-use-cache: false`` adds a
    newer row; lookups take the newest one within ``VITRINE_HF_CACHE_TTL``."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    fingerprint = models.CharField(max_length=64)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(
                fields=["owner", "fingerprint", "created_at"], name="cachedcall_lookup_idx"
            )
        ]

    def __str__(self) -> str:
        return f"{self.owner_id}:{self.fingerprint[:12]}"
