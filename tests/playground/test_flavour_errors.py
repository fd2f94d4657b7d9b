"""The error contract (seed 000) on every flavour: Vitrine's /v1, Hugging Face's, Cloudflare's.

Each error code answers the same status on all three flavours, in that flavour's shape:
``{"error": {message, type, code, param}}`` on /v1, ``{"error": "<message>"}`` on the
Hugging Face route (Vitrine's code in ``X-Vitrine-Error-Code``), Cloudflare's envelope
``{"result": null, "success": false, "errors": [{code, message}], "messages": []}`` on the
Cloudflare route; 429 and 503 carry ``Retry-After``; a 500 says nothing of the internals.
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
from catalog.models import ModelCard
from playground import events, services
from playground.models import Job
from tests import factories

pytestmark = pytest.mark.django_db
PRICE = Decimal("0.0002")
FLAVOURS = ["vitrine", "hf", "cloudflare"]


def jpeg(width=64, height=48, colour=(10, 200, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def storage(settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    return settings.VITRINE_JOB_STORAGE


@pytest.fixture
def card(db):
    card = factories.card(organisation=factories.organisation(slug="facebook"))
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


def url(flavour: str, model_id: str) -> str:
    return {
        "vitrine": f"/v1/inference/{model_id}",
        "hf": f"/hf/models/{model_id}",
        "cloudflare": f"/client/v4/accounts/acct123/ai/run/@cf/{model_id}",
    }[flavour]


def post(client, flavour, model_id, account, body=b"", content_type="image/jpeg", **headers):
    if account:
        headers["Authorization"] = account["auth"]
    return client.post(
        url(flavour, model_id), data=body, content_type=content_type, headers=headers
    )


def code_of(flavour: str, response) -> str:
    """Vitrine's error code, after checking the body is exactly the flavour's error shape."""
    body = response.json()
    if flavour == "vitrine":
        assert set(body) == {"error"}, body
        assert {"message", "type", "code", "param"} <= set(body["error"]), body
        return body["error"]["code"]
    if flavour == "hf":
        assert set(body) <= {"error", "estimated_time"} and isinstance(body["error"], str), body
        assert body["error"]
        return response["X-Vitrine-Error-Code"]
    assert set(body) == {"result", "success", "errors", "messages"}, body
    assert (body["result"], body["success"], body["messages"]) == (None, False, [])
    (error,) = body["errors"]
    assert set(error) == {"code", "message"} and isinstance(error["code"], int), error
    return response["X-Vitrine-Error-Code"]


def message_of(flavour: str, response) -> str:
    body = response.json()
    return {
        "vitrine": lambda: body["error"]["message"],
        "hf": lambda: body["error"],
        "cloudflare": lambda: body["errors"][0]["message"],
    }[flavour]()


REFUSALS = [
    ("no_key", 401, "invalid_api_key"),
    ("bad_threshold", 400, "invalid_threshold"),
    ("bad_json", 400, "invalid_json"),
    ("not_an_image", 415, "unsupported_format"),
    ("unknown_model", 404, "model_not_found"),
    ("coming_soon", 409, "model_not_available"),
    ("retired", 410, "model_retired"),
    ("too_large", 413, "image_too_large"),
    ("empty_wallet", 402, "insufficient_credits"),
    ("not_allowed", 403, "model_not_allowed"),
]
# The other answers these contract tests check on every flavour (below).
OTHER_ERRORS = [
    (429, "rate_limit_exceeded"),
    (500, "internal_error"),
    (503, "queue_unavailable"),
    (503, "database_unavailable"),
    (503, "model_loading"),
    (503, "job_lost"),  # tests/playground/test_unflushed_creation_pg.py
    (422, "idempotency_key_reused"),
    (405, "method_not_allowed"),
    (406, "not_acceptable"),  # tests/catalog/test_api_methods.py
    (404, "endpoint_not_found"),
    # tests/playground/test_call_parameters.py, test_bad_inputs.py and this file
    (400, "invalid_value"),
    (400, "invalid_header"),
    (400, "invalid_multipart"),
    (400, "too_many_fields"),
    (400, "bad_content_length"),
    (400, "unreadable_body"),
    (400, "invalid_image_array"),
]


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize(("case", "status", "code"), REFUSALS)
def test_each_refusal_in_each_flavour(client, card, account, storage, flavour, case, status, code):
    model_id = card.model_id
    body, content_type, who = jpeg(), "image/jpeg", account
    if case != "empty_wallet":
        credit_grant(user=account["user"], amount=Decimal("1.00"), reason="test")
    if case == "no_key":
        who = None
    elif case == "bad_threshold":
        body, content_type = (
            json.dumps({"inputs": "aGVsbG8=", "parameters": {"threshold": 7}}),
            ("application/json"),
        )
        if flavour == "cloudflare":  # Cloudflare's body has no parameters: the query has
            model_id += "?threshold=7"
            body, content_type = jpeg(), "image/jpeg"
    elif case == "bad_json":
        body, content_type = b"{not json", "application/json"
    elif case == "not_an_image":
        body = b"hello, not an image"
    elif case == "unknown_model":
        model_id = "acme/nope"
    elif case in ("coming_soon", "retired"):
        ModelCard.objects.filter(pk=card.pk).update(status=case)
    elif case == "too_large":
        body = b"\xff" * (20 * 1024 * 1024 + 1)
    elif case == "not_allowed":
        account["key"].allowed_models.add(factories.card())

    response = post(client, flavour, model_id, who, body, content_type)

    assert response.status_code == status, response.content
    assert code_of(flavour, response) == code
    if case == "no_key":
        assert response["WWW-Authenticate"].startswith("Bearer")
    assert Job.objects.count() == 0 and Charge.objects.count() == 0


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_429_carries_retry_after(client, card, funded, storage, settings, flavour):
    settings.VITRINE_API_RATE_PER_MINUTE = 1
    post(client, flavour, card.model_id, funded, b"not an image")  # counted, then refused 415
    response = post(client, flavour, card.model_id, funded, jpeg())
    assert response.status_code == 429
    assert code_of(flavour, response) == "rate_limit_exceeded"
    assert int(response["Retry-After"]) >= 1


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_bug_is_a_retryable_500_with_no_internals(client, card, funded, monkeypatch, flavour):
    from playground import api

    def broken(*args, **kwargs):
        raise RuntimeError("secret-internal /srv/vitrine/weights.bin")

    monkeypatch.setattr(api, "_callable_card", broken)  # stands in for any bug
    response = post(client, flavour, card.model_id, funded, jpeg())
    assert response.status_code == 500
    assert code_of(flavour, response) == "internal_error"
    assert "secret" not in response.content.decode() and "/srv" not in response.content.decode()
    assert "Retry" in message_of(flavour, response)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_an_unreachable_database_is_a_retryable_503(client, card, funded, flavour):
    """A real fault: the request runs on a thread whose database connection points where no
    database is (a folder that does not exist for SQLite, a closed port for PostgreSQL), so
    the driver itself fails to connect, as when the server is down or the pool is empty."""
    import threading

    from django.db import connection, connections

    broken = dict(connection.settings_dict)
    if connection.vendor == "sqlite":
        broken["NAME"] = "/nonexistent-vitrine-dir/db.sqlite3"
    else:
        broken.update(HOST="127.0.0.1", PORT="1", OPTIONS={"connect_timeout": 2})
    answers = []

    def call():
        connections["default"].settings_dict = broken
        try:
            answers.append(post(client, flavour, card.model_id, funded, jpeg()))
        finally:
            connections["default"].close()

    thread = threading.Thread(target=call)
    thread.start()
    thread.join()
    (response,) = answers
    assert response.status_code == 503, response.content
    assert code_of(flavour, response) == "database_unavailable"
    assert response["Retry-After"] == "2"
    assert "nonexistent" not in response.content.decode()  # no internals


@pytest.mark.parametrize("flavour", ["hf", "cloudflare"])
def test_same_idempotency_key_for_another_request_is_422(
    client, card, funded, storage, flavour, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        first = post(
            client, "vitrine", card.model_id, funded, jpeg(),
            Prefer="respond-async", **{"Idempotency-Key": "k-1"},
        )  # fmt: skip
    assert first.status_code == 202
    response = post(client, flavour, card.model_id, funded, jpeg(), **{"Idempotency-Key": "k-1"})
    assert response.status_code == 422
    assert code_of(flavour, response) == "idempotency_key_reused"
    assert Job.objects.count() == 1


def test_a_sync_replay_of_a_job_that_ended_answers_at_once(
    client, card, funded, storage, monkeypatch, django_capture_on_commit_callbacks
):
    """A key's job that already ended is answered from its row, without waiting for a
    finished signal that was sent long ago."""
    headers = {"Idempotency-Key": "order-7"}
    with django_capture_on_commit_callbacks():
        first = post(
            client, "vitrine", card.model_id, funded, jpeg(), Prefer="respond-async", **headers
        )
    assert first.status_code == 202
    job = services.job_claim(job_id=first.json()["id"], worker="t:1")
    detections = [
        {"label": "cat", "score": 0.9, "box": {"xmin": 1, "ymin": 2, "xmax": 3, "ymax": 4}}
    ]
    assert services.job_succeed(job=job, result=detections, timings={"forward": 0.1})
    waits = []
    real = events.job_finished_heard

    async def counted(*args, **kwargs):
        waits.append(args)
        return await real(*args, **kwargs)

    monkeypatch.setattr(events, "job_finished_heard", counted)
    again = post(client, "vitrine", card.model_id, funded, jpeg(), **headers)
    assert again.status_code == 200 and again.json() == detections
    assert again["X-Vitrine-Job-Id"] == str(job.pk) and waits == []
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert Job.objects.count() == 1 and Charge.objects.count() == 1


def test_vitrine_flavour_idempotency_replays_and_refuses_reuse(
    client, card, funded, storage, django_capture_on_commit_callbacks
):
    headers = {"Prefer": "respond-async", "Idempotency-Key": "order-42"}
    with django_capture_on_commit_callbacks() as queued:
        first = post(client, "vitrine", card.model_id, funded, jpeg(), **headers)
        again = post(client, "vitrine", card.model_id, funded, jpeg(), **headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert len(queued) == 1 and Job.objects.count() == 1 and Charge.objects.count() == 1
    assert wallet_for(funded["user"]).balance == Decimal("0.9998")

    # The same image as JSON base64 is the same request; another image is not.
    as_json = json.dumps({"inputs": base64.b64encode(jpeg()).decode()})
    same = post(client, "vitrine", card.model_id, funded, as_json, "application/json", **headers)
    assert same.status_code == 202 and same.json()["id"] == first.json()["id"]
    other = post(client, "vitrine", card.model_id, funded, jpeg(colour=(1, 2, 3)), **headers)
    assert other.status_code == 422
    assert code_of("vitrine", other) == "idempotency_key_reused"
    assert Job.objects.count() == 1


def test_a_bad_idempotency_key_is_400(client, card, funded, storage):
    response = post(
        client, "vitrine", card.model_id, funded, jpeg(), **{"Idempotency-Key": "x" * 300}
    )
    assert response.status_code == 400 and code_of("vitrine", response) == "invalid_idempotency_key"


@pytest.mark.parametrize(
    "path", ["/v1", "/hf/nothing", "/client/v4/accounts/a/ai/run/@hf/x/y", "/client/v4/zones"]
)
def test_posts_to_unknown_paths_are_json_404s_not_redirects(client, funded, path):
    response = client.post(path, data=jpeg(), content_type="image/jpeg",
                           headers={"Authorization": funded["auth"]})  # fmt: skip
    assert response.status_code == 404, response.content
    assert response["Content-Type"] == "application/json"


def test_hf_client_posting_to_v1_is_told_which_url_to_use(client, funded):
    response = client.post(
        "/v1", data=jpeg(), content_type="image/jpeg",
        headers={"Authorization": funded["auth"], "User-Agent": "unknown/None; hf_hub/2.4.0"},
    )  # fmt: skip
    assert response.status_code == 404
    assert code_of("hf", response) == "endpoint_not_found"
    assert "/hf/models/<org>/<name>" in response.json()["error"]


def test_hf_flavour_refuses_when_the_model_is_cold_and_the_wait_too_short(
    client, card, funded, storage, settings
):
    settings.VITRINE_MODEL_LOAD_ESTIMATE = 600
    settings.VITRINE_HF_WAIT = 30
    response = post(client, "hf", card.model_id, funded, jpeg())
    assert response.status_code == 503
    assert code_of("hf", response) == "model_loading"
    body = response.json()
    assert body["estimated_time"] >= 600 and int(response["Retry-After"]) >= 600
    assert Job.objects.count() == 0 and wallet_for(funded["user"]).balance == Decimal("1.00")


def test_a_burst_s_queue_waits_do_not_make_an_idle_model_look_busy(client, card, funded, storage):
    """The estimate adds the recent jobs' own compute, not their queue waits nor their
    batch's size: after a burst, with nothing queued, a 2 s model was refused at once as
    'retry in about 108 s'."""
    from playground.flavours import waiting

    timings = {"queue": 95.0, "batch": 8, "decode": 0.2, "forward": 1.6, "load": 30.0}
    for _ in range(3):
        factories.finished_run(card=card, image_bytes=jpeg(), result=[], timings=timings)
    assert waiting.estimate_seconds(card=card) == pytest.approx(1.8)
    response = post(client, "hf", card.model_id, funded, b"not an image")
    assert code_of("hf", response) != "model_loading"  # admitted, then the image refused


def test_a_call_that_waited_for_the_model_is_not_told_to_wait_for_it(
    client, card, funded, storage, settings
):
    settings.VITRINE_HF_WAIT_FOR_MODEL = 1  # no worker: the job is cancelled at the bound
    response = post(client, "hf", card.model_id, funded, jpeg(), **{"x-wait-for-model": "true"})
    assert response.status_code == 503 and code_of("hf", response) == "model_loading"
    message = response.json()["error"]
    assert "did not answer within this call's wait" in message, message
    assert "x-wait-for-model" not in message
    assert wallet_for(funded["user"]).balance == Decimal("1.00")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("path", "flavour"),
    [
        ("/hf/models/org/model", "hf"),
        ("/client/v4/accounts/a/ai/run/@cf/org/model", "cloudflare"),
    ],
)
@pytest.mark.parametrize("declared", [True, False])
def test_asgi_body_limit_refusals_speak_the_flavour(settings, path, flavour, declared):
    """Under ASGI a body over the limit is refused before any view runs (declared length)
    or cut while streaming: still in the flavour's shape."""
    from tests.playground.test_request_limits import asgi_post

    settings.VITRINE_MAX_UPLOAD_BYTES = 10_000
    headers = [(b"content-type", b"image/jpeg")]
    if declared:
        headers.append((b"content-length", b"314572800"))
    answer = asgi_post(path, [b"\xff" * 4096] * 10, headers)
    assert answer["status"] == 413
    body = json.loads(answer["body"])
    if flavour == "hf":
        assert set(body) == {"error"} and isinstance(body["error"], str)
    else:
        assert (body["success"], body["result"], body["messages"]) == (False, None, [])
        assert body["errors"][0]["code"] == 413


