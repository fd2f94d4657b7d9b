"""A drop-in call (Cloudflare's, Hugging Face's: no 202 to answer with) whose database goes
away after its job was made: at its wait's bound it cannot cancel the job in the database,
so it gives the job up in Redis and answers 503 "nothing is charged"; the worker that runs
the job once the database is back ends it cancelled, unbilled. It used to answer 503 and
then charge the job when it ran: a client that retried (as told) paid twice.

The outage: PostgreSQL refuses connections (ALLOW_CONNECTIONS false) and the call's
sessions are ended, as a restart does (tests/playground/test_database_away_pg.py)."""

from __future__ import annotations

import threading
from decimal import Decimal
from uuid import UUID

import pytest
import redis
from django.db import connection
from django.test import Client

from billing.models import Charge
from billing.services.keys import api_key_create
from billing.services.ledger import wallet_for
from billing.services.topups import credit_grant
from playground import events
from playground.models import Job, JobAttempt, JobStatus
from tests import factories
from tests.conftest import wait_for
from tests.playground.test_database_away_pg import answered_through_an_outage
from tests.playground.test_serving_faults import photo


@pytest.fixture
def fates(broker_url, settings):
    """The job-signal Redis the web and the worker share; each test's keys are its own jobs'."""
    from config.settings.env import redis_client_url

    settings.VITRINE_REDIS_URL = redis_client_url(broker_url)
    events._local.__dict__.clear()  # the client for this URL
    return redis.Redis.from_url(settings.VITRINE_REDIS_URL)


def test_the_first_to_write_a_jobs_fate_decides(fates):
    """The call gives up a job no worker is finishing; a worker finishing a job the call
    gave up learns it; a job a worker marked finishing is not given up."""
    given = "00000000-0000-4000-8000-00000000aa01"
    finishing = "00000000-0000-4000-8000-00000000aa02"
    fates.delete(*(events.FATE.format(job_id=job_id) for job_id in (given, finishing)))

    assert events.job_give_up(given) is True
    assert events.job_give_up(given) is True  # said again (a second bound): still given up
    assert events.jobs_given_up([given, finishing]) == {given}
    assert events.job_give_up(finishing) is False  # a worker has it: the call waits on
    assert fates.get(events.FATE.format(job_id=given)) == events.GIVEN_UP
    assert fates.ttl(events.FATE.format(job_id=finishing)) > 0  # kept only while a call waits


def test_with_no_redis_a_job_cannot_be_given_up(settings):
    settings.VITRINE_REDIS_URL = ""
    assert events.job_give_up("00000000-0000-4000-8000-00000000aa03") is None
    assert events.jobs_given_up(["00000000-0000-4000-8000-00000000aa03"]) == set()


def _paid_card(runtime_checkpoint, user):
    card = factories.card(
        organisation=factories.organisation(slug="facebook"),
        checkpoint_local_dir=str(runtime_checkpoint("yolos_tiny")),
    )
    factories.route(card=card, price=Decimal("0.0002"))
    credit_grant(user=user, amount=Decimal("1.00"), reason="test")
    _, key = api_key_create(user=user, name="outage")
    return card, key


PATHS = {"cloudflare": "/client/v4/accounts/a/ai/run/@cf/{}", "hf": "/hf/models/{}"}


def _call(card, key: str, flavour: str = "cloudflare", **headers):
    return Client().post(
        PATHS[flavour].format(card.model_id), data=photo(), content_type="image/jpeg",
        headers={"Authorization": f"Bearer {key}", **headers},
    )  # fmt: skip


def _call_through_an_outage(card, key: str, flavour: str = "cloudflare", **headers):
    """The call, its database away from just after its job was made."""
    return answered_through_an_outage(lambda: _call(card, key, flavour, **headers))


on_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="an outage")


@pytest.mark.worker
@on_postgresql
def test_a_cloudflare_call_whose_database_goes_away_is_not_charged_for_its_job(
    start_worker, fates, runtime_checkpoint, settings, tmp_path, other_user
):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_HF_WAIT = 2  # no worker runs yet: the bound passes with the database away
    settings.VITRINE_MODEL_LOAD_ESTIMATE = 0
    card, key = _paid_card(runtime_checkpoint, other_user)

    response = _call_through_an_outage(card, key)

    assert response.status_code == 503, response.content
    assert response["X-Vitrine-Error-Code"] == "database_unavailable"
    assert response["X-Vitrine-Cost"] == "0"
    body = response.json()
    assert body["success"] is False and "nothing is charged" in body["errors"][0]["message"]
    job_id = response["X-Vitrine-Job-Id"]
    assert fates.get(events.FATE.format(job_id=job_id)) == events.GIVEN_UP

    # The database is back and a worker takes the job: it runs, and ends cancelled, unbilled.
    worker = start_worker(env_extra={"VITRINE_HF_WAIT": "2"})
    job = wait_for(
        lambda: Job.objects.filter(pk=job_id, status__in=Job.FINAL).first(),
        timeout=300,
        message=f"the job did not end: {worker.output()}",
    )
    assert (job.status, job.error_code) == (JobStatus.CANCELLED, "call_given_up")
    assert Charge.objects.get(job_id=job_id).status == "voided"
    assert wallet_for(other_user).balance == Decimal("1.00")
    assert list(job.attempt_log.values_list("outcome", flat=True)) == [JobAttempt.Outcome.CANCELLED]
    # Its resource tells the caller why, on Vitrine's own API.
    polled = Client().get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"})
    assert polled.json()["error"]["code"] == "call_given_up", polled.content


@pytest.mark.worker
@on_postgresql
def test_the_retry_with_the_same_idempotency_key_runs_anew_and_pays_once(
    start_worker, fates, runtime_checkpoint, settings, tmp_path, other_user
):
    """The key's job was given up: the retry does not wait for it (it would end cancelled)
    but cancels it, still queued, and runs the call anew. Hugging Face's flavour: its
    ``x-wait-for-model: true`` lets the retry wait for the worker started beside it."""
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_HF_WAIT = 2
    settings.VITRINE_HF_WAIT_FOR_MODEL = 300
    settings.VITRINE_MODEL_LOAD_ESTIMATE = 0
    card, key = _paid_card(runtime_checkpoint, other_user)
    first = _call_through_an_outage(card, key, "hf", **{"Idempotency-Key": "retry-me"})
    assert first.status_code == 503, first.content
    assert "nothing is charged" in first.json()["error"]
    given_up = first["X-Vitrine-Job-Id"]

    answered = {}
    headers = {"Idempotency-Key": "retry-me", "x-wait-for-model": "true"}
    thread = threading.Thread(
        target=lambda: answered.update(response=_call(card, key, "hf", **headers))
    )
    thread.start()
    # Before any worker runs: the retry made its own job (it did not take the given-up one).
    wait_for(lambda: Job.objects.count() == 2, timeout=60, message="the retry made no job")
    assert Job.objects.get(pk=given_up).status == JobStatus.CANCELLED
    worker = start_worker(env_extra={"VITRINE_HF_WAIT": "2"})
    thread.join(timeout=300)
    retry = answered["response"]

    assert retry.status_code == 200, (retry.content, worker.output())
    assert retry["X-Vitrine-Job-Id"] != given_up and retry["X-Vitrine-Cost"] == "0.0002"
    assert Job.objects.get(pk=given_up).status == JobStatus.CANCELLED
    statuses = dict(Charge.objects.values_list("job_id", "status"))
    assert statuses == {UUID(given_up): "voided", UUID(retry["X-Vitrine-Job-Id"]): "posted"}
    assert wallet_for(other_user).balance == Decimal("0.9998")
