"""A job carries the X-Request-Id of the call that made it: on the row, in the API, in the
admin, and in every worker log line about it."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import pytest
import structlog
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from PIL import Image

from billing.services.keys import api_key_create
from billing.services.topups import credit_grant
from playground import services
from playground.models import Job
from tests import factories
from tests.conftest import wait_for

GOOD_ID = "client-req_0001:abc.DEF-9"


def jpeg(width=80, height=60) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buffer, format="JPEG")
    return buffer.getvalue()


def upload() -> SimpleUploadedFile:
    return SimpleUploadedFile("cats.jpg", jpeg(), content_type="image/jpeg")


# --- the job ----------------------------------------------------------------------------
@pytest.fixture
def storage(settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"


@pytest.mark.django_db
def test_a_job_made_by_the_api_stores_the_request_id(client, storage, other_user, json_log):
    card = factories.card()
    factories.route(card=card, price=Decimal("0.0002"))
    _, secret = api_key_create(user=other_user, name="ci")
    credit_grant(user=other_user, amount=Decimal("1.00"), reason="test")
    response = client.post(
        f"/v1/inference/{card.model_id}",
        data=jpeg(),
        content_type="image/jpeg",
        headers={"Authorization": f"Bearer {secret}", "Prefer": "respond-async",
                 "X-Request-Id": GOOD_ID},
    )  # fmt: skip
    assert response.status_code == 202, response.content
    assert response["X-Request-Id"] == GOOD_ID
    resource = response.json()
    assert resource["request_id"] == GOOD_ID
    assert Job.objects.get(pk=resource["id"]).request_id == GOOD_ID
    created = [line for line in json_log() if line["event"] == "job_created"]
    assert created[-1]["job_id"] == resource["id"]
    assert created[-1]["request_id"] == GOOD_ID
    polled = client.get(resource["url"], headers={"Authorization": f"Bearer {secret}"})
    assert polled.json()["request_id"] == GOOD_ID
    assert polled["X-Request-Id"] != GOOD_ID  # the poll is a request of its own


@pytest.mark.django_db
def test_a_job_made_on_the_try_page_stores_the_generated_id(client, storage):
    card = factories.card()
    response = client.post(
        f"/models/{card.model_id}/try", {"image": upload()}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 202
    job = Job.objects.get(pk=response.json()["id"])
    assert job.request_id == response["X-Request-Id"]
    assert len(job.request_id) == 32


@pytest.mark.django_db
def test_a_job_made_outside_a_request_has_no_request_id(storage):
    job = services.job_create(card=factories.card(), image_bytes=jpeg())
    assert job.request_id == ""
    explicit = services.job_create(card=job.card, image_bytes=jpeg(), request_id="batch-import-7")
    assert explicit.request_id == "batch-import-7"


@pytest.mark.django_db
def test_the_admin_finds_a_job_by_request_id(staff_client, storage):
    job = services.job_create(card=factories.card(), image_bytes=jpeg(), request_id=GOOD_ID)
    services.job_create(card=job.card, image_bytes=jpeg(), request_id="someone-else-1")
    page = staff_client.get("/admin/playground/job/", {"q": GOOD_ID}).content.decode()
    assert str(job.pk) in page and "someone-else-1" not in page
    assert staff_client.get(f"/admin/playground/job/{job.pk}/change/").status_code == 200


@pytest.mark.worker
def test_the_worker_logs_the_job_with_its_request_id(start_worker, storage, runtime_checkpoint):
    worker = start_worker(env_extra={"LOG_FORMAT": "json"})
    card = factories.card(checkpoint_local_dir=str(runtime_checkpoint("yolos_tiny")))
    response = Client().post(
        f"/models/{card.model_id}/try",
        {"image": upload()},
        headers={"Accept": "application/json", "X-Request-Id": GOOD_ID},
    )
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job.request_id == GOOD_ID
    wait_for(
        lambda: Job.objects.get(pk=job.pk).is_final, timeout=240, interval=0.5,
        message=worker.output(),
    )  # fmt: skip

    def lines() -> list[dict]:
        parsed = []
        for raw in worker.output().splitlines():
            try:
                parsed.append(json.loads(raw))
            except ValueError:
                continue  # the startup banner is printed, not logged
        return parsed

    # The task's last lines (task_succeeded) are written just after the row is final.
    about_job = wait_for(
        lambda: [x for x in lines() if x.get("job_id") == str(job.pk)]
        if any(x.get("event") == "task_succeeded" and x.get("job_id") == str(job.pk)
               for x in lines()) else None,
        timeout=60, message=worker.output(),
    )  # fmt: skip
    events = {line["event"] for line in about_job}
    assert {"task_started", "job_claimed", "job_finished", "task_succeeded"} <= events
    assert all(line.get("request_id") == GOOD_ID for line in about_job), about_job
    for line in about_job:
        assert {"timestamp", "level", "logger", "event"} <= set(line)
    # Celery's own lines go through the same JSON formatter, without a job's ids.
    ready = [x for x in lines() if x.get("event", "").endswith(" ready.")]
    assert ready and "request_id" not in ready[0] and ready[0]["logger"].startswith("celery")

    # A job enqueued outside any request (a batch import; the reaper's re-queue is the same):
    # no request context rides in the message, only the job's own request id does.
    batch = services.job_create(card=card, image_bytes=jpeg(), request_id="batch-import-7")
    wait_for(lambda: Job.objects.get(pk=batch.pk).is_final, timeout=240, interval=0.5)
    started = wait_for(
        lambda: [x for x in lines() if x.get("event") == "task_started"
                 and x.get("job_id") == str(batch.pk)],
        timeout=60, message=worker.output(),
    )  # fmt: skip
    assert started[0]["request_id"] == "batch-import-7"


@pytest.mark.django_db
def test_a_job_message_carries_its_request_id_so_the_worker_reads_no_row(storage):
    """Binding the request id before the claim cost every job a query; the message now
    carries it. A message sent before it did (no header) is still bound from the row."""
    from django_structlog.celery.signals import bind_extra_task_metadata

    from playground.tasks import job_message, run_detection
    from playground.tracing import REQUEST_ID_HEADER

    job = services.job_create(card=factories.card(), image_bytes=jpeg(), request_id=GOOD_ID)
    headers = job_message(job)["headers"]
    assert headers == {REQUEST_ID_HEADER: GOOD_ID}
    seen = []
    for message_headers in (headers, {}):
        run_detection.push_request(args=[str(job.pk)], **message_headers)
        try:
            with CaptureQueriesContext(connection) as queries:
                # What django-structlog sends at each task's start (playground.tracing binds).
                bind_extra_task_metadata.send(sender=None, task=run_detection, logger=None)
            bound = structlog.contextvars.get_contextvars()
        finally:
            run_detection.pop_request()
            structlog.contextvars.clear_contextvars()
        seen.append((len(queries), bound.get("job_id"), bound.get("request_id")))
    assert seen == [(0, str(job.pk), GOOD_ID), (1, str(job.pk), GOOD_ID)]


def test_the_binding_outlives_a_garbage_collection():
    """``@signal.connect`` returned None: the receiver lived on a weak reference alone and a
    collection removed it, so a worker started by the celery command logged task_started
    and the model's lines without job_id (the tests' workers had not collected it yet)."""
    import gc

    from django_structlog.celery.signals import bind_extra_task_metadata

    from playground import tracing
    from playground.tasks import run_detection

    assert callable(tracing.bind_job)
    gc.collect()
    job_id = "0b8c7a52-5f4e-4c53-9d55-1f3f7d0c1a11"
    run_detection.push_request(args=[job_id], **{tracing.REQUEST_ID_HEADER: "req-00000001"})
    try:
        bind_extra_task_metadata.send(sender=None, task=run_detection, logger=None)
        bound = structlog.contextvars.get_contextvars()
    finally:
        run_detection.pop_request()
        structlog.contextvars.clear_contextvars()
    assert (bound.get("job_id"), bound.get("request_id")) == (job_id, "req-00000001")
