"""Identical Hugging Face calls sent at once (session 46's client probe).

The README: with ``x-use-cache`` (Hugging Face's default) "an identical call still running
is waited for instead of run twice". Three identical calls sent at the same moment each
looked the cache up before any had made its job, and each ran and was charged (4 calls,
4 jobs, 4 charges in the probe). The calls of one account take its lock one after the
other; each now looks again once it holds it.

PostgreSQL only: the lock that orders the calls is a row lock (SQLite runs one writer at a
time anyway). The race is made certain, not hoped for: the test holds the account's row
itself until the three calls all wait for it, so all three have missed the first look.
"""

from __future__ import annotations

import io
import threading
from decimal import Decimal

import pytest
from django import db
from django.db import connection
from django.test import Client
from PIL import Image

from billing.models import Charge
from billing.services.keys import api_key_create
from billing.services.ledger import wallet_for
from billing.services.topups import credit_grant
from playground.models import Job
from tests import factories
from tests.conftest import wait_for

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="a row lock orders the calls"),
    pytest.mark.django_db(transaction=True),
]
PRICE = Decimal("0.0002")
CALLS = 3

# Sessions of this database waiting for a row lock (the calls queued behind the test's).
_WAITING_SQL = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'
"""


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (30, 140, 220)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_identical_calls_sent_at_once_run_once_and_pay_once(
    start_worker, runtime_checkpoint, settings, tmp_path
):
    import psycopg

    from tests.conftest import database_url

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card(checkpoint_local_dir=str(runtime_checkpoint("yolos_tiny")))
    factories.route(card=card, price=PRICE)
    user = factories.user()
    credit_grant(user=user, amount=Decimal("1"), reason="test")
    _, key = api_key_create(user=user, name="race")
    start_worker()
    image = jpeg()
    answers: list = []

    def call():
        try:
            answers.append(
                Client().post(
                    f"/hf/models/{card.model_id}",
                    data=image,
                    content_type="image/jpeg",
                    headers={"Authorization": f"Bearer {key}"},
                )
            )
        finally:
            db.connections.close_all()

    callers = [threading.Thread(target=call, daemon=True) for _ in range(CALLS)]
    with psycopg.connect(database_url(connection.settings_dict)) as holder:
        # The account's row, as a call's transaction takes it (limits.inflight_jobs_check).
        table = type(user)._meta.db_table
        holder.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", [user.pk])
        for caller in callers:
            caller.start()
        with connection.cursor() as cursor:

            def all_waiting() -> bool:
                cursor.execute(_WAITING_SQL)
                return cursor.fetchone()[0] >= CALLS

            wait_for(all_waiting, timeout=120, message="the calls never queued for the lock")
        holder.rollback()
    for caller in callers:
        caller.join(timeout=300)
    assert len(answers) == CALLS, "a call is still waiting"
    assert [answer.status_code for answer in answers] == [200] * CALLS, [
        answer.content for answer in answers
    ]
    assert sorted(answer["X-Vitrine-Cache"] for answer in answers) == ["hit", "hit", "miss"]
    assert len({answer["X-Vitrine-Job-Id"] for answer in answers}) == 1
    assert [answer.json() for answer in answers] == [answers[0].json()] * CALLS
    job = Job.objects.get()
    assert job.status == "succeeded"
    assert list(Charge.objects.values_list("job_id", "status")) == [(job.pk, "posted")]
    assert wallet_for(user).balance == Decimal("1") - PRICE
