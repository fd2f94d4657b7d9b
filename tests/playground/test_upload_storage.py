"""Uploads live in the shared "jobs" storage: local disk by default, a real S3 server
(SeaweedFS on loopback) when configured, and every process reads them by name."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from PIL import Image

from config.settings.env import s3_storage_options
from playground import services
from playground.models import Job
from playground.storage import (
    LocalJobStorage,
    StorageUnavailable,
    job_storage,
    upload_delete,
    upload_read,
    upload_save,
)
from tests import factories
from tests.conftest import S3_BUCKET, wait_for
from tests.tcp_gate import TcpGate

pytestmark = pytest.mark.django_db


def jpeg(width=96, height=64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 140, 220)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_the_default_is_the_local_disk_under_the_job_storage_setting(settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "elsewhere"
    assert isinstance(job_storage(), LocalJobStorage)
    name = upload_save(name="a.jpg", content=b"bytes")
    assert (tmp_path / "elsewhere" / name).read_bytes() == b"bytes"


def test_an_upload_round_trips_through_s3(s3_storage):
    name = upload_save(name="round-trip.jpg", content=jpeg())
    assert job_storage().exists(name)
    assert upload_read(name) == jpeg()
    # Really in the bucket, under this test's prefix, not on a local disk.
    stored = s3_storage.server.client().get_object(
        Bucket=S3_BUCKET, Key=f"{s3_storage.prefix}/{name}"
    )
    assert stored["Body"].read() == jpeg()
    upload_delete(name)
    assert not job_storage().exists(name)
    upload_delete(name)  # deleting what is gone is not an error (retention relies on it)
    with pytest.raises(FileNotFoundError):
        upload_read(name)


def test_wrong_s3_credentials_are_a_storage_failure_not_a_missing_upload(s3_storage, settings):
    name = upload_save(name="secret.jpg", content=jpeg())
    env = {**s3_storage.env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    settings.STORAGES = {**settings.STORAGES, "jobs": s3_storage_options(environ=env)}
    with pytest.raises(StorageUnavailable):
        upload_read(name)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "VITRINE_STORAGE=s3 needs VITRINE_S3_BUCKET."),
        (
            {"VITRINE_S3_BUCKET": "b", "VITRINE_S3_ENDPOINT_URL": "127.0.0.1:8333"},
            "VITRINE_S3_ENDPOINT_URL must be an http(s) URL; got '127.0.0.1:8333'",
        ),
        (
            {"VITRINE_S3_BUCKET": "b", "VITRINE_S3_ADDRESSING_STYLE": "sideways"},
            "VITRINE_S3_ADDRESSING_STYLE must be one of auto, path, virtual; got 'sideways'",
        ),
    ],
)
def test_bad_s3_settings_fail_at_start_up(env, message):
    with pytest.raises(ImproperlyConfigured) as caught:
        s3_storage_options(environ=env)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("env", "style", "location"),
    [
        ({"VITRINE_S3_BUCKET": "b", "VITRINE_S3_ENDPOINT_URL": "http://s3:9000"}, "path", ""),
        ({"VITRINE_S3_BUCKET": "b", "VITRINE_S3_PREFIX": "/uploads/"}, "auto", "uploads"),
    ],
)
def test_s3_settings(env, style, location):
    options = s3_storage_options(environ=env)["OPTIONS"]
    assert options["client_config"].s3 == {"addressing_style": style}
    assert (options["bucket_name"], options["location"]) == ("b", location)
    assert options["default_acl"] is None and options["querystring_auth"] is False


def test_the_try_page_streams_the_upload_from_s3_to_its_owner(client, s3_storage):
    card = factories.card()
    factories.route(card=card)
    response = client.post(f"/models/{card.model_id}/try", {"image": _upload()})
    job = Job.objects.get()
    assert response.status_code == 302
    url = reverse("playground:job_image", args=[job.pk])
    image = client.get(url)
    assert image.status_code == 200 and image["Content-Type"] == "image/jpeg"
    assert b"".join(image.streaming_content) == jpeg()
    upload_delete(job.image_name)
    assert client.get(url).status_code == 404


def _upload():
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("photo.jpg", jpeg(), content_type="image/jpeg")


# --- a real worker reading from S3 ----------------------------------------------------------
def _tiny_card(runtime_checkpoint):
    return factories.card(checkpoint_local_dir=str(runtime_checkpoint("yolos_tiny")))


def _finished(job):
    def check():
        job.refresh_from_db()
        return job.is_final

    return check


def test_a_worker_reads_the_upload_from_s3_not_its_own_disk(
    start_worker, s3_storage, settings, tmp_path, runtime_checkpoint
):
    # The worker's local job storage is an empty directory: only S3 has the image.
    worker = start_worker(
        env_extra={**s3_storage.env, "VITRINE_JOB_STORAGE": str(tmp_path / "worker-disk")}
    )
    job = services.job_create(card=_tiny_card(runtime_checkpoint), image_bytes=jpeg())
    wait_for(_finished(job), timeout=180, message=f"job not finished:\n{worker.output()}")
    assert (job.status, job.error_code) == ("succeeded", ""), worker.output()
    assert isinstance(job.result, list)
    assert not (tmp_path / "worker-disk").exists() or not any((tmp_path / "worker-disk").iterdir())


def test_a_deleted_upload_fails_the_job_as_image_missing(
    start_worker, s3_storage, runtime_checkpoint
):
    worker = start_worker(env_extra=s3_storage.env)
    job = services.job_create(card=_tiny_card(runtime_checkpoint), image_bytes=jpeg())
    upload_delete(job.image_name)  # gone before a worker got to it (a race with retention)
    wait_for(_finished(job), timeout=180, message=f"job not finished:\n{worker.output()}")
    assert (job.status, job.error_code) == ("failed", "image_missing")


def test_a_storage_outage_is_retried_then_fails_the_job_cleanly(
    start_worker, s3_storage, settings, runtime_checkpoint
):
    settings.VITRINE_JOB_MAX_ATTEMPTS = 2
    # The worker holds the wrong secret: S3 refuses every read, as in an outage; one that
    # outlasts VITRINE_QUEUE_TIMEOUT (1 s here) uses the job's attempts, then fails it.
    env = {**s3_storage.env, "AWS_SECRET_ACCESS_KEY": "wrong", "VITRINE_QUEUE_TIMEOUT": "1"}
    worker = start_worker(env_extra=env)
    job = services.job_create(card=_tiny_card(runtime_checkpoint), image_bytes=jpeg())
    wait_for(_finished(job), timeout=180, message=f"job not finished:\n{worker.output()}")
    assert (job.status, job.error_code) == ("failed", "storage_unavailable")
    assert job.attempts == job.max_attempts >= 2
    outcomes = list(job.attempt_log.values_list("outcome", flat=True))
    assert outcomes == ["retry"] * (job.attempts - 1) + ["failed"]
    assert worker.proc.poll() is None  # the worker is still up


def test_a_storage_outage_longer_than_the_jobs_attempts_waits_for_the_storage(
    start_worker, s3_storage, settings, runtime_checkpoint
):
    # A job's attempts saw it through an S3 outage only as long as they lasted, then failed
    # it: the storage away is no fault of the job's, and it now waits for it (up to
    # VITRINE_QUEUE_TIMEOUT from its creation, as a job no worker took). One attempt
    # allowed, so the outage outlasts them at the first retry (the second comes 5 s later;
    # with two allowed, the third came 20 s after that: session 45 cut the suite's time).
    settings.VITRINE_JOB_MAX_ATTEMPTS = 1
    gate = TcpGate(("127.0.0.1", s3_storage.server.port))  # shut: S3 is down for the worker
    env = {**s3_storage.env, "VITRINE_S3_ENDPOINT_URL": f"http://127.0.0.1:{gate.port}"}
    worker = start_worker(env_extra=env)
    job = services.job_create(card=_tiny_card(runtime_checkpoint), image_bytes=jpeg())
    retries = job.attempt_log.filter(outcome="retry")
    wait_for(
        lambda: retries.exists() or Job.objects.get(pk=job.pk).is_final,
        timeout=180, message=worker.output(),
    )  # fmt: skip
    assert not Job.objects.get(pk=job.pk).is_final, "failed while the storage was away"
    gate.open.set()  # the storage is back
    wait_for(_finished(job), timeout=180, message=f"job not finished:\n{worker.output()}")
    gate.close()
    assert (job.status, job.error_code) == ("succeeded", ""), worker.output()
    outcomes = list(job.attempt_log.values_list("outcome", flat=True))
    assert outcomes[-1] == "succeeded" and set(outcomes[:-1]) == {"retry"} and len(outcomes) >= 2


def test_a_storage_outage_on_upload_is_a_503_in_the_error_shape_and_costs_nothing(
    client, s3_storage, settings
):
    from billing.models import Charge
    from billing.services.keys import api_key_create
    from billing.services.ledger import wallet_for
    from billing.services.topups import credit_grant
    from playground.storage import STORAGE_DOWN

    env = {**s3_storage.env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    settings.STORAGES = {**settings.STORAGES, "jobs": s3_storage_options(environ=env)}
    user = factories.user()
    credit_grant(user=user, amount=Decimal("1.00"), reason="test")
    _key, secret = api_key_create(user=user, name="outage")
    card = factories.card()
    factories.route(card=card)

    response = client.post(
        f"/v1/inference/{card.model_id}",
        data=jpeg(),
        content_type="image/jpeg",
        headers={"Authorization": f"Bearer {secret}"},
    )

    assert (response.status_code, response["Retry-After"]) == (503, "5")
    assert response.json()["error"]["message"] == STORAGE_DOWN
    assert response.json()["error"]["code"] == "storage_unavailable"
    assert response.json()["error"]["type"] == "service_unavailable"
    assert not Job.objects.exists() and not Charge.objects.exists()
    assert wallet_for(user).balance == Decimal("1.00")
    page = client.post(
        f"/models/{card.model_id}/try", {"image": _upload()}, headers={"Accept": "application/json"}
    )
    assert page.status_code == 503 and page.json()["error"]["code"] == "storage_unavailable"
    assert page["Retry-After"] == "5"


def test_a_job_failed_by_the_storage_is_a_retryable_503_not_a_500():
    from playground.failures import job_failure

    status, error_type, message = job_failure("storage_unavailable", "S3: connection refused")
    assert (status, error_type) == (503, "service_unavailable")
    assert "nothing was charged" in message and "S3" not in message  # no internals


def test_a_transient_errors_retries_back_off():
    from playground.tasks import retry_delay

    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [5, 20, 60, 60]
