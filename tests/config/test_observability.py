"""Traceable: X-Request-Id on every response and in every log line; Sentry only with a DSN.

The job side (the id on the row, in the API, in the worker's lines) is
tests/playground/test_job_tracing.py."""

from __future__ import annotations

import gzip
import io
import json
import logging
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from asgiref.sync import async_to_sync
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import AsyncClient
from PIL import Image

from tests import factories

GOOD_ID = "client-req_0001:abc.DEF-9"
HEX32 = r"[0-9a-f]{32}"


def jpeg(width=80, height=60) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buffer, format="JPEG")
    return buffer.getvalue()


def upload() -> SimpleUploadedFile:
    return SimpleUploadedFile("cats.jpg", jpeg(), content_type="image/jpeg")


# --- the header ------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_well_formed_caller_id_is_echoed(client):
    response = client.get("/models", headers={"X-Request-Id": GOOD_ID})
    assert response.status_code == 200
    assert response["X-Request-Id"] == GOOD_ID


@pytest.mark.django_db
@pytest.mark.parametrize(
    "incoming",
    [
        None,
        "",
        "short",  # under 8 characters
        "x" * 129,  # over 128
        "has spaces in it",
        'quote"d-id-1234',
        "abc12345\r\nSet-Cookie: session=stolen",  # header injection
        "abc12345\nX-Evil: 1",
        "ünïcödé-12345",
    ],
)
def test_a_missing_or_malformed_id_is_replaced_by_a_fresh_one(client, incoming):
    headers = {} if incoming is None else {"X-Request-Id": incoming}
    response = client.get("/models", headers=headers)
    assert response.status_code == 200
    assert response["X-Request-Id"] != incoming
    assert re.fullmatch(HEX32, response["X-Request-Id"])
    assert "X-Evil" not in response and "session" not in response.cookies


@pytest.mark.django_db
def test_two_requests_get_two_ids(client):
    first, second = client.get("/models"), client.get("/models")
    assert first["X-Request-Id"] != second["X-Request-Id"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "status", "json_error"),
    [
        ("/v1/models/no-such/model", 404, True),  # the API's JSON 404
        ("/v1/no-such-endpoint", 404, True),
        ("/models/no-such/model", 404, False),  # an HTML 404
        ("/static/no-such-file.css", 404, False),
        ("/models", 200, False),  # an HTML page
        ("/static/playground/playground.js", 200, False),  # WhiteNoise's static files
    ],
)
def test_every_response_carries_the_id(client, settings, path, status, json_error):
    settings.WHITENOISE_USE_FINDERS = True  # serve static/ as in development, no collectstatic
    response = client.get(path, headers={"X-Request-Id": GOOD_ID})
    assert response.status_code == status
    assert response["X-Request-Id"] == GOOD_ID
    if json_error:
        assert set(response.json()["error"]) >= {"message", "type", "code", "param"}


@pytest.mark.django_db
def test_an_api_400_carries_the_id(client):
    card = factories.card()
    factories.route(card=card)
    response = client.post(
        f"/v1/inference/{card.model_id}?threshold=2",
        data=jpeg(),
        content_type="image/jpeg",
        headers={"X-Request-Id": GOOD_ID},
    )
    assert response.status_code in (400, 401)
    assert response.json()["error"]["code"]
    assert response["X-Request-Id"] == GOOD_ID


@pytest.mark.django_db(transaction=True)
def test_the_middleware_works_under_asgi_too(json_log):
    client = AsyncClient()
    response = async_to_sync(client.get)("/v1/no-such-endpoint", headers={"X-Request-Id": GOOD_ID})
    assert response.status_code == 404
    assert response["X-Request-Id"] == GOOD_ID
    finished = [line for line in json_log() if line["event"] == "request_finished"]
    assert finished and finished[-1]["request_id"] == GOOD_ID


