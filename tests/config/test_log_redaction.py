"""No secret from a query string reaches the logs: an API key sent as ``?api_key=vt_...``
(refused with 401) or a webhook URL's token is ``[redacted]`` in every line that carries
the request's path (django-structlog's request lines, the servers' access lines), its
parameter's name kept."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import quote

import pytest
import structlog

from config.settings.logs import REDACTED, RedactRequestLine, redact_text
from tests.conftest import REPO

KEY = "vt_0123abcd_S3cretS3cretS3cretS3cret-_S3cretS3cret0"
HOOK_TOKEN = "hook-T0ken-9f8e7d"
HOOK = f"https://hook.example/in?token={HOOK_TOKEN}&team=7"
SECRETS = (KEY, KEY.split("_", 2)[2], HOOK_TOKEN)
NAMES = (
    "key", "KEY", "access_token", "secret", "password", "signature", "sig", "auth", "apikey",
    "X-Amz-Signature", "X-Amz-Credential", "hub.verify_token", "client_secret", "private_key",
)  # fmt: skip


@pytest.mark.parametrize(
    ("line", "redacted"),
    [
        (f"GET /v1/jobs?api_key={KEY}", "GET /v1/jobs?api_key=[redacted]"),
        ("GET /v1/jobs?page=2&token=abc&limit=5", "GET /v1/jobs?page=2&token=[redacted]&limit=5"),
        *[(f"GET /x?{name}=s3cret&a=1", f"GET /x?{name}=[redacted]&a=1") for name in NAMES],
        (f"GET /v1/jobs?k={KEY}", "GET /v1/jobs?k=[redacted]"),  # a Vitrine key by its look
        (f"GET /v1/jobs/{KEY}", "GET /v1/jobs/[redacted]"),
        # A webhook URL with a token, as a query value: encoded (as clients send it) or not.
        (
            f"POST /v1/detections/a/b?webhook={quote(HOOK, safe='')}&threshold=0.5",
            "POST /v1/detections/a/b?webhook=https://hook.example/in?token=[redacted]%26team=7"
            "&threshold=0.5",
        ),
        (
            f"POST /v1/detections/a/b?threshold=0.5&webhook={HOOK}",
            "POST /v1/detections/a/b?threshold=0.5&webhook=https://hook.example/in"
            "?token=[redacted]&team=7",
        ),
        # Nothing secret: the line as it was.
        ("GET /accounts/login/?next=%2Faccount%2F", "GET /accounts/login/?next=%2Faccount%2F"),
        ("GET /runs?monkey=2&author=ada&page=", "GET /runs?monkey=2&author=ada&page="),
        ("GET /v1/jobs?flag&=&&", "GET /v1/jobs?flag&=&&"),
        ("Not Found: /v1/models/x", "Not Found: /v1/models/x"),
    ],
)
def test_secret_query_values_are_redacted_and_names_kept(line, redacted):
    assert redact_text(line) == redacted


# --- the lines a request writes (the test client, the project's logging config) ------------
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", f"/v1/jobs?api_key={KEY}"),
        ("get", f"/v1/jobs?page=1&key={KEY}"),
        ("post", f"/v1/detections/acme/detr?api_key={KEY}&webhook={quote(HOOK, safe='')}"),
        ("post", f"/hf/models/acme/detr?token={KEY}"),
    ],
)
def test_request_lines_carry_no_secret_from_the_query(client, json_log, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 401  # a key in the URL is not a key

    lines = json_log()
    request_lines = [line for line in lines if line["event"].startswith("request_")]
    assert {"request_started", "request_finished"} <= {line["event"] for line in request_lines}
    for line in request_lines:
        assert line["request"].startswith(f"{method.upper()} {path.split('?')[0]}?")
        assert f"={REDACTED}" in line["request"]
    text = json.dumps(lines)
    for secret in SECRETS:
        assert secret not in text


def test_any_line_naming_a_url_with_a_secret_is_redacted(json_log):
    logging.getLogger("vitrine.test").warning("webhook to %s failed", HOOK)
    structlog.get_logger("vitrine.test").warning("webhook_failed", url=HOOK, note=f"key {KEY}")
    first, second = json_log()[-2:]
    assert first["event"] == "webhook to https://hook.example/in?token=[redacted]&team=7 failed"
    assert second["url"] == "https://hook.example/in?token=[redacted]&team=7"
    assert second["note"] == "key [redacted]"


def test_an_access_record_built_like_uvicorns_is_redacted():
    from uvicorn.logging import AccessFormatter

    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/v1/jobs?api_key={KEY}", "1.1", 401), None,
    )  # fmt: skip
    assert RedactRequestLine().filter(record)
    line = AccessFormatter("%(client_addr)s - %(request_line)s %(status_code)s").format(record)
    assert line == "127.0.0.1:5000 - GET /v1/jobs?api_key=[redacted] HTTP/1.1 401 Unauthorized"


# --- real servers, started as README's "Production" and devstack start them ----------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


SERVERS = {
    # devstack (playground/management/commands/devstack.py) and the tests' web processes
    "uvicorn": ["-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port"],
    # README "Production": the inference pool and the pages pool, with an access log
    "gunicorn-uvicorn-worker": [
        "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.asgi:application",
        "-k", "uvicorn_worker.UvicornWorker", "--workers", "1", "--access-logfile", "-",
        "--bind",
    ],
    "gunicorn-wsgi": [
        "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi:application",
        "--workers", "1", "--access-logfile", "-", "--bind",
    ],
}  # fmt: skip


def _lines(text: str) -> list[str]:
    """Each line's text: a JSON line's ``event``, another line as it is."""
    return [json.loads(x)["event"] if x.startswith("{") else x for x in text.splitlines()]


@pytest.mark.parametrize("server", list(SERVERS))
def test_a_real_servers_access_and_request_lines_carry_no_secret(server, tmp_path):
    port = _free_port()
    address = str(port) if server == "uvicorn" else f"127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *SERVERS[server], address],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(f"{base}/v1/jobs")
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert _get(f"{base}/v1/jobs?api_key={KEY}") == 401
        assert _get(f"{base}/v1/jobs?page=1&webhook={quote(HOOK, safe='')}") == 401
        time.sleep(0.5)  # the access line is written after the response
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

    text = log.read_text()
    for secret in SECRETS:
        assert secret not in text, text
    # Both the access line (the server's) and request_finished (django-structlog's) are there.
    access = [line for line in _lines(text) if "api_key=[redacted]" in line]
    assert any('"GET /v1/jobs?api_key=[redacted] HTTP/1.1" 401' in line for line in access), text
    if server.startswith("gunicorn"):
        # gunicorn's own lines (config/gunicorn.conf.py) and uvicorn's, as the app's: JSON.
        lines = text.splitlines()
        assert lines and all(line.startswith("{") for line in lines), text
        events = [json.loads(line) for line in lines]
        assert any(e["event"].startswith("Booting worker") for e in events), text
        assert not any("color_message" in e for e in events), text
    finished = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
    assert {"GET /v1/jobs?api_key=[redacted]"} <= {
        line.get("request") for line in finished if line["event"] == "request_finished"
    }, text
    assert any("token=[redacted]" in line for line in text.splitlines()), text


def test_a_worker_that_fails_to_boot_is_logged_in_json_lines_its_traceback_one_field(tmp_path):
    """A log shipper reads one event per line: gunicorn's master lines and a worker's boot
    failure (its traceback was ~20 plain lines) are JSON lines like the app's; the settings'
    error stops no master (each worker reports it)."""
    env = {**os.environ, "LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1", "DEBUG": "0"}
    env.pop("SECRET_KEY", None)  # the settings refuse to load: every worker fails to boot
    result = subprocess.run(
        [
            sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py",
            "config.wsgi:application", "--workers", "1",
            "--bind", f"127.0.0.1:{_free_port()}", "--no-control-socket",
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).splitlines()
    # gunicorn prints the exception's message itself, bare, after logging it: that line only.
    plain = [line for line in lines if not line.startswith("{")]
    assert set(plain) == {"SECRET_KEY must be set when DEBUG is off."}, lines
    events = [json.loads(line) for line in lines if line.startswith("{")]
    (failed,) = [e for e in events if "SECRET_KEY must be set" in e.get("exception", "")]
    assert failed["level"] == "error" and failed["logger"] == "gunicorn.error"
    assert any(e["event"] == "Reason: Worker failed to boot." for e in events), events


@pytest.mark.django_db(transaction=True)
def test_a_quiet_celery_worker_writes_only_json_lines(broker_url, tmp_path):
    """README's worker commands (``celery -A config --quiet worker ...``): no banner, so
    every line from start-up to ready is JSON, like the app's."""
    from django.db import connection

    from tests.conftest import database_url, wait_for

    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "CELERY_BROKER_URL": broker_url,
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "config", "--quiet", "worker",
                "--queues", "default", "--concurrency", "1", "--without-mingle",
                "--without-gossip", "--hostname", f"quiet-{os.getpid()}@%h",
            ],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(
            lambda: " ready." in log.read_text() or proc.poll() is not None,
            timeout=120,
            message="the worker's ready line",
        )
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    lines = log.read_text().splitlines()
    assert lines and all(line.startswith("{") for line in lines), lines
    assert any(json.loads(line)["event"].endswith(" ready.") for line in lines), lines


