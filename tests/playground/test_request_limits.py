"""Body limits before the body is read, streamed bodies cut, job errors told to callers."""

from __future__ import annotations

import asyncio
import io
import json
import re
from decimal import Decimal

import pytest
from PIL import Image

from billing.services.keys import api_key_create, provider_key_save
from playground import services
from playground.body_limits import ENVELOPE_SLACK, base64_length, body_limit
from playground.failures import FAILURES, job_failure
from playground.middleware import STREAMED_CHUNK, BodyLimitASGIMiddleware
from playground.models import Job
from tests import factories

pytestmark = pytest.mark.django_db
LEAKS = ("/", "$", "VITRINE_", "Error", "Exception", "Install", "install")


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 90)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_a_json_body_may_carry_a_full_size_image_as_base64(settings):
    settings.VITRINE_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
    assert body_limit("image/jpeg") == 20 * 1024 * 1024
    assert body_limit("application/json") == base64_length(20 * 1024 * 1024) + ENVELOPE_SLACK
    assert body_limit("application/json") == 27_962_028 + ENVELOPE_SLACK
    assert body_limit("multipart/form-data; boundary=x") == body_limit("application/json")


# --- streamed bodies under ASGI -------------------------------------------------------
def asgi_post(
    path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]], query: bytes = b""
) -> dict:
    """POST ``chunks`` as a streamed body (no Content-Length) through the real ASGI app."""
    from config.asgi import application

    assert isinstance(application.app, BodyLimitASGIMiddleware)  # inside ServerStartup
    pending = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    pending[-1]["more_body"] = False
    read = {"chunks": 0}
    sent: list[dict] = []

    async def receive():
        if pending:
            read["chunks"] += 1
            return pending.pop(0)
        await asyncio.sleep(3600)  # a client that waits for the answer

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
        "root_path": "", "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 1), "server": ("testserver", 80),
    }  # fmt: skip
    asyncio.run(asyncio.wait_for(application(scope, receive, send), timeout=60))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]}
    return {
        "status": start["status"],
        "body": body,
        "chunks_read": read["chunks"],
        "headers": headers,
    }


@pytest.mark.django_db(transaction=True)
def test_a_streamed_body_is_cut_at_the_limit_without_reading_the_rest(settings):
    settings.VITRINE_MAX_UPLOAD_BYTES = 10_000
    chunks = [b"\xff" * 4096] * 50  # 200 kB, sent without a Content-Length
    answer = asgi_post("/v1/inference/org/model", chunks, [(b"content-type", b"image/jpeg")])
    assert answer["status"] == 413
    error = json.loads(answer["body"])["error"]
    # A raw image's code, as when its Content-Length says it is too large.
    assert (error["code"], error["message"]) == (
        "image_too_large",
        "The upload is over the limit of 10,000 bytes.",
    )
    assert answer["chunks_read"] == 3  # 12 kB: one chunk past the 10 kB limit, no more
    # A JSON body streamed past its limit: the envelope's code.
    chunks = [b"{" + b" " * 4095] + [b" " * 4096] * 20_000
    answer = asgi_post("/v1/inference/org/model", chunks, [(b"content-type", b"application/json")])
    assert answer["status"] == 413
    assert json.loads(answer["body"])["error"]["code"] == "request_too_large"


