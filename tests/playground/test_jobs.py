"""Job rows: created with the request, claimed once, finished once, reaped when lost."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from PIL import Image

from playground import services
from playground.models import Job, JobAttempt
from playground.runtime import ImageError
from playground.storage import upload_read
from tests import factories

pytestmark = pytest.mark.django_db


def png(width=64, height=48, color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def storage(settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    return settings.VITRINE_JOB_STORAGE


@pytest.fixture
def job(storage, django_capture_on_commit_callbacks):
    # The enqueue runs on commit; capturing it keeps these tests off the broker.
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = services.job_create(card=factories.card(), image_bytes=png())
    assert len(callbacks) == 1
    return job


def test_a_job_stores_the_image_outside_the_web_root_by_a_generated_name(job, storage):
    # The local backend keeps it under VITRINE_JOB_STORAGE; everything else reads it back
    # through the storage API by its name.
    path = storage / job.image_name
    assert path.suffix == ".png" and path.read_bytes() == png()
    assert upload_read(job.image_name) == png()
    assert (job.status, job.attempts, job.queue) == ("queued", 0, "cpu")
    assert (job.width, job.height, job.original_width, job.original_height) == (64, 48, 64, 48)
    assert len(job.image_sha256) == 64


def test_bad_input_creates_nothing(storage, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(ImageError):
        services.job_create(card=factories.card(), image_bytes=b"not an image")
    assert Job.objects.count() == 0 and callbacks == []
    assert not storage.exists() or list(storage.iterdir()) == []


def test_the_id_is_enqueued_only_when_the_transaction_commits(
    storage, django_capture_on_commit_callbacks
):
    card = factories.card()
    with (
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.job_create(card=card, image_bytes=png())
        raise RuntimeError("the request failed after creating the job")
    assert callbacks == [] and Job.objects.count() == 0


def test_a_job_is_claimed_once(job):
    first = services.job_claim(job_id=job.pk, worker="a")
    second = services.job_claim(job_id=job.pk, worker="b")
    assert first is not None and second is None
    job.refresh_from_db()
    assert (job.status, job.attempts, job.worker) == ("running", 1, "a")
    assert job.lease_expires_at > job.started_at


def test_only_the_attempt_holding_the_job_can_finish_it(job, django_capture_on_commit_callbacks):
    stale = services.job_claim(job_id=job.pk, worker="a")
    later = timezone.now() + timedelta(hours=1)
    with django_capture_on_commit_callbacks(execute=False):
        assert services.jobs_reap_stale(now=later) == {"requeued": 1, "failed": 0}
    current = services.job_claim(job_id=job.pk, worker="b")
    assert services.job_succeed(job=stale, result=[], timings={}) is False
    assert services.job_succeed(job=current, result=[{"label": "cat"}], timings={}) is True
    assert services.job_succeed(job=current, result=[{"label": "dog"}], timings={}) is False
    job.refresh_from_db()
    assert (job.status, job.result, job.attempts) == ("succeeded", [{"label": "cat"}], 2)
    outcomes = list(job.attempt_log.values_list("number", "worker", "outcome"))
    assert outcomes == [(1, "a", "lost"), (2, "b", "succeeded")]


def test_the_reaper_fails_a_job_out_of_attempts(job, django_capture_on_commit_callbacks):
    later = timezone.now() + timedelta(hours=1)
    for _ in range(job.max_attempts):
        assert services.job_claim(job_id=job.pk, worker="w") is not None
        with django_capture_on_commit_callbacks(execute=False):
            services.jobs_reap_stale(now=later)
    job.refresh_from_db()
    assert (job.status, job.error_code, job.attempts) == ("failed", "attempts_exhausted", 3)
    assert services.job_claim(job_id=job.pk, worker="w") is None
    assert JobAttempt.objects.filter(job=job, outcome="lost").count() == 3


def test_the_reaper_leaves_live_jobs_alone(job):
    services.job_claim(job_id=job.pk, worker="a")
    assert services.jobs_reap_stale() == {"requeued": 0, "failed": 0}
    job.refresh_from_db()
    assert job.status == "running"


def test_a_gone_job_is_ignored_by_the_task(db):
    from playground.tasks import run_detection

    run_detection("00000000-0000-0000-0000-000000000000")  # returns quietly
    assert Job.objects.count() == 0 and JobAttempt.objects.count() == 0


def test_a_claimed_job_records_the_claiming_process(job):
    import os

    from playground.tasks import worker_id

    claimed = services.job_claim(job_id=job.pk, worker=worker_id())
    assert claimed.worker.endswith(f":{os.getpid()}")


def test_a_reread_job_is_the_row_now_with_the_relations_the_request_holds(
    job, django_assert_num_queries
):
    from playground.selectors import job_reread

    owner = factories.user()
    Job.objects.filter(pk=job.pk).update(owner=owner)
    job.owner = owner
    services.job_claim(job_id=job.pk, worker="w1")  # the row moved on since the request
    with django_assert_num_queries(1):  # the row and its webhook; card, route, owner held
        fresh = job_reread(job)
        assert (fresh.card.model_id, fresh.owner.username) == (job.card.model_id, owner.username)
        assert getattr(fresh, "webhook_delivery", None) is None
    assert (fresh.status, fresh.attempts, fresh.worker) == ("running", 1, "w1")
    # A relation that is not the row's any more is read from the row, not reused.
    other = factories.user()
    Job.objects.filter(pk=job.pk).update(owner=other)
    with django_assert_num_queries(2):
        assert job_reread(job).owner == other


def test_a_waiting_call_reads_final_for_an_ended_or_gone_job_only(job):
    """``events.job_is_final``, what a waiting call reads when no signal came (a prepared
    statement on PostgreSQL, the ORM elsewhere)."""
    import uuid

    from playground import events

    assert events.job_is_final(job.pk) is False  # queued
    claimed = services.job_claim(job_id=job.pk, worker="host:1")
    assert events.job_is_final(job.pk) is False  # running
    services.job_succeed(job=claimed, result=[], timings={})
    assert events.job_is_final(job.pk) is True
    assert events.job_is_final(uuid.uuid4()) is True  # gone: nothing to wait for
