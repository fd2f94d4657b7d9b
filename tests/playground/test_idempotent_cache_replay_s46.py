"""A replayed Idempotency-Key whose call was a cache hit (session 46's money probe).

A Hugging Face call that hit the result cache answers ``X-Vitrine-Cache: hit`` and
``X-Vitrine-Cost: 0``: it ran and charged nothing. Sent again with the same key, its
replay answered the job's own cost (the call that ran it paid that) and ``miss``: nothing
more was charged, but a client adding up ``X-Vitrine-Cost`` over its retries counted money
never spent, and the README promises a replay the same answer.

The cached job is one that ran and succeeded (as a worker leaves it), in process.
"""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from PIL import Image

from billing.services.keys import api_key_create
from billing.services.ledger import wallet_for
from billing.services.topups import credit_grant
from playground import pipeline
from playground.models import CachedCall, Job
from tests import factories
from tests.playground.test_flavour_errors import succeeded_job

pytestmark = pytest.mark.django_db
PRICE = Decimal("0.0002")


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (200, 40, 120)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_the_replay_of_a_cache_hit_answers_as_the_hit_did(client, settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card()
    factories.route(card=card, price=PRICE)
    user = factories.user()
    credit_grant(user=user, amount=Decimal("1"), reason="test")
    _, key = api_key_create(user=user, name="replay")
    image = jpeg()
    ran = succeeded_job(card, user, image)  # an identical call's job, ended
    CachedCall.objects.create(
        owner=user, job=ran,
        fingerprint=pipeline.cache_fingerprint(
            card=card, route=card.routes.get(), sha256=pipeline.image_sha256(image),
            threshold=0.5,
        ),
    )  # fmt: skip

    def call(idempotency_key: str):
        return client.post(
            f"/hf/models/{card.model_id}",
            data=image,
            content_type="image/jpeg",
            headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key},
        )

    hit = call("second")
    assert hit.status_code == 200, hit.content
    assert (hit["X-Vitrine-Cache"], hit["X-Vitrine-Cost"]) == ("hit", "0")
    assert "Idempotent-Replayed" not in hit
    replay = call("second")
    assert replay.status_code == 200, replay.content
    assert replay["Idempotent-Replayed"] == "true"
    assert (replay["X-Vitrine-Cache"], replay["X-Vitrine-Cost"]) == ("hit", "0")
    assert replay.json() == hit.json()
    assert Job.objects.count() == 1 and wallet_for(user).balance == Decimal("1")
