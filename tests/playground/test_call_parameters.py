"""How a call's parameters are read wherever they come from: the query string and the body
together, base64 as command-line tools wrap it, an image sent with curl's default form type,
RFC 7240's ``Prefer``; and what a quote and a replay check before they answer.

In process (Django's test client, the job's message captured on commit: no worker).
"""

from __future__ import annotations

import base64
import io
import json
from decimal import Decimal

import pytest
from PIL import Image

from billing.models import Charge
from billing.services.keys import api_key_create
from billing.services.ledger import wallet_for
from billing.services.topups import credit_grant
from playground.models import Job
from tests import factories

pytestmark = pytest.mark.django_db
PRICE = Decimal("0.0002")


def jpeg(width=64, height=48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 90)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def card(settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card()
    factories.route(card=card, price=PRICE)
    return card


@pytest.fixture
def auth(other_user):
    credit_grant(user=other_user, amount=Decimal("1"), reason="test")
    _, key = api_key_create(user=other_user, name="ci")
    return {"Authorization": f"Bearer {key}"}


def post(client, card, query="", body=None, content_type="image/jpeg", route="inference", **kw):
    return client.post(
        f"/v1/{route}/{card.model_id}{query}",
        data=jpeg() if body is None else body,
        content_type=content_type,
        headers=kw.pop("headers", {}),
        **kw,
    )


def as_json(threshold=None, encode=base64.b64encode) -> str:
    body = {"inputs": encode(jpeg()).decode()}
    if threshold is not None:
        body["parameters"] = {"threshold": threshold}
    return json.dumps(body)


def error_of(response) -> tuple[int, str, str | None]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["param"]


def nothing_happened(user):
    assert Job.objects.count() == 0 and Charge.objects.count() == 0
    assert wallet_for(user).balance == Decimal("1")


# --- the threshold: query string and body together -----------------------------------------
@pytest.mark.parametrize("route", ["inference", "detections"])
def test_a_query_threshold_applies_to_a_json_body(client, card, auth, route):
    """It was dropped: the call ran, and was charged, at 0.5."""
    response = post(client, card, "?dry_run=true&threshold=0.9", as_json(), "application/json",
                    route=route, headers=auth)  # fmt: skip
    assert response.status_code == 200, response.content
    assert response.json()["threshold"] == 0.9


@pytest.mark.parametrize(
    ("query", "body_threshold", "expected"),
    [
        ("?threshold=7", None, (400, "invalid_threshold", "threshold")),  # was a 202
        ("?threshold=0.9", 0.5, (400, "invalid_value", "threshold")),
        ("?threshold=0.5&threshold=0.7", None, (400, "invalid_value", "threshold")),
        ("", True, (400, "invalid_threshold", "threshold")),  # not 1.0
    ],
)
def test_a_threshold_out_of_range_or_given_twice_differently_is_refused(
    client, card, auth, other_user, query, body_threshold, expected
):
    response = post(client, card, query, as_json(body_threshold), "application/json",
                    headers=auth)  # fmt: skip
    assert error_of(response) == expected, response.content
    nothing_happened(other_user)


def test_the_same_threshold_in_the_query_and_the_body_is_one(client, card, auth):
    response = post(client, card, "?dry_run=1&threshold=0.7", as_json(0.7), "application/json",
                    headers=auth)  # fmt: skip
    assert response.status_code == 200 and response.json()["threshold"] == 0.7
    form = client.post(
        f"/v1/inference/{card.model_id}?dry_run=1&threshold=0.6",
        data={"image": io.BytesIO(jpeg()), "threshold": "0.8"},
        headers=auth,
    )
    assert error_of(form) == (400, "invalid_value", "threshold")
    assert "0.6, 0.8" in form.json()["error"]["message"]


def test_a_form_threshold_given_twice_differently_is_refused(client, card, auth, other_user):
    """The last of two form values was used unsaid (a multipart body may repeat a field)."""
    form = client.post(
        f"/v1/inference/{card.model_id}",
        data={"image": io.BytesIO(jpeg()), "threshold": ["0.5", "0.9"]},
        headers=auth,
    )
    assert error_of(form) == (400, "invalid_value", "threshold")
    assert "0.5, 0.9" in form.json()["error"]["message"]
    nothing_happened(other_user)
    same = client.post(
        f"/v1/inference/{card.model_id}?dry_run=true",
        data={"image": io.BytesIO(jpeg()), "threshold": ["0.7", "0.7"]},
        headers=auth,
    )
    assert same.status_code == 200 and same.json()["threshold"] == 0.7


# --- dry_run: a quote or a paid call, never by accident ------------------------------------
@pytest.mark.parametrize(
    "query", ["?dry_run", "?dry_run=", "?dry_run=true&dry_run=false", "?dry_run=0&dry_run=1"]
)
def test_a_bare_empty_or_conflicting_dry_run_is_refused_not_run(
    client, card, auth, other_user, query
):
    """Each of these ran (and charged) a real call: a bare flag read as false, the last of
    two values won."""
    response = post(client, card, query, headers=auth)
    assert error_of(response) == (400, "invalid_value", "dry_run"), response.content
    nothing_happened(other_user)


@pytest.mark.parametrize("query", ["?dry_run=true&dry_run=1", "?dry_run=yes"])
def test_a_dry_run_given_twice_alike_is_one_quote(client, card, auth, other_user, query):
    response = post(client, card, query, headers=auth)
    assert response.status_code == 200 and response.json()["object"] == "quote"
    nothing_happened(other_user)


# --- base64 and bodies as tools send them --------------------------------------------------
def test_base64_wrapped_in_lines_is_read(client, card, auth):
    """``base64 photo.jpg`` and Python's ``encodebytes`` wrap at 76 columns."""
    for body in (as_json(encode=base64.encodebytes), as_json() + "\n"):
        response = post(client, card, "?dry_run=true", body, "application/json", headers=auth)
        assert response.status_code == 200, response.content
        assert response.json()["image"]["bytes"] == len(jpeg())
    broken = json.dumps({"inputs": "not base64 at all!"})
    assert error_of(post(client, card, "", broken, "application/json", headers=auth)) == (
        400, "invalid_base64", "inputs",
    )  # fmt: skip


def test_an_image_sent_with_curls_default_form_type_is_the_image(client, card, auth, other_user):
    """``curl --data-binary @photo.jpg`` without ``-H Content-Type`` says it is a form."""
    form_type = "application/x-www-form-urlencoded"
    response = post(client, card, "?dry_run=true", jpeg(), form_type, headers=auth)
    assert response.status_code == 200, response.content
    assert response.json()["image"]["format"] == "JPEG"
    # Other bytes are checked as any raw upload is, never echoed back as a field name.
    bmp = post(client, card, "", b"BM\x00\x01\xff" * 50, form_type, headers=auth)
    assert bmp.status_code == 415 and bmp.json()["error"]["code"] == "unsupported_format"
    # A real form still is one; a long unknown name is shown cut short.
    long_name = post(client, card, "", "x" * 500 + "=1", form_type, headers=auth)
    status, code, param = error_of(long_name)
    assert (status, code) == (400, "unknown_parameter") and param == "x" * 64 + "..."
    assert len(long_name.json()["error"]["message"]) < 300
    nothing_happened(other_user)


def test_a_multipart_body_without_a_boundary_is_invalid_multipart(client, card, auth):
    response = post(client, card, "", jpeg(), "multipart/form-data", headers=auth)
    assert error_of(response)[:2] == (400, "invalid_multipart"), response.content
    assert "boundary" in response.json()["error"]["message"].lower()


# --- webhooks and quotes -------------------------------------------------------------------
def test_two_different_webhooks_are_refused(client, card, auth, other_user):
    body = json.dumps({"inputs": base64.b64encode(jpeg()).decode(),
                       "webhook": "https://hooks.example.com/a"})  # fmt: skip
    response = post(client, card, "?webhook=https://hooks.example.com/b", body,
                    "application/json", headers=auth)  # fmt: skip
    assert error_of(response) == (400, "invalid_value", "webhook")
    nothing_happened(other_user)


@pytest.mark.parametrize("webhook", ["javascript:alert(1)", "http://127.0.0.1/hook", ""])
def test_a_quote_refuses_the_webhook_the_call_would_refuse(client, card, auth, webhook):
    response = post(client, card, f"?dry_run=true&webhook={webhook}", headers=auth)
    assert error_of(response) == (400, "invalid_webhook", "webhook"), response.content


def test_a_quote_refuses_an_idempotency_key_used_for_another_request(
    client, card, auth, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        first = post(client, card, headers={**auth, "Prefer": "respond-async",
                                            "Idempotency-Key": "order-1"})  # fmt: skip
    assert first.status_code == 202, first.content
    other = post(client, card, "?dry_run=true", jpeg(80, 60),
                 headers={**auth, "Idempotency-Key": "order-1"})  # fmt: skip
    assert error_of(other) == (422, "idempotency_key_reused", "Idempotency-Key")
    # The same request's quote is a quote; nothing more was created.
    same = post(client, card, "?dry_run=true", headers={**auth, "Idempotency-Key": "order-1"})
    assert same.status_code == 200 and same.json()["object"] == "quote"
    assert Job.objects.count() == 1


# --- Prefer ----------------------------------------------------------------------------------
@pytest.mark.parametrize("prefer", ["RESPOND-ASYNC", "wait=10, Respond-Async", "respond-async"])
def test_prefer_respond_async_is_read_as_rfc_7240_says(
    client, card, auth, prefer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        response = post(client, card, headers={**auth, "Prefer": prefer})
    assert response.status_code == 202, response.content
    assert response["Preference-Applied"] == "respond-async"


# --- a key's allow-list on answers that charge nothing ---------------------------------------
def test_a_replay_answers_only_a_key_allowed_the_model(
    client, card, auth, other_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        first = post(client, card, headers={**auth, "Prefer": "respond-async",
                                            "Idempotency-Key": "k-1"})  # fmt: skip
    assert first.status_code == 202
    narrow, key = api_key_create(user=other_user, name="yolos only")
    narrow.allowed_models.add(factories.card(slug="yolos-only"))
    headers = {"Prefer": "respond-async", "Idempotency-Key": "k-1"}
    refused = post(client, card, headers={"Authorization": f"Bearer {key}", **headers})
    assert error_of(refused) == (403, "model_not_allowed", None), refused.content
    replay = post(client, card, headers={**auth, "Prefer": "respond-async",
                                         "Idempotency-Key": "k-1"})  # fmt: skip
    assert replay.status_code == 202 and replay.json()["id"] == first.json()["id"]
    assert Job.objects.count() == 1 and Charge.objects.count() == 1


@pytest.mark.parametrize("inputs", [123, ["aGk="], {"image": "aGk="}, True])
def test_inputs_that_are_not_text_are_named_not_missing(client, card, auth, other_user, inputs):
    response = post(client, card, "", json.dumps({"inputs": inputs}), "application/json",
                    headers=auth)  # fmt: skip
    assert error_of(response) == (400, "invalid_value", "inputs"), response.content
    assert "base64" in response.json()["error"]["message"]
    nothing_happened(other_user)
    absent = post(client, card, "", json.dumps({"inputs": ""}), "application/json", headers=auth)
    assert error_of(absent) == (400, "missing_image", "inputs")


def test_two_image_parts_are_refused_not_one_dropped(client, card, auth, other_user):
    response = client.post(
        f"/v1/inference/{card.model_id}",
        data={"image": [io.BytesIO(jpeg()), io.BytesIO(jpeg(80, 60))]},
        headers=auth,
    )
    assert error_of(response) == (400, "invalid_value", "image"), response.content
    nothing_happened(other_user)


def test_minus_zero_is_zero(client, card, auth):
    response = post(client, card, "?dry_run=true&threshold=-0", headers=auth)
    assert response.status_code == 200 and str(response.json()["threshold"]) == "0.0"


def test_a_job_read_refuses_a_parameter_it_does_not_know(
    client, card, auth, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        job = post(client, card, headers={**auth, "Prefer": "respond-async"}).json()
    response = client.get(f"/v1/jobs/{job['id']}?treshold=0.9", headers=auth)
    assert error_of(response) == (400, "unknown_parameter", "treshold")
    assert client.get(f"/v1/jobs/{job['id']}?threshold=0.9", headers=auth).status_code == 200
