"""Abuse limits hold across web processes: two real uvicorn servers share one Redis.

Requests alternate between the two processes (and run several at once): together they
admit no more than the limit, and every refusal carries ``Retry-After`` (and, on the API,
the ``RateLimit-*`` headers). A per-process counter (memory, a session) would admit twice
the limit here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
import redis
from django.db import connection

from billing.services.keys import api_key_create
from billing.services.topups import credit_grant
from playground.models import Job
from tests import factories
from tests.conftest import REPO, database_url, wait_for
from tests.playground.test_inference_api import jpeg

UNREAD_QUEUE = "limits-test-nobody-reads-this"  # jobs are queued where no worker listens


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@pytest.fixture
def web_processes(transactional_db, limits_redis, broker_url, settings, tmp_path):
    """``start(**env)``: two uvicorn processes on this test's database and Redis."""
    procs: list[subprocess.Popen] = []

    def start(**env_extra: str) -> list[str]:
        env = {
            **os.environ,
            "DATABASE_URL": database_url(connection.settings_dict),
            "CELERY_BROKER_URL": broker_url,
            "VITRINE_LIMITS_REDIS_URL": limits_redis,
            "VITRINE_INFERENCE_QUEUE": UNREAD_QUEUE,
            "VITRINE_JOB_STORAGE": str(tmp_path / "jobs"),
            "VITRINE_SIGNUP_CREDIT": "0",
            "PYTHONUNBUFFERED": "1",
            **env_extra,
        }
        urls = []
        for i in range(2):
            port = free_port()
            argv = [sys.executable, "-m", "uvicorn", "config.asgi:application"]
            argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
            with Path(tmp_path / f"web-{i}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
                )
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            wait_for(lambda url=url: _up(url), timeout=60, message=f"{url} did not start: see logs")
        return urls

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)
    client = redis.Redis.from_url(limits_redis)
    client.delete(UNREAD_QUEUE)
    client.close()


def _up(url: str) -> bool:
    try:
        return http("GET", f"{url}/healthz")[0] == 200
    except OSError:
        return False


def test_api_calls_per_key_are_limited_across_two_processes(web_processes):
    limit = 5
    user = factories.user(username="ada")
    credit_grant(user=user, amount=Decimal("1"), reason="test")
    _, plaintext = api_key_create(user=user, name="ci")
    card = factories.card(display_name="DETR")
    factories.route(card=card, price=Decimal("0.0002"))
    urls = web_processes(VITRINE_API_RATE_PER_MINUTE=str(limit), VITRINE_SYNC_WAIT="0")
    image = jpeg()

    def call(i: int):
        return http(
            "POST",
            f"{urls[i % 2]}/v1/inference/{card.model_id}",
            image,
            {"Authorization": f"Bearer {plaintext}", "Content-Type": "image/jpeg"},
        )

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(call, range(4 * limit)))

    statuses = [status for status, _, _ in results]
    assert statuses.count(202) == limit, statuses
    assert statuses.count(429) == 3 * limit, statuses
    for status, headers, body in results:
        assert headers["RateLimit-Limit"] == str(limit)
        assert 0 <= int(headers["RateLimit-Remaining"]) < limit
        if status == 429:
            assert 1 <= int(headers["Retry-After"]) <= 60
            error = json.loads(body)["error"]
            assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert Job.objects.count() == limit


def test_free_tries_are_limited_per_ip_across_two_processes(web_processes):
    limit = 3
    card = factories.card(display_name="YOLOS tiny")
    factories.route(card=card)
    urls = web_processes(VITRINE_PLAYGROUND_PER_HOUR=str(limit))
    path = f"/models/{card.model_id}/try"

    # A CSRF token (the form needs one) but never a session cookie: each try is a
    # "new visitor" as far as cookies go.
    _, headers, _ = http("GET", f"{urls[0]}{path}")
    cookies = SimpleCookie()
    for value in headers.get_all("Set-Cookie"):
        cookies.load(value)
    token = cookies["csrftoken"].value
    boundary = "vitrine-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + jpeg()
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def attempt(i: int):
        return http(
            "POST",
            f"{urls[i % 2]}{path}",
            body,
            {
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Accept": "application/json",
                "Cookie": f"csrftoken={token}",
                "X-CSRFToken": token,
            },
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(attempt, range(3 * limit)))

    statuses = [status for status, _, _ in results]
    assert statuses.count(202) == limit, statuses
    assert statuses.count(429) == 2 * limit, statuses
    for status, headers, _ in results:
        if status == 429:
            assert 1 <= int(headers["Retry-After"]) <= 3600
    assert Job.objects.count() == limit


def test_jobs_in_flight_per_account_hold_under_concurrent_calls(web_processes):
    """The in-flight count is checked under a lock on the user row: concurrent calls in two
    processes cannot both see room for the last job (on PostgreSQL, READ COMMITTED)."""
    limit = 3
    user = factories.user(username="ada")
    credit_grant(user=user, amount=Decimal("1"), reason="test")
    _, plaintext = api_key_create(user=user, name="ci")
    card = factories.card(display_name="DETR")
    factories.route(card=card, price=Decimal("0.0002"))
    urls = web_processes(VITRINE_MAX_INFLIGHT_JOBS=str(limit), VITRINE_SYNC_WAIT="0")
    image = jpeg()

    def call(i: int):
        return http(
            "POST",
            f"{urls[i % 2]}/v1/inference/{card.model_id}",
            image,
            {"Authorization": f"Bearer {plaintext}", "Content-Type": "image/jpeg"},
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, range(4 * limit)))

    statuses = [status for status, _, _ in results]
    assert statuses.count(202) == limit, statuses
    assert statuses.count(429) == 3 * limit, statuses
    for status, headers, body in results:
        if status == 429:
            assert headers["Retry-After"] == "1"
            assert json.loads(body)["error"]["code"] == "too_many_inflight_jobs"
    assert Job.objects.filter(owner=user).count() == limit
