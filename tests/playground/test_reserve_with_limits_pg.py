"""A paid call's reservation rides in the round trip of its in-flight check (PostgreSQL, a
real broker, Django's test client; no worker runs).

The call locks its user, takes its job's hold, counts the jobs in flight and reserves the
price in one round trip; what the reservation answered is read only once the image passed
its checks. So a call refused for any reason (429 in flight, 400 image, 402 wallet) leaves
exactly what it left when the reservation was a round trip of its own: no charge, no
ledger movement, the wallet as it was; and the errors keep their order (a bad image is a
400 even from an empty wallet).
"""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from PIL import Image

from billing.models import AccountKind, Charge, LedgerAccount, LedgerTransaction
from billing.services.keys import api_key_create
from playground import limits
from playground.models import Job
from tests import factories
from tests.playground import test_send_before_commit_pg as held
from tests.playground.test_send_before_commit_pg import jpeg

# That module's fixtures: a real broker, a card with a price (0.0002) and a user with 1.00.
broker, paying = held.broker, held.paying
PRICE = Decimal("0.0002")


def post(card, key: str, body: bytes, **headers):
    return Client().post(
        f"/v1/inference/{card.model_id}",
        data=body,
        content_type="image/jpeg",
        headers={"Authorization": f"Bearer {key}", "Prefer": "respond-async", **headers},
    )


def truncated_jpeg() -> bytes:
    """A JPEG's first half: sniffed as a JPEG, refused by the image check (400)."""
    buffer = io.BytesIO()
    Image.effect_noise((400, 300), 64).convert("RGB").save(buffer, format="JPEG")
    data = buffer.getvalue()
    return data[: len(data) // 2]


def wallet(user) -> Decimal:
    return Decimal(LedgerAccount.objects.get(user=user, kind=AccountKind.WALLET).balance)


def reservations(user) -> int:
    return (
        LedgerTransaction.objects.filter(
            kind=LedgerTransaction.Kind.RESERVE, entries__account__user=user
        )
        .distinct()
        .count()
    )


@pytest.fixture
def pipelines(monkeypatch):
    """The statements of each ``prepared_pipeline`` round trip the in-flight check sends."""
    sent = []
    real = limits.prepared_pipeline

    def recording(statements):
        sent.append([sql for sql, _ in statements])
        return real(statements)

    monkeypatch.setattr(limits, "prepared_pipeline", recording)
    return sent


def test_the_reservation_is_sent_with_the_in_flight_check(paying, pipelines):
    card, _, user = paying
    _, key = api_key_create(user=user, name="ci")
    with CaptureQueriesContext(connection) as queries:
        response = post(card, key, jpeg())
    assert response.status_code == 202, response.content
    [statements] = pipelines
    assert "FOR UPDATE" in statements[0]  # the user row
    assert "pg_advisory_xact_lock" in statements[1]  # the job's hold
    assert "vitrine_charge_reserve" in statements[-1]  # after the count
    # ... and not again on its own.
    assert sum("vitrine_charge_reserve" in q["sql"] for q in queries) == 1
    job = Job.objects.get(pk=response.json()["id"])
    charge = Charge.objects.get(job_id=job.pk)
    assert job.cost_ref == str(charge.pk) and charge.status == Charge.Status.RESERVED
    assert charge.amount == PRICE and wallet(user) == Decimal("1.00") - PRICE


def test_a_call_over_the_in_flight_limit_reserves_nothing(paying, settings, pipelines):
    card, _, user = paying
    settings.VITRINE_MAX_INFLIGHT_JOBS = 1
    _, key = api_key_create(user=user, name="ci")
    assert post(card, key, jpeg()).status_code == 202
    refused = post(card, key, jpeg())
    assert refused.status_code == 429, refused.content
    assert refused.json()["error"]["code"] == "too_many_inflight_jobs"
    # Its reservation ran in the same round trip as the count, and was undone with it.
    assert all("vitrine_charge_reserve" in statements[-1] for statements in pipelines)
    assert len(pipelines) == 2
    assert Charge.objects.filter(user=user).count() == 1 and reservations(user) == 1
    assert wallet(user) == Decimal("1.00") - PRICE and Job.objects.count() == 1


def test_a_refused_image_reserves_nothing(paying, pipelines):
    card, _, user = paying
    _, key = api_key_create(user=user, name="ci")
    refused = post(card, key, truncated_jpeg())
    assert refused.status_code == 400, refused.content
    assert not Charge.objects.exists() and reservations(user) == 0
    assert wallet(user) == Decimal("1.00") and not Job.objects.exists()


def test_an_empty_wallet_is_402_and_a_bad_image_from_it_still_400(broker, pipelines):
    card = factories.card()
    factories.route(card=card, price=PRICE)
    user = factories.user()
    _, key = api_key_create(user=user, name="ci")
    empty = post(card, key, jpeg())
    assert empty.status_code == 402, empty.content
    assert empty.json()["error"]["type"] == "insufficient_credits"
    bad = post(card, key, truncated_jpeg())
    assert bad.status_code == 400, bad.content  # the image is checked before the money
    assert not Charge.objects.exists() and not Job.objects.exists()
    assert len(pipelines) == 2  # both reservations were sent with their checks