# --- the log lines ----------------------------------------------------------------------
@pytest.mark.django_db
def test_log_lines_of_a_request_are_json_with_its_id(client, json_log):
    response = client.get("/v1/models/no-such/model", headers={"X-Request-Id": GOOD_ID})
    assert response.status_code == 404
    lines = json_log()
    events = {line["event"] for line in lines if line.get("request_id") == GOOD_ID}
    assert {"request_started", "request_finished"} <= events
    # Django's own line about the 404 too, logged after the middleware returned.
    django_lines = [line for line in lines if line["logger"] == "django.request"]
    assert django_lines and django_lines[-1]["request_id"] == GOOD_ID
    assert django_lines[-1]["request"] == "GET /v1/models/no-such/model"
    for line in lines:
        assert {"timestamp", "level", "logger", "event"} <= set(line)
    # Nothing stays bound after the request: a later line outside it has no id.
    logging.getLogger("vitrine.test").info("outside any request")
    assert "request_id" not in json_log()[-1]


LOG_ONE_LINE = (
    "import django, logging; django.setup(); "
    "logging.getLogger('vitrine.check').warning('disk %s full', 'var')"
)
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "x" * 60,
    "ALLOWED_HOSTS": "vitrine.example",
    "BYOK_ENCRYPTION_KEY": "k" * 32,
}


def test_production_logs_json_lines_and_development_readable_ones():
    production = _run_django(LOG_ONE_LINE, **PRODUCTION)
    assert production.returncode == 0, production.stderr
    (line,) = [json.loads(x) for x in production.stderr.splitlines() if x.startswith("{")]
    assert (line["event"], line["level"], line["logger"]) == (
        "disk var full",
        "warning",
        "vitrine.check",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", line["timestamp"])
    development = _run_django(LOG_ONE_LINE)
    assert development.returncode == 0, development.stderr
    assert "[warning  ] disk var full" in development.stderr
    assert "{" not in development.stderr
    assert "{" in _run_django(LOG_ONE_LINE, LOG_FORMAT="json").stderr


# --- Sentry -----------------------------------------------------------------------------
def _run_django(code: str, **env: str) -> subprocess.CompletedProcess:
    from tests.config.test_settings import load_settings

    return load_settings(code, **env)


def test_sentry_is_not_initialised_without_a_dsn():
    code = "import django; django.setup(); import sentry_sdk; print(sentry_sdk.is_initialized())"
    result = _run_django(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


FAILING_REQUEST = """
import sys, types
import django
django.setup()
import sentry_sdk
from django.conf import settings
from django.test import Client
from django.urls import path

def boom(request):
    raise RuntimeError("a bug for Sentry")

urls = types.ModuleType("failing_urls")
urls.urlpatterns = [path("boom", boom)]
sys.modules["failing_urls"] = urls
settings.ROOT_URLCONF = "failing_urls"
response = Client(raise_request_exception=False).get("/boom", HTTP_X_REQUEST_ID=sys.argv[1])
print(sentry_sdk.is_initialized(), response.status_code, response["X-Request-Id"])
sentry_sdk.flush(timeout=30)
"""


class _Receiver(BaseHTTPRequestHandler):
    """A stand-in for sentry.io on loopback: keeps every envelope the SDK posts."""

    envelopes: list[bytes] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        type(self).envelopes.append(body)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def _events(envelopes: list[bytes]) -> list[dict]:
    events = []
    for envelope in envelopes:
        lines = envelope.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                events.append(json.loads(payload))
    return events


def test_an_error_reaches_sentry_tagged_with_the_request_id():
    _Receiver.envelopes = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        dsn = f"http://public@127.0.0.1:{server.server_address[1]}/1"
        code = FAILING_REQUEST.replace("sys.argv[1]", repr(GOOD_ID))
        result = _run_django(code, SENTRY_DSN=dsn, SENTRY_ENVIRONMENT="ci")
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "500", GOOD_ID]
    events = _events(_Receiver.envelopes)
    assert events, _Receiver.envelopes
    (event,) = [e for e in events if e.get("exception")]
    assert event["exception"]["values"][-1]["value"] == "a bug for Sentry"
    assert event["tags"]["request_id"] == GOOD_ID
    assert event["environment"] == "ci"
    assert "user" not in event or "ip_address" not in event["user"]  # send_default_pii off