@pytest.mark.django_db(transaction=True)
def test_a_declared_length_over_the_limit_is_refused_before_a_byte_is_read(settings):
    settings.VITRINE_MAX_UPLOAD_BYTES = 10_000
    headers = [(b"content-type", b"image/jpeg"), (b"content-length", b"314572800")]
    answer = asgi_post("/v1/inference/org/model", [b"\xff" * 10], headers)
    assert (answer["status"], answer["chunks_read"]) == (413, 0)
    error = json.loads(answer["body"])["error"]
    assert error["message"] == "The upload is 314,572,800 bytes; the limit is 10,000 bytes."


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/v1/inference/org/model", "/hf/models/org/model"])
def test_a_refusal_before_the_application_is_dressed_as_the_applications_answers(settings, path):
    """Its request id (the caller's, or a new one) and, on the API, the CORS headers: a
    page's fetch() of a too-large upload read a network error, not the 413, and the answer
    named no request id to look up (session 46's client probe). Compact JSON, as the views'."""
    settings.VITRINE_MAX_UPLOAD_BYTES = 10_000
    declared = [(b"content-type", b"image/jpeg"), (b"content-length", b"314572800")]
    origin = [(b"origin", b"https://app.example")]
    answer = asgi_post(path, [b"\xff" * 10], [*declared, *origin])
    assert answer["status"] == 413
    assert re.fullmatch(r"[0-9a-f]{32}", answer["headers"]["x-request-id"])
    assert answer["headers"]["access-control-allow-origin"] == "*"
    assert "X-Request-Id" in answer["headers"]["access-control-expose-headers"]
    compact = json.dumps(json.loads(answer["body"]), separators=(",", ":")).encode()
    assert answer["body"] == compact
    # The caller's own id, when well formed, is the answer's; a streamed body cut short too.
    mine = [(b"x-request-id", b"client-trace-0001")]
    cut = asgi_post(path, [b"\xff" * 4096] * 10, [(b"content-type", b"image/jpeg"), *mine])
    assert (cut["status"], cut["headers"]["x-request-id"]) == (413, "client-trace-0001")
    assert cut["headers"]["access-control-allow-origin"] == "*"


@pytest.mark.django_db(transaction=True)
def test_a_streamed_image_reaches_the_api_whole(settings, other_user):
    """Chunked (curl -T, a generator given to requests, a stream given to fetch): Django reads
    Content-Length bytes of a body, so the middleware hands it on with its length; without
    that the API saw no image (400 missing_image)."""
    settings.VITRINE_MAX_UPLOAD_BYTES = 1_000_000
    card = factories.card()
    factories.route(card=card, price=Decimal("0.0002"))
    _, key = api_key_create(user=other_user, name="k")
    buffer = io.BytesIO()
    Image.effect_noise((640, 480), 64).convert("RGB").save(buffer, format="JPEG")
    image = buffer.getvalue()
    assert len(image) > STREAMED_CHUNK  # handed on in more than one message
    chunks = [image[i : i + 4000] for i in range(0, len(image), 4000)]
    headers = [(b"content-type", b"image/jpeg"), (b"authorization", f"Bearer {key}".encode())]
    answer = asgi_post(f"/v1/inference/{card.model_id}", chunks, headers, b"dry_run=true")
    assert answer["status"] == 200, answer["body"]
    quote = json.loads(answer["body"])
    assert (quote["object"], quote["image"]["bytes"]) == ("quote", len(image))
    assert answer["chunks_read"] == len(chunks)
    # An empty streamed body is an empty body (400 missing_image), not a hang.
    answer = asgi_post(f"/v1/inference/{card.model_id}", [b""], headers, b"dry_run=true")
    assert answer["status"] == 400
    assert json.loads(answer["body"])["error"]["code"] == "missing_image"


@pytest.mark.django_db(transaction=True)
def test_a_streamed_body_under_the_limit_still_reaches_the_api(settings):
    settings.VITRINE_MAX_UPLOAD_BYTES = 10_000
    answer = asgi_post("/v1/inference/org/model", [b"\xff" * 100] * 3, [])
    assert answer["status"] == 401  # the API answered: no key was sent
    assert answer["chunks_read"] == 3


# --- job errors, as callers see them ----------------------------------------------------
def test_every_failure_code_has_a_deliberate_status_and_no_internals():
    assert {
        "inference_error", "model_load_failed", "provider_key_invalid", "provider_unavailable",
        "image_missing", "weights_not_installed", "attempts_exhausted", "timeout",
        "provider_unreachable", "provider_error", "provider_auth_failed",
    } <= set(FAILURES)  # fmt: skip
    for code, failure in FAILURES.items():
        assert 400 <= failure.status < 600, code
        if failure.message is not None:
            assert not any(leak in failure.message for leak in LEAKS), code
    assert job_failure("something_new", "/srv/x: KeyError")[0:2] == (500, "server_error")
    assert "/srv" not in job_failure("something_new", "/srv/x: KeyError")[2]


