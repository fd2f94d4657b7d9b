"""A paid call's job message leaves before its transaction commits, and a worker's claim
waits for that commit (PostgreSQL, a real broker, each side on its own connection).

The call's transaction takes the job's hold (an advisory lock on its id) with its first
statements and sends the message before storing the image and writing the row; the claim
takes the hold before its update, so it runs once the call committed (and claims the job)
or rolled back (and finds nothing). Waiting is observed in ``pg_locks``, never timed.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from decimal import Decimal

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.test import Client
from PIL import Image

from billing.models import Charge
from billing.services.charges import charge_reserve
from billing.services.keys import api_key_create
from billing.services.topups import credit_grant
from config.settings.env import redis_client_url
from playground import limits, services
from playground.models import Job, JobAttempt, JobStatus
from playground.tasks import run_detection
from tests import factories
from tests.conftest import _reset_producer_pool

LIMIT_S = 30  # how long a step may take before the test gives up (never reached)


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 90)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def broker(transactional_db, broker_url, settings, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the hold is PostgreSQL's advisory lock (set DATABASE_URL)")
    from config.celery import app

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    previous = app.conf.broker_url
    _reset_producer_pool(app)
    app.conf.broker_url = settings.CELERY_BROKER_URL = broker_url
    client = redis.Redis.from_url(redis_client_url(broker_url))  # the embedded one too
    client.delete(django_settings.VITRINE_INFERENCE_QUEUE)
    try:
        yield client
    finally:
        client.delete(django_settings.VITRINE_INFERENCE_QUEUE)
        app.conf.broker_url = previous
        _reset_producer_pool(app)


def queued_job_ids(client) -> list[str]:
    """The job ids of the messages waiting in the inference queue, oldest first."""
    raw = client.lrange(django_settings.VITRINE_INFERENCE_QUEUE, 0, -1)
    return [json.loads(m)["headers"]["argsrepr"].strip("(),'") for m in reversed(raw)]


@pytest.fixture
def paying(broker):
    card = factories.card()
    route = factories.route(card=card, price=Decimal("0.0002"))
    user = factories.user()
    credit_grant(user=user, amount=Decimal("1.00"), reason="test")
    return card, route, user


class Call(threading.Thread):
    """What ``pipeline.job_submit`` does in its transaction, paused after the row is
    written and before the commit until ``finish`` is set (then commits, or rolls back)."""

    def __init__(self, card, route, user, *, commit: bool = True) -> None:
        super().__init__()
        self.card, self.route, self.user, self.commit = card, route, user, commit
        self.job_id = uuid.uuid4()
        self.written, self.finish = threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            assert services.sends_before_commit()
            with transaction.atomic():
                limits.inflight_jobs_check(user=self.user, hold=self.job_id)
                services.job_create(
                    card=self.card, route=self.route, image_bytes=jpeg(), owner=self.user,
                    job_id=self.job_id, send_now=True,
                    reserve=lambda job_id: charge_reserve(
                        job_id=job_id, user=self.user, card=self.card, route=self.route
                    ).pk,
                )  # fmt: skip
                self.written.set()
                assert self.finish.wait(LIMIT_S)
                if not self.commit:
                    raise RuntimeError("the call fails before its commit")
        except RuntimeError:
            pass
        except BaseException as exc:
            self.error = exc
        finally:
            self.written.set()
            connection.close()


class Claim(threading.Thread):
    """A worker's claim of ``job_id``, on its own connection."""

    def __init__(self, job_id) -> None:
        super().__init__()
        self.job_id = job_id
        self.result: Job | BaseException | None = None

    def run(self) -> None:
        try:
            self.result = services.job_claim(job_id=self.job_id, worker="host:1")
        except BaseException as exc:
            self.result = exc
        finally:
            connection.close()


def waiting_for_a_hold() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        return cursor.fetchone()[0]


def until(check, what: str) -> None:
    deadline = time.monotonic() + LIMIT_S
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def started(call: Call) -> Call:
    call.start()
    assert call.written.wait(LIMIT_S)
    assert call.error is None, call.error
    return call


