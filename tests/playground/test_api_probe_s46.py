"""Inputs from session 46's probes: 500s that are 4xx in the route's shape now, and JSON sent
without saying so (read as JSON now).

- More than ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` query parameters, under ASGI with DEBUG on
  (``make run``): a DRF view first read the query string while choosing its renderer; the
  failure left the view without one, which DRF's error handling then needed under DEBUG
  (an AttributeError, a 500) on every API route but ``POST /v1/inference``.
- A threshold that is a JSON integer of 400 digits (``float()`` overflows).
- A webhook URL with a bracketed host that is no IPv6 address (``urlsplit`` raises).
Also: a JSON number of more than 4,300 digits was refused with Python's advice to call
``sys.set_int_max_str_digits()``, and other scripts' digits (Arabic-Indic, full-width)
were read as numbers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from decimal import Decimal

import pytest

from billing.services.keys import api_key_create
from billing.services.topups import credit_grant
from playground.models import Job
from tests import factories
from tests.playground.test_flavour_errors import PRICE, code_of, jpeg, message_of, url

MANY = "&".join(f"p{i}=1" for i in range(1200))


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


def asgi_call(method: str, path: str, query: str, auth: str, body: bytes = b"") -> dict:
    """One request through the real ASGI application (as uvicorn hands it over)."""
    from config.asgi import application

    sent: list[dict] = []
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if pending:
            return pending.pop()
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    headers = [(b"host", b"testserver"), (b"authorization", auth.encode())]
    if body:
        headers += [(b"content-type", b"image/jpeg"), (b"content-length", str(len(body)).encode())]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": query.encode(), "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 1), "server": ("testserver", 80),
    }  # fmt: skip
    asyncio.run(asyncio.wait_for(application(scope, receive, send), timeout=60))
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    answer = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return {"status": start["status"], "json": json.loads(content), "headers": answer}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/jobs"),
        ("GET", "/v1/models"),
        ("GET", "/v1/openapi.json"),
        ("GET", "/v1/jobs/00000000-0000-0000-0000-000000000000"),
        ("DELETE", "/v1/jobs/00000000-0000-0000-0000-000000000000"),
        ("POST", "/v1/detections/org/model"),
        ("POST", "/hf/models/org/model"),
        ("POST", "/client/v4/accounts/a/ai/run/@cf/org/model"),
    ],
)
def test_a_query_of_too_many_parameters_is_a_400_on_every_route(settings, funded, method, path):
    # As `make run` serves (DEBUG on): there DRF's error handling reads the renderer that
    # the failed query left unchosen. With DEBUG off the error reached the middleware's
    # 400 already.
    settings.DEBUG = True
    body = jpeg() if method == "POST" else b""
    answer = asgi_call(method, path, MANY, funded["auth"], body)
    assert answer["status"] == 400, answer
    assert answer["headers"]["x-vitrine-error-code" if "/v1/" not in path else "x-request-id"]
    if path.startswith("/v1/"):
        assert answer["json"]["error"]["code"] == "too_many_fields"
    else:
        assert answer["headers"]["x-vitrine-error-code"] == "too_many_fields"


@pytest.mark.django_db
@pytest.mark.parametrize("flavour", ["vitrine", "hf"])
def test_a_threshold_of_400_digits_is_refused_as_a_threshold(
    client, card, funded, storage, flavour
):
    inputs = base64.b64encode(jpeg()).decode()
    body = f'{{"inputs": "{inputs}", "parameters": {{"threshold": 1{"0" * 400}}}}}'
    response = client.post(
        url(flavour, card.model_id), data=body.encode(), content_type="application/json",
        headers={"Authorization": funded["auth"]},
    )  # fmt: skip
    assert response.status_code == 400, response.content
    assert code_of(flavour, response) == "invalid_threshold"
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_a_number_too_long_for_python_is_invalid_json_without_pythons_advice(
    client, card, funded, storage
):
    body = f'{{"inputs": "x", "parameters": {{"threshold": 1{"0" * 5000}}}}}'
    response = client.post(
        url("vitrine", card.model_id), data=body.encode(), content_type="application/json",
        headers={"Authorization": funded["auth"]},
    )  # fmt: skip
    assert response.status_code == 400
    assert code_of("vitrine", response) == "invalid_json"
    message = message_of("vitrine", response)
    assert "too many digits" in message and "sys." not in message, message


@pytest.mark.django_db
@pytest.mark.parametrize("raw", ["\u0660.\u0665", "\uff10.\uff15"])  # "0.5" in other digits
def test_a_threshold_in_other_scripts_digits_is_refused(client, card, funded, storage, raw):
    response = client.post(
        url("vitrine", card.model_id), data=jpeg(), content_type="image/jpeg",
        query_params={"threshold": raw}, headers={"Authorization": funded["auth"]},
    )  # fmt: skip
    assert response.status_code == 400, response.content
    assert code_of("vitrine", response) == "invalid_threshold"


@pytest.mark.django_db
def test_a_page_size_in_other_scripts_digits_is_refused(client, funded):
    response = client.get(
        "/v1/jobs", {"limit": "\uff11"}, headers={"Authorization": funded["auth"]}
    )
    assert response.status_code == 400, response.content
    assert code_of("vitrine", response) == "invalid_value"


@pytest.mark.django_db
@pytest.mark.parametrize("hook", ["http://[1::2::3]/", "http://[::1/", "https://[zz]:80/x"])
def test_a_webhook_whose_bracketed_host_is_no_address_is_refused(
    client, card, funded, storage, hook
):
    response = client.post(
        url("vitrine", card.model_id), data=jpeg(), content_type="image/jpeg",
        query_params={"webhook": hook, "dry_run": "true"},
        headers={"Authorization": funded["auth"]},
    )  # fmt: skip
    assert response.status_code == 400, response.content
    assert code_of("vitrine", response) == "invalid_webhook"


@pytest.mark.django_db
@pytest.mark.parametrize("flavour", ["vitrine", "hf", "cloudflare"])
def test_a_host_the_server_does_not_answer_for_is_the_apis_json_400(
    client, card, funded, settings, flavour
):
    """Django's HTML 400 page before (every other API answer is JSON); a page keeps it."""
    settings.ALLOWED_HOSTS = ["vitrine.example"]
    response = client.post(
        url(flavour, card.model_id), data=jpeg(), content_type="image/jpeg",
        headers={"Authorization": funded["auth"], "Host": "elsewhere.example"},
    )  # fmt: skip
    assert response.status_code == 400
    assert code_of(flavour, response) == "disallowed_host"
    assert "Host header" in message_of(flavour, response)
    page = client.get("/models", headers={"Host": "elsewhere.example"})
    assert page.status_code == 400 and page["Content-Type"].startswith("text/html")


# --- a JSON body sent without saying so (session 46's client probe) ---------------------
# huggingface_hub before 1.0 posts {"inputs": <base64>, "parameters": {...}} with no
# Content-Type at all (its async client labels it application/octet-stream); curl -d labels
# a body a form and fetch() with a string body text/plain. Hugging Face's API reads such a
# body as JSON; here each was taken as the image itself and answered 415 "Unsupported image
# format", so huggingface_hub 0.30 could not pass threshold= at all.
UNLABELLED = ["", "application/octet-stream", "application/x-www-form-urlencoded", "text/plain"]


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