def test_an_error_report_to_sentry_carries_no_secret_from_the_query():
    import threading
    from http.server import ThreadingHTTPServer

    from tests.config.test_observability import FAILING_REQUEST, _events, _Receiver, _run_django

    _Receiver.envelopes = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dsn = f"http://public@127.0.0.1:{server.server_address[1]}/1"
        code = FAILING_REQUEST.replace('"/boom"', repr(f"/boom?api_key={KEY}&page=2"))
        code = code.replace("sys.argv[1]", repr("sentry-redaction-1"))
        result = _run_django(code, SENTRY_DSN=dsn)
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    (event,) = [e for e in _events(_Receiver.envelopes) if e.get("exception")]
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    seen = [f["vars"]["request"] for f in frames if "request" in f.get("vars", {})]
    assert seen and all("/boom?api_key=[redacted]&page=2" in value for value in seen), seen
    for envelope in _Receiver.envelopes:
        assert KEY.encode() not in envelope
        assert KEY.split("_", 2)[2].encode() not in envelope


def test_a_sentry_events_request_is_redacted_however_deep():
    from config.settings.sentry import redact_transaction, tag_with_context

    url = f"https://vitrine.example/v1/jobs?api_key={KEY}"
    event = {
        "request": {"url": url, "query_string": "token=abc&page=2"},
        "extra": {"webhooks": [HOOK]},
    }
    for before_send in (tag_with_context, redact_transaction):
        sent = before_send(json.loads(json.dumps(event)), {})
        assert sent["request"] == {
            "url": "https://vitrine.example/v1/jobs?api_key=[redacted]",
            "query_string": "token=[redacted]&page=2",
        }
        assert sent["extra"] == {"webhooks": ["https://hook.example/in?token=[redacted]&team=7"]}
