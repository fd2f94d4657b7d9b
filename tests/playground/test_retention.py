"""Retention: free tries go entirely, paid jobs keep their row and result but not the image,
and nothing queued or running is touched."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.utils import timezone
from PIL import Image

from billing.models import Charge
from billing.services.charges import charge_reserve
from playground import services
from playground.models import Job, JobAttempt
from playground.retention import uploads_purge_expired
from playground.storage import job_storage
from tests import factories

pytestmark = pytest.mark.django_db
HOUR = timedelta(hours=1)


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def local(settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_TRY_RETENTION = 24
    settings.VITRINE_UPLOAD_RETENTION = 24 * 7


@pytest.fixture
def card(db):
    card = factories.card()
    factories.route(card=card)
    return card


def try_job(card, *, finished_at, status="succeeded") -> Job:
    """A free try (the try-it page: no charge), finished at ``finished_at``."""
    job = services.job_create(card=card, image_bytes=png(), session_key="anon")
    return _finish(job, status=status, finished_at=finished_at)


def paid_job(card, user, *, finished_at, status="succeeded") -> Job:
    job = services.job_create(card=card, image_bytes=png(), owner=user)
    charge_reserve(job_id=job.pk, user=user, card=card, route=card.routes.get())
    return _finish(job, status=status, finished_at=finished_at)


def _finish(job, *, status, finished_at) -> Job:
    fields = {"status": status, "finished_at": finished_at}
    if status == "succeeded":
        fields["result"] = [{"label": "cat", "score": 0.9, "box": [0, 0, 1, 1]}]
    if status in ("queued", "running"):
        fields["finished_at"] = None
        fields["created_at"] = finished_at
    Job.objects.filter(pk=job.pk).update(**fields)
    job.refresh_from_db()
    return job


def stored(job) -> bool:
    return bool(job.image_name) and job_storage().exists(job.image_name)


def test_an_expired_try_loses_its_row_and_image(local, card):
    now = timezone.now()
    old = try_job(card, finished_at=now - 25 * HOUR)
    recent = try_job(card, finished_at=now - 23 * HOUR)
    JobAttempt.objects.create(job=old, number=1, worker="w", started_at=now - 26 * HOUR)

    counts = uploads_purge_expired(now=now)

    assert counts == {"tries_deleted": 1, "images_deleted": 0}
    assert list(Job.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not job_storage().exists(old.image_name) and stored(recent)
    assert not JobAttempt.objects.filter(job_id=old.pk).exists()


def test_an_expired_paid_job_keeps_its_row_and_result_but_not_the_image(local, card):
    user = factories.funded(factories.user())
    now = timezone.now()
    old = paid_job(card, user, finished_at=now - 8 * 24 * HOUR)
    failed = paid_job(card, user, finished_at=now - 8 * 24 * HOUR, status="failed")
    # Older than the try retention but younger than the upload retention: kept whole.
    recent = paid_job(card, user, finished_at=now - 2 * 24 * HOUR)
    name = old.image_name

    counts = uploads_purge_expired(now=now)

    assert counts == {"tries_deleted": 0, "images_deleted": 2}
    old.refresh_from_db()
    assert (old.status, old.image_name, old.image_deleted_at) == ("succeeded", "", now)
    assert old.result == [{"label": "cat", "score": 0.9, "box": [0, 0, 1, 1]}]
    assert not job_storage().exists(name)
    assert Charge.objects.filter(job_id=old.pk).exists()
    failed.refresh_from_db()
    assert failed.image_deleted_at == now
    assert stored(recent)
    # A second run finds nothing more to do.
    assert uploads_purge_expired(now=now) == {"tries_deleted": 0, "images_deleted": 0}


@pytest.mark.parametrize("status", ["queued", "running"])
def test_jobs_not_finished_are_never_touched(local, card, status):
    user = factories.funded(factories.user())
    long_ago = timezone.now() - 365 * 24 * HOUR
    jobs = [try_job(card, finished_at=long_ago, status=status)]
    jobs.append(paid_job(card, user, finished_at=long_ago, status=status))

    assert uploads_purge_expired() == {"tries_deleted": 0, "images_deleted": 0}

    for job in jobs:
        job.refresh_from_db()
        assert job.status == status and stored(job) and job.image_deleted_at is None


def test_a_backlog_is_worked_through_in_bounded_batches(local, card, settings):
    now = timezone.now()
    for _ in range(5):
        try_job(card, finished_at=now - 48 * HOUR)
    keep = try_job(card, finished_at=now)

    assert uploads_purge_expired(now=now, batch_size=2) == {"tries_deleted": 5, "images_deleted": 0}
    assert list(Job.objects.values_list("pk", flat=True)) == [keep.pk]


def test_a_row_whose_image_is_already_gone_is_still_purged(local, card):
    """The state a crash between the two steps leaves: the object is gone, the row is not."""
    now = timezone.now()
    job = try_job(card, finished_at=now - 48 * HOUR)
    job_storage().delete(job.image_name)
    assert uploads_purge_expired(now=now)["tries_deleted"] == 1
    assert not Job.objects.exists()


def test_retention_on_s3(s3_storage, card, settings):
    settings.VITRINE_TRY_RETENTION = 1
    now = timezone.now()
    job = try_job(card, finished_at=now - 2 * HOUR)
    assert stored(job)
    assert uploads_purge_expired(now=now)["tries_deleted"] == 1
    assert not job_storage().exists(job.image_name)


def test_the_purge_is_scheduled_on_the_default_queue(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["purge-expired-uploads"]
    assert entry["task"] == "playground.purge_expired_uploads"
    assert entry["options"]["queue"] == "default"


def test_the_beat_task_purges(local, card):
    from playground.tasks import purge_expired_uploads

    try_job(card, finished_at=timezone.now() - 48 * HOUR)
    assert purge_expired_uploads() == {"tries_deleted": 1, "images_deleted": 0}


def test_the_beat_task_deletes_expired_sessions_and_old_health_pings(local):
    """Rows nothing else deletes: every anonymous try and sign-in leaves a session, every
    worker_check (a readiness probe's every run) a health ping per queue."""
    from django.contrib.sessions.models import Session

    from playground.models import WorkerHeartbeat
    from playground.tasks import purge_expired_uploads

    now = timezone.now()
    Session.objects.create(session_key="expired", session_data="", expire_date=now - HOUR)
    Session.objects.create(session_key="live", session_data="", expire_date=now + HOUR)
    old = WorkerHeartbeat.objects.create(token="old", hostname="h", pid=1)
    WorkerHeartbeat.objects.filter(pk=old.pk).update(seen_at=now - timedelta(days=2))
    WorkerHeartbeat.objects.create(token="new", hostname="h", pid=1)
    purge_expired_uploads()
    assert list(Session.objects.values_list("session_key", flat=True)) == ["live"]
    assert list(WorkerHeartbeat.objects.values_list("token", flat=True)) == ["new"]
