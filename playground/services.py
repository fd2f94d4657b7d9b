"""Writes to jobs. Every state change is a compare-and-set update on the job row.

A job is created in the request's transaction and its id enqueued on commit; a worker
claims it with ``UPDATE ... WHERE status='queued'`` so two deliveries of one message (a
redelivery after a lost worker, a reaper re-queue) never run it twice at once, and it is
finished with ``UPDATE ... WHERE status='running' AND attempts=<its attempt>`` so a
worker that lost its claim cannot overwrite the result of the one that holds it.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing.services.charges import charge_post, charge_void
from catalog.models import ModelCard, PriceRoute
from playground.models import Job, JobAttempt, JobStatus
from playground.runtime import DecodedImage, decode_image
from playground.storage import upload_save

EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif"}
FINAL = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED]


def _lease_from(now: datetime) -> datetime:
    return now + timedelta(
        seconds=settings.CELERY_TASK_HARD_TIME_LIMIT + settings.VITRINE_JOB_LEASE_MARGIN
    )


def _enqueue(job: Job) -> None:
    from playground.tasks import run_detection

    run_detection.apply_async((str(job.id),), queue=job.queue)


@transaction.atomic
def job_create(
    *,
    card: ModelCard,
    image_bytes: bytes,
    route: PriceRoute | None = None,
    parameters: dict | None = None,
    owner=None,
    session_key: str = "",
    queue: str | None = None,
) -> Job:
    """Validate and store the image, create the job row, enqueue its id on commit.

    Raises ``ImageError`` (bad input: nothing is stored, nothing queued) and
    ``StorageUnavailable`` (the upload storage failed: no row either).
    """
    decoded: DecodedImage = decode_image(image_bytes, max_pixels=settings.VITRINE_MAX_IMAGE_PIXELS)
    # Through the shared storage (playground/storage.py): the worker that runs the job may
    # be on another machine. Keep the name the backend returns. Stored before the row is
    # written, so no row lock is held during the network round trip.
    name = upload_save(
        name=f"{uuid.uuid4().hex}{EXTENSIONS.get(decoded.format, '')}", content=image_bytes
    )
    job = Job.objects.create(
        card=card,
        route=route,
        owner=owner,
        session_key=session_key,
        parameters=parameters or {},
        image_name=name,
        image_sha256=decoded.sha256,
        image_bytes=len(image_bytes),
        original_width=decoded.original_size[0],
        original_height=decoded.original_size[1],
        width=decoded.oriented_size[0],
        height=decoded.oriented_size[1],
        queue=queue or settings.VITRINE_INFERENCE_QUEUE,
        max_attempts=settings.VITRINE_JOB_MAX_ATTEMPTS,
    )
    # If the transaction rolls back, the file is orphaned, never the reverse.
    transaction.on_commit(lambda: _enqueue(job))
    return job


def job_claim(*, job_id, worker: str, now: datetime | None = None) -> Job | None:
    """Take a queued job for this worker; None when it is gone, taken or out of attempts."""
    now = now or timezone.now()
    with transaction.atomic():
        claimed = Job.objects.filter(
            pk=job_id, status=JobStatus.QUEUED, attempts__lt=F("max_attempts")
        ).update(
            status=JobStatus.RUNNING,
            attempts=F("attempts") + 1,
            started_at=now,
            lease_expires_at=_lease_from(now),
            worker=worker,
        )
        if not claimed:
            return None
        job = Job.objects.select_related("card__organisation").get(pk=job_id)
        JobAttempt.objects.create(job=job, number=job.attempts, worker=worker, started_at=now)
    return job


def jobs_claim_batch(*, like: Job, worker: str, limit: int) -> list[Job]:
    """Claim up to ``limit`` more queued jobs for the same model, route and queue as ``like``,
    oldest first, so they share a forward pass. Their own messages, when delivered, find
    them claimed and do nothing."""
    if limit <= 0:
        return []
    candidates = (
        Job.objects.filter(
            status=JobStatus.QUEUED, card_id=like.card_id, route_id=like.route_id, queue=like.queue
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[: limit * 2]
    )
    claimed = []
    for pk in candidates:
        job = job_claim(job_id=pk, worker=worker)
        if job is not None:
            claimed.append(job)
            if len(claimed) == limit:
                break
    return claimed


def _settle_charge(*, job_id, status: str) -> None:
    """Post the job's charge when it succeeded, void it otherwise: a failed job costs nothing.

    Runs in the transaction that finishes the job, so the money moves with the status.
    """
    if status == JobStatus.SUCCEEDED:
        charge_post(job_id=job_id)
    else:
        charge_void(job_id=job_id)


def _finish(*, job: Job, outcome: str, **fields) -> bool:
    now = timezone.now()
    with transaction.atomic():
        done = Job.objects.filter(
            pk=job.pk, status=JobStatus.RUNNING, attempts=job.attempts
        ).update(finished_at=now, lease_expires_at=None, **fields)
        if done:
            JobAttempt.objects.filter(job=job, number=job.attempts).update(
                finished_at=now, outcome=outcome
            )
            _settle_charge(job_id=job.pk, status=fields["status"])
    return bool(done)


def job_cancel(*, job: Job) -> bool:
    """Cancel a job that no worker has claimed yet; its charge is released."""
    with transaction.atomic():
        done = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
            status=JobStatus.CANCELLED, finished_at=timezone.now()
        )
        if done:
            _settle_charge(job_id=job.pk, status=JobStatus.CANCELLED)
    return bool(done)


def job_succeed(*, job: Job, result: list[dict], timings: dict[str, float]) -> bool:
    """Store the detections; False when this attempt no longer holds the job."""
    return _finish(
        job=job,
        outcome=JobAttempt.Outcome.SUCCEEDED,
        status=JobStatus.SUCCEEDED,
        result=result,
        timings=timings,
    )


def job_fail(*, job: Job, code: str, message: str, timings: dict | None = None) -> bool:
    return _finish(
        job=job,
        outcome=JobAttempt.Outcome.FAILED,
        status=JobStatus.FAILED,
        error_code=code,
        error_message=message[:500],
        timings=timings or {},
    )


def job_release_for_retry(*, job: Job) -> bool:
    """Give a running job back to the queue after a transient error (the caller re-enqueues)."""
    now = timezone.now()
    with transaction.atomic():
        done = Job.objects.filter(
            pk=job.pk, status=JobStatus.RUNNING, attempts=job.attempts
        ).update(status=JobStatus.QUEUED, lease_expires_at=None, worker="")
        if done:
            JobAttempt.objects.filter(job=job, number=job.attempts).update(
                finished_at=now, outcome=JobAttempt.Outcome.RETRY
            )
    return bool(done)


def jobs_reap_stale(*, now: datetime | None = None) -> dict[str, int]:
    """Re-queue running jobs whose lease passed (their worker died); fail those out of tries.

    A lease outlives the hard time limit, so a job past it cannot still be running.
    """
    now = now or timezone.now()
    requeued = failed = 0
    stale = Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=now)
    for job in stale.only("pk", "attempts", "max_attempts", "queue"):
        with transaction.atomic():
            lost = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, attempts=job.attempts)
            if job.attempts < job.max_attempts:
                changed = lost.update(status=JobStatus.QUEUED, lease_expires_at=None, worker="")
                if changed:
                    requeued += 1
                    transaction.on_commit(lambda job=job: _enqueue(job))
            else:
                changed = lost.update(
                    status=JobStatus.FAILED,
                    finished_at=now,
                    lease_expires_at=None,
                    error_code="attempts_exhausted",
                    error_message=f"The worker was lost {job.attempts} times.",
                )
                failed += changed
                if changed:
                    _settle_charge(job_id=job.pk, status=JobStatus.FAILED)
            if changed:
                JobAttempt.objects.filter(job_id=job.pk, number=job.attempts).update(
                    finished_at=now, outcome=JobAttempt.Outcome.LOST
                )
    return {"requeued": requeued, "failed": failed}
