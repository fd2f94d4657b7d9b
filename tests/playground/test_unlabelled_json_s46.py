"""A JSON body sent without saying so (session 46's client probe).

huggingface_hub before 1.0 posts ``{"inputs": <base64>, "parameters": {...}}`` with no
Content-Type at all (its async client labels it ``application/octet-stream``); ``curl -d``
labels a body a form and ``fetch()`` with a string body ``text/plain``. Hugging Face's API
reads such a body as JSON; here each was taken as the image itself and answered 415
"Unsupported image format", so huggingface_hub 0.30 could not pass ``threshold=`` at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
from decimal import Decimal

import pytest

from billing.services.keys import api_key_create
from billing.services.topups import credit_grant
from playground.models import Job
from tests import factories
from tests.playground.test_flavour_errors import PRICE, code_of, jpeg, url

pytestmark = pytest.mark.django_db

UNLABELLED = ["", "application/octet-stream", "application/x-www-form-urlencoded", "text/plain"]


@pytest.fixture
def storage(settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"


@pytest.fixture
def card(db):
    card = factories.card()
    factories.route(card=card, price=PRICE)
    return card


@pytest.fixture
def funded(other_user):
    credit_grant(user=other_user, amount=Decimal("1.00"), reason="test")
    _, plaintext = api_key_create(user=other_user, name="ci")
    return {"auth": f"Bearer {plaintext}"}


def send(client, flavour, card, account, body: bytes, content_type: str, **headers):
    return client.generic(
        "POST",
        url(flavour, card.model_id),
        data=body,
        content_type=content_type,
        headers={"Authorization": account["auth"], **headers},
    )


@pytest.mark.parametrize("content_type", UNLABELLED)
@pytest.mark.parametrize("flavour", ["vitrine", "hf"])
def test_inputs_json_is_read_as_json_whatever_it_is_labelled(
    client, card, funded, storage, flavour, content_type
):
    """Its parameters are read: a threshold out of range is refused as one (was a 415)."""
    body = json.dumps(
        {"inputs": base64.b64encode(jpeg()).decode(), "parameters": {"threshold": 5}}
    ).encode()
    response = send(client, flavour, card, funded, body, content_type)
    assert response.status_code == 400, response.content
    assert code_of(flavour, response) == "invalid_threshold"
    assert Job.objects.count() == 0


@pytest.mark.parametrize("content_type", ["", "application/octet-stream"])
def test_huggingface_hub_0_30s_call_runs_with_its_threshold(
    client, card, funded, storage, settings, content_type
):
    """What huggingface_hub 0.30's ``object_detection(image, threshold=0.7)`` sends: the
    job is made from the base64 image, with the caller's threshold."""
    # No worker here: the (cold) model is waited for 1 s, then the job is cancelled.
    settings.VITRINE_HF_WAIT_FOR_MODEL = 1
    image = jpeg()
    body = json.dumps(
        {"inputs": base64.b64encode(image).decode(), "parameters": {"threshold": 0.7}}
    ).encode()
    response = send(client, "hf", card, funded, body, content_type, **{"x-wait-for-model": "true"})
    assert response.status_code == 503, response.content  # no worker: the wait ends
    job = Job.objects.get()
    assert job.parameters["threshold"] == 0.7
    assert job.image_sha256 == hashlib.sha256(image).hexdigest()


def test_cloudflare_json_unlabelled_is_read_as_json(client, card, funded, storage):
    response = send(client, "cloudflare", card, funded, b'{"image": []}', "")
    assert response.status_code == 400, response.content
    assert code_of("cloudflare", response) == "invalid_image_array"  # was a 415


def test_a_body_labelled_as_an_image_is_taken_at_its_word(client, card, funded, storage):
    body = json.dumps({"inputs": base64.b64encode(jpeg()).decode()}).encode()
    response = send(client, "hf", card, funded, body, "image/jpeg")
    assert response.status_code == 415, response.content
    assert code_of("hf", response) == "unsupported_format"
