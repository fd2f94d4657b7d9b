"""Retention of uploads: nothing a visitor sends is kept for ever.

Free tries (jobs with no charge: the try-it page) lose their row, result and image
``VITRINE_TRY_RETENTION`` hours after they finished. Paid jobs keep their row and result
(the charge and the ledger refer to them) and lose only the image after
``VITRINE_UPLOAD_RETENTION`` hours. Queued and running jobs are never touched: only final
jobs qualify, and a final job never becomes queued again.

Run by the beat task ``playground.purge_expired_uploads``.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timedelta
from importlib import import_module

from django.conf import settings
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from billing.models import Charge
from playground.models import Job, WorkerHeartbeat
from playground.storage import upload_delete

logger = logging.getLogger(__name__)
# Bounds one run, so a backlog (the first run after enabling retention) is worked through
# over several beats instead of one task that outlives its time limit.
MAX_BATCHES_PER_RUN = 20
# A health ping's row (worker_check, the admin's "Worker heartbeats") is read seconds after
# it is written; kept a day so the admin shows who answered lately, then deleted.
HEARTBEAT_RETENTION = timedelta(days=1)


def _expired(*, charged: bool, hours: int, now: datetime) -> QuerySet[Job]:
    """Finished jobs past their retention, oldest first: free tries (``charged`` False) or
    paid jobs that still hold their image. Each query states what makes it read the
    ``job_retention`` index (jobs still holding an image, and free tries): a free try
    has no charge, so no ``cost_ref`` either (the charge's id is its ``cost_ref`` from
    the job's insert). With ``job_finished_at`` each batch walked every finished job
    from the oldest, a year of jobs whose images were gone long ago (playground/0017)."""
    has_charge = Exists(Charge.objects.filter(job_id=OuterRef("pk")))
    jobs = Job.objects.filter(status__in=Job.FINAL, finished_at__lt=now - timedelta(hours=hours))
    if charged:
        jobs = jobs.filter(has_charge, image_deleted_at__isnull=True)
    else:
        jobs = jobs.filter(~has_charge, cost_ref="")
    return jobs.order_by("finished_at")


def _delete_uploads(rows: list[tuple]) -> list:
    """Delete each row's stored image; the ids whose image is gone now. Stops at the first
    storage failure (an outage: the rest wait for the next run)."""
    done = []
    for pk, name in rows:
        try:
            upload_delete(name)
        except Exception:
            logger.warning("retention: the storage refused to delete %s", name, exc_info=True)
            break
        done.append(pk)
    return done


def _purge_tries(tries: QuerySet[Job], *, batch_size: int, max_batches: int) -> int:
    """Delete these free tries (row, result, image) in batches, each image before its row;
    the number deleted. Stops at a short batch: all done, or a storage failure."""
    deleted = 0
    for _ in range(max_batches):
        done = _delete_uploads(list(tries.values_list("pk", "image_name")[:batch_size]))
        if done:
            # Attempts go with the row (CASCADE). The try-page hourly limit counts rows of
            # the last hour only, and retention is at least an hour: deleting cannot
            # reopen anybody's limit.
            _, by_model = Job.objects.filter(pk__in=done, status__in=Job.FINAL).delete()
            deleted += by_model.get(Job._meta.label, 0)
        if len(done) < batch_size:
            break
    return deleted


def _purge_images(jobs: QuerySet[Job], *, batch_size: int, max_batches: int, now: datetime) -> int:
    """Delete the stored images of these paid jobs in batches, each before its row says so
    (``image_deleted_at``); their rows and results stay. The number deleted."""
    jobs = jobs.filter(image_deleted_at__isnull=True)
    deleted = 0
    for _ in range(max_batches):
        done = _delete_uploads(list(jobs.values_list("pk", "image_name")[:batch_size]))
        if done:
            deleted += Job.objects.filter(pk__in=done, image_deleted_at__isnull=True).update(
                image_name="", image_deleted_at=now
            )
        if len(done) < batch_size:
            break
    return deleted


def uploads_purge_expired(
    *, now: datetime | None = None, batch_size: int | None = None
) -> dict[str, int]:
    """Delete expired tries and the images of expired paid jobs, in bounded batches.

    The stored image is deleted *before* the row changes. A crash in between leaves a row
    that still names an object that is gone: the next run finds the row again and deletes
    again (deleting a missing object is a no-op on both backends), then finishes the row.
    The other order would leave objects no row names, which nothing would ever find.
    Meanwhile the try page answers 404 for that image, as it does once it is purged.
    """
    from playground.services import db_now

    # The database's clock, as the jobs' own times are: a purging machine ahead of it
    # deleted uploads early by its skew.
    now = now or db_now()
    bounds = {"batch_size": batch_size or settings.VITRINE_PURGE_BATCH,
              "max_batches": MAX_BATCHES_PER_RUN}  # fmt: skip
    tries = _expired(charged=False, hours=settings.VITRINE_TRY_RETENTION, now=now)
    paid = _expired(charged=True, hours=settings.VITRINE_UPLOAD_RETENTION, now=now)
    return {
        "tries_deleted": _purge_tries(tries, **bounds),
        "images_deleted": _purge_images(paid, now=now, **bounds),
    }


def uploads_purge_owner(*, owner_id: int, batch_size: int | None = None) -> dict[str, int]:
    """Delete what a closed account uploaded, now rather than at its retention's end: its
    free tries (row, result, image) and the images of its paid jobs (their rows stay, as
    the charges and the ledger refer to them). Only final jobs; images first, then rows,
    as ``uploads_purge_expired``, but every batch in one go. A storage outage stops it:
    what is left then goes at the usual retention's end, so no upload outlives
    ``VITRINE_UPLOAD_RETENTION``."""
    from playground.services import upright_copies_forget

    bounds = {"batch_size": batch_size or settings.VITRINE_PURGE_BATCH,
              "max_batches": sys.maxsize}  # fmt: skip
    has_charge = Exists(Charge.objects.filter(job_id=OuterRef("pk")))
    owned = Job.objects.filter(owner_id=owner_id, status__in=Job.FINAL)
    # The cached upright copies are the pictures too (playground/views.py job_image).
    upright_copies_forget(
        keys=[
            sha or name
            for sha, name in owned.exclude(image_name="").values_list("image_sha256", "image_name")
        ]
    )
    tries, paid = owned.filter(~has_charge), owned.filter(has_charge)
    counts = {
        "tries_deleted": _purge_tries(tries, **bounds),
        "images_deleted": _purge_images(paid, now=timezone.now(), **bounds),
    }
    counts["images_left"] = tries.count() + paid.filter(image_deleted_at__isnull=True).count()
    return counts


def records_purge_expired(*, now: datetime | None = None) -> dict[str, int]:
    """Delete the rows nothing else ever deletes: expired sessions (what Django's
    ``clearsessions`` does: every anonymous free try and every sign-in leaves one) and
    health pings older than ``HEARTBEAT_RETENTION`` (one per queue per ``worker_check``, a
    readiness probe's every run). Run with the uploads' retention."""
    from django.contrib.sessions.models import Session

    now = now or timezone.now()
    sessions = Session.objects.filter(expire_date__lt=now).count()
    import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()
    heartbeats, _ = WorkerHeartbeat.objects.filter(seen_at__lt=now - HEARTBEAT_RETENTION).delete()
    return {"sessions_deleted": sessions, "heartbeats_deleted": heartbeats}