@pytest.mark.django_db(transaction=True)
def test_the_hf_flavour_under_the_asgi_handler(settings, other_user, tmp_path):
    """The async views run under Django's ASGI handler (production's uvicorn) as well."""
    from tests.playground.test_request_limits import asgi_post

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_MODEL_LOAD_ESTIMATE = 600  # cold: answered at once, nothing queued
    card = factories.card()
    factories.route(card=card, price=PRICE)
    credit_grant(user=other_user, amount=Decimal("1.00"), reason="test")
    _, key = api_key_create(user=other_user, name="asgi")
    image = jpeg()
    headers = [
        (b"content-type", b"image/jpeg"),
        (b"content-length", str(len(image)).encode()),
        (b"authorization", f"Bearer {key}".encode()),
    ]
    answer = asgi_post(f"/hf/models/{card.model_id}", [image], headers)
    assert answer["status"] == 503
    assert json.loads(answer["body"])["estimated_time"] >= 600
    assert Job.objects.count() == 0


def test_expired_keys_are_forgotten_and_reusable(
    client, card, funded, storage, settings, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    from playground.idempotency import call_records_purge_expired
    from playground.models import IdempotencyRecord

    headers = {"Prefer": "respond-async", "Idempotency-Key": "old"}
    with django_capture_on_commit_callbacks():
        first = post(client, "vitrine", card.model_id, funded, jpeg(), **headers)
    day_ago = timezone.now() - timedelta(seconds=settings.VITRINE_IDEMPOTENCY_TTL + 1)
    IdempotencyRecord.objects.update(created_at=day_ago)
    # Past the TTL the key names nothing: another request with it is a new call, not a 422.
    with django_capture_on_commit_callbacks():
        second = post(client, "vitrine", card.model_id, funded, jpeg(colour=(1, 2, 3)), **headers)
    assert second.status_code == 202 and second.json()["id"] != first.json()["id"]
    IdempotencyRecord.objects.update(created_at=day_ago)
    assert call_records_purge_expired()["idempotency_keys_deleted"] == 1
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.parametrize("flavour", ["hf", "cloudflare"])
def test_a_trailing_slash_reaches_the_same_model_without_a_redirect(
    client, card, account, storage, flavour
):
    response = post(client, flavour, card.model_id + "/", account, jpeg())
    assert response.status_code == 402  # the model was found; the empty wallet answered
    assert code_of(flavour, response) == "insufficient_credits"


@pytest.mark.parametrize("flavour", ["hf", "cloudflare"])
def test_get_is_a_405_in_the_flavour(client, card, funded, flavour):
    response = client.get(url(flavour, card.model_id), headers={"Authorization": funded["auth"]})
    assert response.status_code == 405
    assert code_of(flavour, response) == "method_not_allowed"


@pytest.mark.parametrize(("body", "status", "code"), [
    (b"hello, not an image", 415, "unsupported_format"),
    (jpeg()[:40], 400, "corrupt_image"),
])  # fmt: skip
def test_hf_bad_input_is_a_4xx_even_while_the_model_is_cold(
    client, card, funded, storage, settings, body, status, code
):
    """Not a 503 to retry in 600 s and then a 4xx: the image is checked first."""
    settings.VITRINE_MODEL_LOAD_ESTIMATE = 600
    response = post(client, "hf", card.model_id, funded, body)
    assert response.status_code == status and code_of("hf", response) == code
    assert "Retry-After" not in response and Job.objects.count() == 0


def test_hf_cache_reuses_an_identical_call_until_the_model_revision_changes(
    client, card, funded, storage, settings
):
    from django.utils import timezone

    from playground import pipeline, services
    from playground.models import CachedCall

    settings.VITRINE_HF_WAIT = 1
    image = jpeg()
    route = card.routes.get()
    job = services.job_create(
        card=card, route=route, image_bytes=image, parameters={"threshold": 0.5},
        owner=funded["user"],
    )  # fmt: skip
    box = {"xmin": 1.7, "ymin": 2.2, "xmax": 30.9, "ymax": 40.0}
    result = [
        {"label": "cat", "score": 0.9, "box": box},
        {"label": "dog", "score": 0.2, "box": box},
    ]
    Job.objects.filter(pk=job.pk).update(
        status="succeeded", result=result, finished_at=timezone.now()
    )
    CachedCall.objects.create(
        owner=funded["user"], job=job,
        fingerprint=pipeline.cache_fingerprint(
            card=card, route=route, sha256=pipeline.image_sha256(image), threshold=0.5
        ),
    )  # fmt: skip

    hit = post(client, "hf", card.model_id, funded, image)
    assert hit.status_code == 200, hit.content
    # HF's shape: integer pixels, the threshold applied.
    assert hit.json() == [
        {"label": "cat", "score": 0.9, "box": {"xmin": 1, "ymin": 2, "xmax": 30, "ymax": 40}}
    ]
    assert (hit["X-Vitrine-Cache"], hit["X-Vitrine-Cost"]) == ("hit", "0")
    assert Job.objects.count() == 1 and wallet_for(funded["user"]).balance == Decimal("1.00")

    # Another revision of the model is another call: it runs (here: nobody runs it, so the
    # wait ends in a 503 and the queued job is cancelled, nothing charged).
    ModelCard.objects.filter(pk=card.pk).update(checkpoint_local_dir="/models/v2")
    miss = post(client, "hf", card.model_id, funded, image)
    assert miss.status_code == 503 and miss["X-Vitrine-Cache"] == "miss"
    assert Job.objects.count() == 2
    # x-use-cache: false runs anew even for an identical call.
    ModelCard.objects.filter(pk=card.pk).update(checkpoint_local_dir="")
    fresh = post(client, "hf", card.model_id, funded, image, **{"x-use-cache": "false"})
    assert fresh.status_code == 503 and Job.objects.count() == 3
    assert wallet_for(funded["user"]).balance == Decimal("1.00")


# --- lifecycle on every flavour -----------------------------------------------------------
DEPRECATED_AT = "@1793491200"  # 2026-11-01T00:00:00Z
SUNSET = "Fri, 01 Jan 2027 00:00:00 GMT"


@pytest.fixture
def successor(card):
    successor = factories.card(organisation=card.organisation, slug="detr-next")
    factories.route(card=successor, price=PRICE)
    return successor


def successor_url(flavour: str, successor) -> str:
    return "http://testserver" + url(flavour, successor.model_id)


def assert_lifecycle_headers(response, flavour: str, card, successor) -> None:
    assert response["Deprecation"] == DEPRECATED_AT, (flavour, response.status_code)
    assert response["Sunset"] == SUNSET
    links = response["Link"]
    assert f'<{successor_url(flavour, successor)}>; rel="successor-version"' in links
    assert f'<http://testserver/models/{card.model_id}>; rel="deprecation"' in links


def succeeded_job(card, user, image: bytes) -> Job:
    """A job that ran and succeeded (as a worker leaves it), with two boxes."""
    from django.utils import timezone

    from playground import services

    job = services.job_create(
        card=card, route=card.routes.get(), image_bytes=image, parameters={"threshold": 0.5},
        owner=user,
    )  # fmt: skip
    box = {"xmin": 1.7, "ymin": 2.2, "xmax": 30.9, "ymax": 40.0}
    Job.objects.filter(pk=job.pk).update(
        status="succeeded", finished_at=timezone.now(),
        result=[{"label": "cat", "score": 0.9, "box": box}],
    )  # fmt: skip
    return job


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_deprecated_model_says_so_on_every_flavour_whatever_it_answers(
    client, card, successor, funded, storage, settings, flavour
):
    """Deprecation (RFC 9745), Sunset (RFC 8594) and a Link to the same route for the
    replacement, on a success, a refusal and a 503 alike; the model still runs."""
    from playground import idempotency, pipeline

    ModelCard.objects.filter(pk=card.pk).update(
        status="deprecated", deprecation_date="2026-11-01", sunset_date="2027-01-01",
        replacement=successor,
    )  # fmt: skip
    image = jpeg()
    # A success: the replay of a job that already ran (no worker needed to answer it).
    job = succeeded_job(card, funded["user"], image)
    idempotency.idempotent_job_record(
        user=funded["user"], key="dep-1", job=job,
        print_=idempotency.RequestPrint(
            idempotency.fingerprint(
                flavour=flavour, model=card.model_id, route=card.routes.get().slug,
                image=pipeline.image_sha256(image), threshold=0.5,
            )
        ),
    )  # fmt: skip
    ok = post(client, flavour, card.model_id, funded, image, **{"Idempotency-Key": "dep-1"})
    assert ok.status_code == 200, ok.content
    assert ok["X-Vitrine-Job-Id"] == str(job.pk)
    assert_lifecycle_headers(ok, flavour, card, successor)

    # A refusal (here a body that is not an image) carries them too.
    refused = post(client, flavour, card.model_id, funded, b"hello, not an image")
    assert refused.status_code == 415 and code_of(flavour, refused) == "unsupported_format"
    assert_lifecycle_headers(refused, flavour, card, successor)
    # The replacement itself is live: no such headers.
    live = post(client, flavour, successor.model_id, funded, b"hello, not an image")
    assert live.status_code == 415
    assert "Deprecation" not in live and "Sunset" not in live and "Link" not in live

    # And a retryable 503 of the drop-in flavours (the model cold, the wait too short).
    if flavour != "vitrine":
        settings.VITRINE_MODEL_LOAD_ESTIMATE = 600
        settings.VITRINE_HF_WAIT = 1
        Job.objects.all().delete()  # no recent job: the model counts as cold
        cold = post(client, flavour, card.model_id, funded, jpeg(colour=(1, 2, 3)))
        assert cold.status_code == 503, cold.content
        assert_lifecycle_headers(cold, flavour, card, successor)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_retired_model_is_410_naming_the_replacement_on_every_flavour(
    client, card, successor, funded, storage, flavour
):
    ModelCard.objects.filter(pk=card.pk).update(
        status="retired", deprecation_date="2026-11-01", sunset_date="2027-01-01",
        replacement=successor,
    )  # fmt: skip
    response = post(client, flavour, card.model_id, funded, jpeg())
    assert response.status_code == 410
    assert code_of(flavour, response) == "model_retired"
    assert message_of(flavour, response) == (
        f"{card.model_id} was retired on 2027-01-01; use {successor.model_id}."
    )
    if flavour == "vitrine":
        assert response.json()["error"]["replacement"] == successor.model_id
    assert_lifecycle_headers(response, flavour, card, successor)
    assert Job.objects.count() == 0 and Charge.objects.count() == 0


def test_the_cloudflare_successor_keeps_the_callers_account_and_model_prefix(
    client, card, successor, funded, storage
):
    ModelCard.objects.filter(pk=card.pk).update(status="retired", replacement=successor)
    encoded = f"/client/v4/accounts/acct-9/ai/run/@cf%2F{card.model_id.replace('/', '%2F')}"
    response = client.post(
        encoded, data=jpeg(), content_type="image/jpeg",
        headers={"Authorization": funded["auth"]},
    )  # fmt: skip
    assert response.status_code == 410
    successor_link = (
        f"<http://testserver/client/v4/accounts/acct-9/ai/run/@cf/{successor.model_id}>; "
        'rel="successor-version"'
    )
    assert successor_link in response["Link"]


@pytest.mark.django_db(transaction=True)  # real commits: the enqueue runs at (or just before) one
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_503_is_retryable_with_retry_after_on_every_flavour(flavour, client, storage, other_user):
    """The broker is down: 503 + Retry-After in the flavour's shape, the job failed and its
    money released (nothing held, nothing charged); Cloudflare's SDK is told to retry."""
    from tests.playground.test_serving_faults import broker_unreachable

    card = factories.card(organisation=factories.organisation(slug="facebook"))
    factories.route(card=card, price=PRICE)
    credit_grant(user=other_user, amount=Decimal("1.00"), reason="test")
    _, key = api_key_create(user=other_user, name="ci")
    with broker_unreachable():
        response = post(client, flavour, card.model_id, {"auth": f"Bearer {key}"}, jpeg())
    assert response.status_code == 503, response.content
    assert code_of(flavour, response) == "queue_unavailable"
    assert int(response["Retry-After"]) >= 1
    assert "Retry" in message_of(flavour, response)
    if flavour == "cloudflare":
        assert response["x-should-retry"] == "true"
    assert set(Charge.objects.values_list("status", flat=True)) == {"voided"}
    assert wallet_for(other_user).balance == Decimal("1.00")


@pytest.mark.parametrize(
    ("flavour", "case", "retry"),
    [("cloudflare", "no_key", "false"), ("cloudflare", "rate", "true")],
)
def test_cloudflare_sdk_is_told_which_errors_to_retry(
    client, card, funded, storage, settings, flavour, case, retry
):
    who = funded
    if case == "no_key":
        who = None
    else:
        settings.VITRINE_API_RATE_PER_MINUTE = 1
        post(client, flavour, card.model_id, funded, b"not an image")
    response = post(client, flavour, card.model_id, who, jpeg())
    assert response.status_code == (401 if case == "no_key" else 429)
    assert response["x-should-retry"] == retry


def test_the_model_pages_error_table_lists_every_answer_of_the_contract(client, card):
    """The table on the model page (seed 000's Errors) says what the API answers: each
    status with its ``type`` and every code the contract tests above get for it."""
    import html
    import re
    from decimal import Decimal

    from billing.services.charges import _spend_cap_reached
    from billing.services.ledger import InsufficientCredits
    from catalog.errors import error_type_for
    from playground.failures import CANCELLED, FAILURES

    page = client.get(f"/models/{card.model_id}").content.decode()
    table = page[page.index('<section id="errors">') :]
    table = table[: table.index("</section>")]
    rows = {
        int(m["status"]): html.unescape(m["row"])
        for m in re.finditer(r'<tr data-status="(?P<status>\d+)">(?P<row>.*?)</tr>', table, re.S)
    }
    cells = {status: re.findall(r"<td>(.*?)</td>", row, re.S) for status, row in rows.items()}
    # The type the API answers: a 402's is insufficient_credits, as seed 000's table has it,
    # for an empty wallet and a spent cap alike (the table said invalid_request_error).
    empty_wallet = InsufficientCredits(balance=Decimal("0"), cost=Decimal("0.0002")).type
    spent_cap = _spend_cap_reached(cap=Decimal("1"), spent=Decimal("1"), cost=Decimal("0.0002"))
    assert empty_wallet == spent_cap.type == "insufficient_credits"
    answered = {402: empty_wallet, 503: "service_unavailable"}
    for status, (shown, type_, _codes, meaning) in cells.items():
        assert shown == str(status)
        expected = answered.get(status) or error_type_for(status)
        assert type_ == f"<code>{expected}</code>", status
        assert meaning.strip()
    listed = {
        (status, code)
        for status, row in cells.items()
        for code in re.findall(r"<code>([a-z_]+)</code>", row[2])
    }
    contract = {(status, code) for _case, status, code in REFUSALS} | set(OTHER_ERRORS)
    # A sync call whose job failed answers the job's code (playground/failures.py), a
    # cancelled one 409 job_cancelled; a provider's route without the user's key is refused.
    contract |= {(failure.status, code) for code, failure in FAILURES.items()}
    contract |= {(CANCELLED.status, "job_cancelled"), (400, "byok_required")}
    assert contract - listed == set()
    assert {s for s, _ in contract} | {400} <= set(rows)
    for status in (429, 503):
        assert "Retry-After" in cells[status][3]
    assert "retryable" in cells[500][3] and "retryable" in cells[503][3]


@pytest.mark.parametrize(
    ("flavour", "query", "body", "content_type", "param"),
    [
        ("hf", "?treshold=0.9", None, "image/jpeg", "treshold"),
        ("cloudflare", "?top_k=3", None, "image/jpeg", "top_k"),
        # A quote is Vitrine's (/v1/inference, /v1/detections): refused, never run and charged.
        ("hf", "?dry_run=true", None, "image/jpeg", "dry_run"),
        ("cloudflare", "?dry_run=true", None, "image/jpeg", "dry_run"),
        ("hf", "", {"inputs": "aGk=", "parameters": {"top_k": 2}}, "application/json",
         "parameters.top_k"),
        ("hf", "", {"inputs": "aGk=", "parameter": {"threshold": 0.9}}, "application/json",
         "parameter"),
        ("hf", "", {"inputs": "aGk=", "options": {"wait": True}}, "application/json",
         "options.wait"),
        ("cloudflare", "", {"image": [1, 2], "threshold": 0.9}, "application/json",
         "threshold"),
    ],
)  # fmt: skip
def test_unknown_options_are_refused_naming_them_on_the_drop_ins(
    client, card, funded, storage, flavour, query, body, content_type, param
):
    data = jpeg() if body is None else json.dumps(body)
    response = client.post(
        url(flavour, card.model_id) + query, data=data, content_type=content_type,
        headers={"Authorization": funded["auth"]},
    )  # fmt: skip
    assert response.status_code == 400, response.content
    assert code_of(flavour, response) == "unknown_parameter"
    assert f"'{param}'" in message_of(flavour, response)
    assert Job.objects.count() == 0 and Charge.objects.count() == 0


@pytest.mark.parametrize(("field", "value"), [("parameters", [0.9]), ("options", "wait")])
def test_hf_body_fields_that_are_not_an_object_are_refused(
    client, card, funded, storage, field, value
):
    body = {"inputs": base64.b64encode(jpeg()).decode(), field: value}
    response = post(client, "hf", card.model_id, funded, json.dumps(body), "application/json")
    assert response.status_code == 400, response.content
    assert code_of("hf", response) == "invalid_value"
    assert f"'{field}' must be a JSON object" in message_of("hf", response)
    assert Job.objects.count() == 0 and Charge.objects.count() == 0


def test_hf_legacy_body_options_work_like_the_headers(client, card, funded, storage, settings):
    """{"options": {"wait_for_model": true}}: no early 503 for a cold model (the job is
    queued and waited for; nobody runs it here, so it is cancelled at the bound)."""
    settings.VITRINE_MODEL_LOAD_ESTIMATE = 600
    settings.VITRINE_HF_WAIT_FOR_MODEL = 1
    body = {"inputs": base64.b64encode(jpeg()).decode(), "options": {"wait_for_model": True}}
    response = post(client, "hf", card.model_id, funded, json.dumps(body), "application/json")
    assert response.status_code == 503 and code_of("hf", response) == "model_loading"
    assert list(Job.objects.values_list("status", flat=True)) == ["cancelled"]
    body["options"] = {"wait_for_model": "yes"}
    bad = post(client, "hf", card.model_id, funded, json.dumps(body), "application/json")
    assert bad.status_code == 400 and code_of("hf", bad) == "invalid_value"


def test_a_hf_client_on_v1_inference_gets_the_lifecycle_of_that_route(
    client, card, successor, funded, storage
):
    ModelCard.objects.filter(pk=card.pk).update(
        status="deprecated", deprecation_date="2026-11-01", sunset_date="2027-01-01",
        replacement=successor,
    )  # fmt: skip
    response = post(
        client, "vitrine", card.model_id, funded, b"hello, not an image",
        **{"User-Agent": "unknown/None; hf_hub/2.4.0"},
    )  # fmt: skip
    assert response.status_code == 415 and code_of("hf", response) == "unsupported_format"
    assert_lifecycle_headers(response, "vitrine", card, successor)  # /v1/inference/<successor>
