"""POST /v1/inference/<model>: auth, bad input, money, and the job it queues."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from decimal import Decimal

import pytest
from PIL import Image

from billing.models import Charge
from billing.services.keys import api_key_create, api_key_revoke
from billing.services.ledger import wallet_for
from billing.services.topups import credit_grant
from catalog.models import ModelCard, PriceRoute
from playground.models import Job
from tests import factories

pytestmark = pytest.mark.django_db
PRICE = Decimal("0.0002")


def jpeg(width=64, height=48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 90)).save(buffer, format="JPEG")
    return buffer.getvalue()


def png_bomb(width=100_000, height=100_000) -> bytes:
    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


@pytest.fixture
def storage(settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    return settings.VITRINE_JOB_STORAGE


@pytest.fixture
def card(db):
    card = factories.card(display_name="DETR ResNet-50")
    factories.route(card=card, price=PRICE)
    return card


@pytest.fixture
def account(other_user):
    key, plaintext = api_key_create(user=other_user, name="ci")
    return {"user": other_user, "key": key, "auth": f"Bearer {plaintext}"}


@pytest.fixture
def funded(account):
    credit_grant(user=account["user"], amount=Decimal("1.00"), reason="test")
    return account


def url(card) -> str:
    return f"/v1/inference/{card.model_id}"


def call(client, card, account, body=b"", content_type="image/jpeg", **headers):
    return client.post(
        url(card),
        data=body,
        content_type=content_type,
        headers={"Authorization": account["auth"], **headers} if account else headers,
    )


def error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        (None, "Missing API key"),
        ("Bearer nope", "Malformed API key."),
        ("Bearer vt_00000000_secret", "Invalid API key."),
        # Another scheme, or the key alone: say how to send it, not that it is missing.
        ("Basic dXNlcjpwdw==", "The Authorization header must be 'Bearer <key>'"),
        ("Token vt_00000000_secret", "The Authorization header must be 'Bearer <key>'"),
        ("vt_00000000_secret", "The Authorization header must be 'Bearer <key>'"),
    ],
)
def test_bad_keys_get_401(client, card, auth, message):
    headers = {"Authorization": auth} if auth else {}
    response = client.post(url(card), data=jpeg(), content_type="image/jpeg", headers=headers)
    assert response.status_code == 401
    assert error(response)["type"] == "authentication_error"
    assert error(response)["message"].startswith(message)


def test_a_revoked_key_gets_401(client, card, funded):
    api_key_revoke(key=funded["key"])
    response = call(client, card, funded, jpeg())
    assert response.status_code == 401
    assert error(response)["message"] == "This API key has been revoked."


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"", "image/jpeg", 400, "missing_image"),
        (json.dumps({"inputs": "%%%"}), "application/json", 400, "invalid_base64"),
        (json.dumps({"parameters": {}}), "application/json", 400, "missing_image"),
        (
            json.dumps({"inputs": "aGVsbG8=", "parameters": {"threshold": 7}}),
            "application/json",
            400,
            "invalid_threshold",
        ),
        (b"hello, not an image", "image/jpeg", 415, "unsupported_format"),
        (b"BM" + b"\0" * 100, "image/bmp", 415, "unsupported_format"),
        (png_bomb(), "image/png", 413, "image_too_large"),
        (b"{not json", "application/json", 400, "invalid_json"),
    ],
)
def test_bad_input_is_a_clear_4xx_and_costs_nothing(
    client, card, funded, storage, body, content_type, status, code
):
    response = call(client, card, funded, body, content_type)
    assert response.status_code == status, response.content
    assert error(response)["code"] == code
    assert Job.objects.count() == 0 and Charge.objects.count() == 0
    assert wallet_for(funded["user"]).balance == Decimal("1.00")
    assert not storage.exists() or list(storage.iterdir()) == []


def test_an_empty_wallet_gets_402_before_anything_is_queued(
    client, card, account, storage, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as queued:
        response = call(client, card, account, jpeg())
    assert response.status_code == 402
    body = error(response)
    assert (body["type"], body["code"]) == ("insufficient_credits", "insufficient_credits")
    assert body["balance"] == "0" and body["cost"] == "0.0002"
    assert queued == [] and Job.objects.count() == 0 and Charge.objects.count() == 0
    # Nothing was stored: the reservation is refused before the upload is.
    assert not storage.exists() or list(storage.iterdir()) == []


@pytest.mark.parametrize(
    ("status", "code", "http"),
    [("coming_soon", "model_not_available", 409), ("retired", "model_retired", 410)],
)
def test_models_that_cannot_be_called(client, card, funded, status, code, http):
    ModelCard.objects.filter(pk=card.pk).update(status=status)
    response = call(client, card, funded, jpeg())
    assert response.status_code == http and error(response)["code"] == code


def test_unknown_model_and_provider_routes(client, card, funded):
    response = client.post(
        "/v1/inference/acme/nope", data=jpeg(), content_type="image/jpeg",
        headers={"Authorization": funded["auth"]},
    )  # fmt: skip
    assert response.status_code == 404 and error(response)["code"] == "model_not_found"
    factories.route(card=card, slug="cloudflare", provider="Cloudflare Workers AI", is_own=False)
    response = client.post(
        url(card) + "?route=cloudflare", data=jpeg(), content_type="image/jpeg",
        headers={"Authorization": funded["auth"]},
    )  # fmt: skip
    assert response.status_code == 400 and error(response)["code"] == "byok_required"


def test_an_async_call_reserves_the_price_and_returns_the_job(
    client, card, funded, storage, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as queued:
        response = call(client, card, funded, jpeg(), **{"Prefer": "respond-async"})
    assert response.status_code == 202, response.content
    job = response.json()
    assert (job["object"], job["status"], job["model"]) == (
        "detection_job",
        "queued",
        card.model_id,
    )
    assert (job["cost"], job["byok"], job["charge_status"], job["balance"]) == (
        "0.0002", False, "reserved", "0.9998",
    )  # fmt: skip
    assert response["X-Vitrine-Cost"] == "0.0002" and response["X-Vitrine-Balance"] == "0.9998"
    assert response["Location"].endswith(f"/v1/jobs/{job['id']}")
    assert len(queued) == 1
    charge = Charge.objects.get(job_id=job["id"])
    assert charge.price_version == PriceRoute.objects.get(card=card).history.get()
    assert Job.objects.get(pk=job["id"]).cost_ref == str(charge.pk)  # the job names its charge


def test_json_base64_input_with_a_threshold(
    client, card, funded, storage, django_capture_on_commit_callbacks
):
    body = json.dumps(
        {"inputs": base64.b64encode(jpeg()).decode(), "parameters": {"threshold": 0.7}}
    )
    with django_capture_on_commit_callbacks():
        response = call(client, card, funded, body, "application/json", Prefer="respond-async")
    assert response.status_code == 202 and response.json()["threshold"] == 0.7


def test_cancelling_a_queued_job_releases_the_money(
    client, card, funded, storage, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        job = call(client, card, funded, jpeg(), Prefer="respond-async").json()
    response = client.delete(f"/v1/jobs/{job['id']}", headers={"Authorization": funded["auth"]})
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["charge_status"]) == ("cancelled", "voided")
    assert wallet_for(funded["user"]).balance == Decimal("1.00")
    again = client.delete(f"/v1/jobs/{job['id']}", headers={"Authorization": funded["auth"]})
    assert again.status_code == 409 and error(again)["code"] == "job_not_cancellable"


def test_a_job_is_only_visible_to_its_owner(
    client, card, funded, storage, staff, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        job = call(client, card, funded, jpeg(), Prefer="respond-async").json()
    _, other = api_key_create(user=staff, name="other")
    response = client.get(f"/v1/jobs/{job['id']}", headers={"Authorization": f"Bearer {other}"})
    assert response.status_code == 404 and error(response)["code"] == "job_not_found"


def test_the_openapi_schema_documents_the_inference_api_without_warnings(client):
    import io

    from django.core.management import call_command

    # --fail-on-warn: a view the generator cannot describe fails here, not in check --deploy.
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=io.StringIO())
    schema = client.get("/v1/openapi.json").json()
    assert {"/v1/inference/{model_id}", "/v1/jobs/{job_id}"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