def test_the_message_leaves_before_the_commit_and_the_claim_waits_for_it(broker, paying):
    call = started(Call(*paying))
    # Sent, while the row is not committed: nobody else can see the job yet.
    assert queued_job_ids(broker) == [str(call.job_id)]
    assert not Job.objects.filter(pk=call.job_id).exists()
    claim = Claim(call.job_id)
    claim.start()
    until(lambda: waiting_for_a_hold() == 1, "the claim never waited for the call's hold")
    assert claim.is_alive()
    call.finish.set()
    call.join(LIMIT_S)
    claim.join(LIMIT_S)
    assert call.error is None, call.error
    job = claim.result
    assert isinstance(job, Job) and job.pk == call.job_id, job
    assert (job.status, job.attempts, job.worker) == (JobStatus.RUNNING, 1, "host:1")
    row = Job.objects.get(pk=call.job_id)
    assert row.status == JobStatus.RUNNING and row.enqueued_at is not None
    assert Charge.objects.get(job_id=call.job_id).status == Charge.Status.RESERVED


def test_a_call_that_rolls_back_leaves_its_message_nothing_to_claim(broker, paying):
    call = started(Call(*paying, commit=False))
    assert queued_job_ids(broker) == [str(call.job_id)]
    claim = Claim(call.job_id)
    claim.start()
    until(lambda: waiting_for_a_hold() == 1, "the claim never waited for the call's hold")
    call.finish.set()
    call.join(LIMIT_S)
    claim.join(LIMIT_S)
    assert call.error is None, call.error
    assert claim.result is None  # the message is dropped: there is no job, nothing is owed
    assert not Job.objects.filter(pk=call.job_id).exists()
    assert not JobAttempt.objects.exists() and not Charge.objects.exists()


def test_a_claim_held_past_its_wait_sends_the_message_again(broker, paying, monkeypatch):
    monkeypatch.setattr(services, "HOLD_WAIT", "50ms")
    call = started(Call(*paying))
    try:
        with pytest.raises(services.JobHeld):
            services.job_claim(job_id=call.job_id, worker="host:1")
        # The task's own answer to it: its message again, for later (an ETA), and nothing
        # written. (Task.apply runs the task here, with a real broker and database.)
        run_detection.apply(args=(str(call.job_id),))
        assert queued_job_ids(broker) == [str(call.job_id)] * 2
        again = json.loads(broker.lindex(django_settings.VITRINE_INFERENCE_QUEUE, 0))
        assert again["headers"]["eta"] is not None
    finally:
        call.finish.set()
        call.join(LIMIT_S)
    assert call.error is None, call.error
    monkeypatch.setattr(services, "HOLD_WAIT", "10s")
    job = services.job_claim(job_id=call.job_id, worker="host:1")
    assert job is not None and job.attempts == 1  # committed meanwhile: claimed once


def test_a_refused_call_sends_nothing(broker, paying):
    card, _, user = paying
    _, key = api_key_create(user=factories.user(), name="empty")  # a wallet with nothing
    headers = {"Authorization": f"Bearer {key}", "Prefer": "respond-async"}
    url = f"/v1/inference/{card.model_id}"
    refused = Client().post(url, data=jpeg(), content_type="image/jpeg", headers=headers)
    assert refused.status_code == 402, refused.content
    broken = Client().post(url, data=b"not an image", content_type="image/jpeg", headers=headers)
    assert broken.status_code == 415, broken.content
    assert queued_job_ids(broker) == [] and not Job.objects.exists()
    # And an accepted one, through the API: its message, its row, its reservation.
    _, key = api_key_create(user=user, name="paid")
    headers["Authorization"] = f"Bearer {key}"
    accepted = Client().post(url, data=jpeg(), content_type="image/jpeg", headers=headers)
    assert accepted.status_code == 202, accepted.content
    job = Job.objects.get()
    assert queued_job_ids(broker) == [str(job.pk)] and job.enqueued_at is not None
    assert job.status == JobStatus.QUEUED and Charge.objects.get(job_id=job.pk).status == "reserved"
