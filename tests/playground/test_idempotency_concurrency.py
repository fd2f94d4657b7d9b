"""Concurrent calls with one Idempotency-Key create one job and one charge (PostgreSQL).

Threads post at once through Django's test client, each on its own database connection;
the unique (account, key) record makes the losers wait for the winner's commit and answer
with its job. Meaningful on PostgreSQL only (SQLite serialises every writer anyway).
"""

from __future__ import annotations

import io
import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from PIL import Image

from billing.models import Charge
from billing.services.keys import api_key_create
from billing.services.ledger import wallet_for
from billing.services.topups import credit_grant
from playground.models import IdempotencyRecord, Job
from tests import factories

PRICE = Decimal("0.0002")
THREADS = 6


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 90)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize("path", ["vitrine", "hf", "cloudflare"])
def test_concurrent_calls_with_one_key_make_one_job(
    start_worker, settings, tmp_path, other_user, path
):
    if connection.vendor != "postgresql":
        pytest.skip("a concurrency claim is proven on PostgreSQL (set DATABASE_URL)")
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_HF_WAIT = 1  # no worker runs: the HF calls answer 503 after 1 s
    settings.VITRINE_MODEL_LOAD_ESTIMATE = 0
    card = factories.card()
    factories.route(card=card, price=PRICE)
    credit_grant(user=other_user, amount=Decimal("1.00"), reason="test")
    _, key = api_key_create(user=other_user, name="race")
    url = {
        "vitrine": f"/v1/inference/{card.model_id}",
        "hf": f"/hf/models/{card.model_id}",
        "cloudflare": f"/client/v4/accounts/race/ai/run/@cf/{card.model_id}",
    }[path]
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "same-key"}
    if path == "vitrine":
        headers["Prefer"] = "respond-async"
    image = jpeg()
    barrier = threading.Barrier(THREADS)
    answers: list = [None] * THREADS

    def call(i: int) -> None:
        try:
            barrier.wait()
            response = Client().post(url, data=image, content_type="image/jpeg", headers=headers)
            answers[i] = (response.status_code, response.get("X-Vitrine-Job-Id"))
        finally:
            connection.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert Job.objects.count() == 1, answers
    job = Job.objects.get()
    assert {job_id for _, job_id in answers} == {str(job.pk)}, answers
    assert IdempotencyRecord.objects.get().job_id == job.pk
    assert Charge.objects.count() == 1
    if path == "vitrine":
        assert {status for status, _ in answers} == {202}
        assert wallet_for(other_user).balance == Decimal("1.00") - PRICE
    else:  # nobody ran it: the waits cancelled it and released the money
        assert {status for status, _ in answers} == {503}
        assert wallet_for(other_user).balance == Decimal("1.00")