OPERATOR_MESSAGE = (
    "The weights of org/x at revision main are not installed: looked in /srv/weights/org/x/main "
    "and the Hugging Face cache. Install them in $VITRINE_WEIGHTS_DIR/<org>/<name>/<revision>"
)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("weights_not_installed", 503),
        ("model_load_failed", 503),
        ("inference_error", 500),
        ("image_missing", 503),
        ("provider_key_invalid", 400),
        ("provider_unavailable", 503),
    ],
)
def test_a_failed_job_shows_the_caller_no_server_detail(
    client, other_user, settings, tmp_path, code, status
):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card()
    factories.route(card=card, price=Decimal("0"))
    job = services.job_create(card=card, image_bytes=jpeg(), owner=other_user)
    job = services.job_claim(job_id=job.pk, worker="test")
    services.job_fail(job=job, code=code, message=OPERATOR_MESSAGE)
    _, key = api_key_create(user=other_user, name="k")

    resource = client.get(f"/v1/jobs/{job.pk}", headers={"Authorization": f"Bearer {key}"})
    error = resource.json()["error"]
    assert error["code"] == code
    assert error["message"] == job_failure(code)[2]
    assert "/srv" not in error["message"] and "VITRINE" not in error["message"]
    assert job_failure(code)[0] == status
    # The operator keeps the detail.
    assert Job.objects.get(pk=job.pk).error_message == OPERATOR_MESSAGE[:500]
    # The try page's job JSON (and its HTML page) use the same caller-facing text.
    from playground.views import job_json

    assert job_json(Job.objects.get(pk=job.pk))["error"] == error


# --- BYOK keys with no account id ---------------------------------------------------
def test_a_stored_malformed_key_fails_the_job_with_a_400_not_a_500(
    client, other_user, settings, tmp_path, django_capture_on_commit_callbacks
):
    from playground.tasks import run_detection

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card()
    factories.route(card=card)
    factories.route(
        card=card, slug="cloudflare", provider="Cloudflare Workers AI", is_own=False,
        byok_available=True, provider_model_id="@cf/x", schema_flavour="cloudflare-workers-ai",
    )  # fmt: skip
    # Saved before keys were checked at save time: no account id.
    provider_key_save(user=other_user, provider="cloudflare", secret="just-a-token-1234")
    _, key = api_key_create(user=other_user, name="byok")
    auth = {"Authorization": f"Bearer {key}"}
    with django_capture_on_commit_callbacks():
        response = client.post(
            f"/v1/inference/{card.model_id}?route=cloudflare", data=jpeg(),
            content_type="image/jpeg", headers={**auth, "Prefer": "respond-async"},
        )  # fmt: skip
    job_id = response.json()["id"]
    run_detection(job_id)  # the adapter refuses the key before any network call
    error = client.get(f"/v1/jobs/{job_id}", headers=auth).json()["error"]
    assert error["code"] == "provider_key_invalid"
    assert "dashboard" in error["message"]
    assert job_failure("provider_key_invalid")[0] == 400


# --- the worker checks the fit again --------------------------------------------------
def test_the_worker_refuses_an_image_its_processor_cannot_use(
    settings, tmp_path, other_user, runtime_checkpoint
):
    from PIL import Image

    from playground.tasks import run_detection

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    # The web process knew no processor config (DETR's 800/1333 default: 2000x30 -> 1333x20
    # is fine); the checkpoint the worker loads resizes to at most 320: 2000x30 -> 320x5.
    card = factories.card()
    buffer = io.BytesIO()
    Image.new("RGB", (2000, 30), "white").save(buffer, format="PNG")
    job = services.job_create(card=card, image_bytes=buffer.getvalue(), owner=other_user)
    card.checkpoint_local_dir = str(runtime_checkpoint("yolos_tiny"))
    card.save()

    run_detection(str(job.pk))

    job.refresh_from_db()
    assert (job.status, job.error_code) == ("failed", "image_aspect_unsupported")
    assert "at most 20 times its short side" in job.error_message
    assert job_failure(job.error_code, job.error_message) == (
        400, "invalid_request_error", job.error_message,
    )  # fmt: skip
