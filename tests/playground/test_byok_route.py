"""BYOK: a call on a provider route runs there with the user's key, free of our fee."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from unittest import mock

import pytest
from PIL import Image

from billing.models import Charge
from billing.services.keys import api_key_create, provider_key_save
from billing.services.ledger import wallet_for
from playground.models import Job
from playground.tasks import run_detection
from tests import factories

pytestmark = pytest.mark.django_db
ACCOUNT = "0123456789abcdef0123456789abcdef"  # a Cloudflare account id: 32 hex digits


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (10, 200, 90)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def byok_call(client, other_user, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card(display_name="DETR ResNet-50")
    factories.route(card=card, price=Decimal("0.0002"))
    factories.route(
        card=card, slug="cloudflare", provider="Cloudflare Workers AI", is_own=False,
        unit="request", price=Decimal("0.0000075"), byok_available=True,
        provider_model_id="@cf/facebook/detr-resnet-50", schema_flavour="cloudflare-workers-ai",
    )  # fmt: skip
    provider_key_save(user=other_user, provider="cloudflare", secret=f"{ACCOUNT}:cf-token-9876")
    _, key = api_key_create(user=other_user, name="byok")
    with django_capture_on_commit_callbacks():  # run the task below, in this process
        response = client.post(
            f"/v1/inference/{card.model_id}?route=cloudflare", data=jpeg(),
            content_type="image/jpeg",
            headers={"Authorization": f"Bearer {key}", "Prefer": "respond-async"},
        )  # fmt: skip
    return response


def box(xmin, ymin, xmax, ymax) -> dict:
    return {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}


def cloudflare_answer(payload: dict):
    response = mock.MagicMock()
    response.read.return_value = json.dumps(payload).encode()
    response.__enter__.return_value = response
    return response


def test_a_byok_call_is_free_even_with_an_empty_wallet(byok_call, other_user):
    assert byok_call.status_code == 202, byok_call.content
    job = byok_call.json()
    assert (job["cost"], job["would_be_cost"], job["byok"]) == ("0", "0.0000075", True)
    assert byok_call["X-Vitrine-Byok"] == "true"
    assert wallet_for(other_user).balance == 0


def test_the_provider_runs_it_with_the_users_key_and_nothing_is_charged(byok_call, other_user):
    job_id = byok_call.json()["id"]
    answer = {
        "success": True,
        "result": [
            {"score": 0.31, "label": "cat", "box": box(10.7, 5, 900, 50)},
            {"score": 0.97, "label": "remote", "box": box(40.2, 70.9, 175.5, 117)},
            {"score": 0.01, "label": "couch", "box": box(0, 0, 1, 1)},
        ],
    }  # fmt: skip
    with mock.patch(
        "playground.providers.urlopen", autospec=True, return_value=cloudflare_answer(answer)
    ) as urlopen:
        run_detection(job_id)

    sent = urlopen.call_args.args[0]
    assert sent.full_url == (
        f"https://api.cloudflare.com/client/v4/accounts/{ACCOUNT}/ai/run/@cf/facebook/detr-resnet-50"
    )
    assert sent.get_header("Authorization") == "Bearer cf-token-9876"
    assert sent.data[:2] == b"\xff\xd8"  # the uploaded JPEG itself
    job = Job.objects.get(pk=job_id)
    assert job.status == "succeeded"
    assert job.result == [
        {"label": "remote", "score": 0.97, "box": box(40, 70, 175, 117)},
        {"label": "cat", "score": 0.31, "box": box(10, 5, 640, 50)},
    ]  # fmt: skip
    charge = Charge.objects.get(job_id=job_id)
    assert (charge.status, charge.amount, charge.byok) == ("posted", 0, True)
    assert wallet_for(other_user).balance == 0


def test_a_refused_provider_key_fails_the_job(byok_call):
    from urllib.error import HTTPError

    job_id = byok_call.json()["id"]
    refused = HTTPError("https://api.cloudflare.com", 403, "Forbidden", {}, None)
    with mock.patch("playground.providers.urlopen", autospec=True, side_effect=refused):
        run_detection(job_id)
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.error_code) == ("failed", "provider_auth_failed")
    assert Charge.objects.get(job_id=job_id).status == "voided"


def test_a_job_its_call_gave_up_is_not_sent_to_the_provider(byok_call, broker_url, settings):
    """The call met its bound with the database away and gave the job up (events.FATE): the
    worker ends it cancelled without paying the provider with the user's key."""
    import redis

    from config.settings.env import redis_client_url
    from playground import events

    settings.VITRINE_REDIS_URL = redis_client_url(broker_url)
    job_id = byok_call.json()["id"]
    Job.objects.filter(pk=job_id).update(
        created_at=Job.objects.get(pk=job_id).created_at.replace(year=2020)
    )
    redis.Redis.from_url(settings.VITRINE_REDIS_URL).delete(events.FATE.format(job_id=job_id))
    assert events.job_give_up(job_id) is True
    with mock.patch("playground.providers.urlopen", autospec=True) as urlopen:
        run_detection(job_id)
    urlopen.assert_not_called()
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.error_code) == ("cancelled", "call_given_up")
    assert Charge.objects.get(job_id=job_id).status == "voided"
