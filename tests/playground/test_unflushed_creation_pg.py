"""A synchronous call's job is created by a transaction that commits without waiting for its
WAL fsync, and the call says nothing of a job that has not ended before it is durable
(PostgreSQL, a real broker, Django's test client; no worker runs, so the waits reach their
bound or are woken by a finished signal sent here).

The fsync itself cannot be observed without timing it: what is checked is the transaction's
own setting, which statements each call runs and in which order, and the answer when the
job's row is gone (as after a database crash within the unflushed moment).
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from billing.services.keys import api_key_create
from config.settings.env import redis_client_url
from playground import events, limits
from playground.models import Job
from tests.playground import test_send_before_commit_pg as held
from tests.playground.test_send_before_commit_pg import LIMIT_S, jpeg, until

# That module's fixtures: a real broker, a card with a price and a funded user.
broker, paying = held.broker, held.paying

FLUSH = "SET enqueued_at = enqueued_at"  # services.creation_flush's write
UNFLUSHED = "set_config('synchronous_commit', 'off', true)"
PATHS = {"vitrine": "/v1/inference/{model}", "hf": "/hf/models/{model}"}


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('synchronous_commit')")
        return cursor.fetchone()[0]


@pytest.fixture
def caller(paying, settings):
    card, _, user = paying
    _, plaintext = api_key_create(user=user, name="ci")

    def post(flavour: str = "vitrine", **headers):
        return Client().post(
            PATHS[flavour].format(model=card.model_id),
            data=jpeg(),
            content_type="image/jpeg",
            headers={"Authorization": f"Bearer {plaintext}", **headers},
        )

    return post


def test_the_unflushed_hold_turns_off_the_fsync_of_its_own_transaction_only(paying):
    _, _, user = paying
    default = synchronous_commit()
    assert default != "off"
    for flushed, inside in ((True, default), (False, "off")):
        with transaction.atomic():
            limits.inflight_jobs_check(user=user, hold=uuid.uuid4(), flushed=flushed)
            assert synchronous_commit() == inside
        assert synchronous_commit() == default  # the session's own setting is untouched


def test_a_sync_call_tells_of_a_job_not_ended_only_once_it_is_durable(caller, settings):
    settings.VITRINE_SYNC_WAIT = 0.5  # no worker runs: the wait reaches its bound
    with CaptureQueriesContext(connection) as queries:
        response = caller()
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued"
    sql = [q["sql"] for q in queries]
    (hold,) = [i for i, s in enumerate(sql) if "pg_advisory_xact_lock" in s]
    assert UNFLUSHED in sql[hold]  # the creation committed without its fsync
    (flush,) = [i for i, s in enumerate(sql) if FLUSH in s]
    assert flush > hold  # ... and was made durable before the 202 told of the job
    job_id = response.json()["id"]
    assert Job.objects.filter(pk=job_id).exists()


def test_an_async_call_is_durable_at_its_commit(caller, settings):
    settings.VITRINE_SYNC_WAIT = 0.5
    with CaptureQueriesContext(connection) as queries:
        response = caller(Prefer="respond-async")
    assert response.status_code == 202, response.content
    sql = [q["sql"] for q in queries]
    (hold,) = [s for s in sql if "pg_advisory_xact_lock" in s]
    assert UNFLUSHED not in hold  # told at once: its commit waits for the fsync
    assert not [s for s in sql if FLUSH in s]


@pytest.mark.parametrize("flavour", ["vitrine", "hf"])
def test_a_sync_call_whose_job_was_lost_is_answered_503_retry(
    caller, broker, broker_url, settings, flavour
):
    """The row gone while the call waits (a database crash before the job ended takes the
    unflushed creation with it): 503, retry, in the call's flavour; never a 500."""
    settings.VITRINE_REDIS_URL = redis_client_url(broker_url)
    settings.VITRINE_SYNC_WAIT = settings.VITRINE_HF_WAIT = LIMIT_S
    answered = {}

    def call() -> None:
        try:
            answered["response"] = caller(flavour)
        finally:
            connection.close()  # this thread's own

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    until(lambda: Job.objects.exists(), "the call never created its job")
    job = Job.objects.get()
    Job.objects.filter(pk=job.pk).delete()
    deadline = time.monotonic() + LIMIT_S
    while thread.is_alive():  # woken by the signal however early it subscribed
        assert time.monotonic() < deadline, "the call never answered"
        events.job_finished_publish(job.pk)
        thread.join(0.05)
    response = answered["response"]
    assert response.status_code == 503, response.content
    assert int(response["Retry-After"]) >= 1
    body = response.json()
    if flavour == "vitrine":
        assert (body["error"]["code"], body["error"]["type"]) == ("job_lost", "service_unavailable")
        assert body["error"]["job"] == str(job.pk)
    else:
        assert "Nothing was charged" in body["error"]
