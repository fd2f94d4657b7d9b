"""Vitrine's own flavour over real HTTP (the live test server) with a real worker:
the job resource on 200, float boxes, lifecycle headers, signed webhooks retried until
delivered and verified with the README's snippet, and no webhook to a private address."""

from __future__ import annotations

import http.server
import json
import re
import threading
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings

from billing.models import Charge
from billing.services.keys import api_key_create
from billing.services.ledger import wallet_for
from billing.services.topups import credit_grant
from billing.services.webhook_secrets import webhook_secret_get, webhook_secret_rotate
from catalog.models import ModelCard
from playground import webhooks
from playground.models import Job, WebhookDelivery
from tests import factories
from tests.conftest import wait_for
from tests.playground.test_job_worker import FLOOR, photo

pytestmark = pytest.mark.worker
README = Path(django_settings.BASE_DIR) / "README.md"
PRICE = Decimal("0.0002")


def readme_verify():
    """The README's webhook verification snippet, executed as written."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (snippet,) = [b for b in blocks if "def verify_vitrine_webhook" in b]
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    return namespace["verify_vitrine_webhook"]


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server = self.server
        with server.lock:
            server.hits.append({"headers": dict(self.headers), "body": body})
            status = server.statuses.pop(0) if server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver(settings):
    """A webhook receiver on loopback; the guard is told to allow 127.0.0.1 (tests only)."""
    settings.VITRINE_WEBHOOK_ALLOW_HOSTS = ["127.0.0.1"]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.hits, server.statuses, server.lock = [], [], threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/vitrine?src=test"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def checkpoint(runtime_checkpoint):
    return runtime_checkpoint("yolos_tiny")


@pytest.fixture
def live(transactional_db, live_server, settings, tmp_path, other_user, checkpoint):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_SYNC_WAIT = 600  # answered on the finished signal, not after the wait
    card = factories.card(checkpoint_local_dir=str(checkpoint), checkpoint_revision="rev-test-1")
    factories.route(card=card, price=PRICE)
    credit_grant(user=other_user, amount=Decimal("1"), reason="test")
    _, key = api_key_create(user=other_user, name="live")

    class Live:
        url = live_server.url
        user = other_user
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg"}

        def post(self, route, query="", image=None, **headers):
            return requests.post(
                f"{live_server.url}/v1/{route}/{card.model_id}{query}",
                data=image or photo(),
                headers={**self.headers, **headers},
                timeout=600,
            )

        def job(self, job_id, query=""):
            return requests.get(
                f"{live_server.url}/v1/jobs/{job_id}{query}", headers=self.headers, timeout=60
            ).json()

    Live.card = card
    return Live()


WORKER_ENV = {
    "VITRINE_DETECTION_FLOOR": FLOOR,
    "VITRINE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
    "VITRINE_WEBHOOK_RETRY_BASE": "1",
    "VITRINE_WEBHOOK_RETRY_MAX": "2",
}


def test_detections_answer_the_job_with_cost_and_provenance_and_float_boxes(start_worker, live):
    worker = start_worker(env_extra=WORKER_ENV)
    replacement = factories.card(slug="successor")
    ModelCard.objects.filter(pk=live.card.pk).update(
        status="deprecated", replacement=replacement, sunset_date="2027-01-01",
        deprecation_date="2026-11-01",
    )  # fmt: skip

    response = live.post("detections", f"?threshold={FLOOR}&box_format=float")

    assert response.status_code == 200, (response.text, worker.output())
    body = response.json()
    job = Job.objects.get(pk=body["id"])
    charge = Charge.objects.get(job_id=job.pk)
    assert (body["object"], body["status"], body["model"], body["model_revision"]) == (
        "detection_job", "succeeded", live.card.model_id, "rev-test-1",
    )  # fmt: skip
    assert (body["cost"], body["charge_status"], body["balance"]) == ("0.0002", "posted", "0.9998")
    assert body["price_version"]["id"] == charge.price_version_id
    assert body["price_version"]["price"] == "0.0002"
    assert wallet_for(live.user).balance == Decimal("0.9998")
    # Float boxes: the model's own coordinates, inside the 320x240 image, not all integers.
    assert body["box_format"] == "float" and body["detections"]
    boxes = [d["box"] for d in body["detections"]]
    assert all(0 <= b["xmin"] <= b["xmax"] <= 320 and 0 <= b["ymin"] <= b["ymax"] <= 240
               for b in boxes)  # fmt: skip
    assert any(not float(v).is_integer() for b in boxes for v in b.values())
    # Read back, the job keeps the format it was asked in; box_format=int gives HF's
    # truncation of those floats.
    assert live.job(body["id"], f"?threshold={FLOOR}")["detections"] == body["detections"]
    ints = live.job(body["id"], f"?threshold={FLOOR}&box_format=int")["detections"]
    for exact, truncated in zip(boxes, [d["box"] for d in ints], strict=True):
        assert all(isinstance(truncated[k], int) for k in truncated)
        assert all(abs(exact[k] - truncated[k]) <= 1 for k in exact)
    # Lifecycle headers on a successful call of a deprecated model.
    assert response.headers["Deprecation"] == "@1793491200"  # 2026-11-01T00:00:00Z
    assert response.headers["Sunset"] == "Fri, 01 Jan 2027 00:00:00 GMT"
    assert (
        f'<{live.url}/v1/detections/{replacement.model_id}>; rel="successor-version"'
        in response.headers["Link"]
    )

    # The Hugging Face route keeps its bare list, cost in headers only.
    hf = live.post("inference", f"?threshold={FLOOR}")
    assert hf.status_code == 200 and isinstance(hf.json(), list)
    assert set(hf.json()[0]) == {"label", "score", "box"}
    assert all(isinstance(v, int) for v in hf.json()[0]["box"].values())
    assert hf.headers["X-Vitrine-Cost"] == "0.0002"
    assert f"/v1/inference/{replacement.model_id}>" in hf.headers["Link"]


def test_a_webhook_is_retried_on_500_then_delivered_signed(start_worker, live, receiver):
    worker = start_worker(env_extra=WORKER_ENV)
    webhook_secret_rotate(user=live.user)  # the secret the dashboard shows now
    secret = webhook_secret_get(user=live.user)
    receiver.statuses = [500, 500]  # then 200

    response = live.post(
        "detections", f"?threshold={FLOOR}&webhook={requests.utils.quote(receiver.url)}",
        Prefer="respond-async",
    )  # fmt: skip

    assert response.status_code == 202, response.text
    created = response.json()
    assert created["webhook"] == {
        "url": receiver.url, "status": "waiting", "attempts": 0, "last_status_code": None,
        "last_error": "", "delivered": None,
    }  # fmt: skip
    wait_for(
        lambda: live.job(created["id"])["webhook"]["status"] == "delivered",
        timeout=300, interval=0.5, message=worker.output(),
    )  # fmt: skip
    final = live.job(created["id"])
    assert (final["webhook"]["attempts"], final["webhook"]["last_status_code"]) == (3, 200)
    assert final["webhook"]["last_error"] == ""
    assert len(receiver.hits) == 3

    verify = readme_verify()
    for hit in receiver.hits:
        headers = hit["headers"]
        assert headers["Vitrine-Webhook-Id"] == created["id"]
        assert headers["Vitrine-Event"] == "job.finished"
        assert verify(secret, hit["body"], headers["Vitrine-Signature"]) is True
        # A changed body, another secret or a stale timestamp fails the same check.
        assert verify(secret, hit["body"] + b" ", headers["Vitrine-Signature"]) is False
        assert verify("whsec_wrong", hit["body"], headers["Vitrine-Signature"]) is False
        assert verify(secret, hit["body"], headers["Vitrine-Signature"], tolerance=-1) is False
    delivered = json.loads(receiver.hits[-1]["body"])
    assert (delivered["id"], delivered["status"], delivered["cost"]) == (
        created["id"], "succeeded", "0.0002",
    )  # fmt: skip
    assert delivered["detections"] == final["detections"]
    failed_first = WebhookDelivery.objects.get(job_id=created["id"])
    assert failed_first.delivered_at is not None


def test_a_webhook_to_a_private_address_is_refused_at_creation_and_at_delivery(
    live, receiver, settings, start_worker
):
    settings.VITRINE_WEBHOOK_ALLOW_HOSTS = []
    refused = [
        "http://127.0.0.1:9/x", "http://169.254.169.254/latest", "http://[::1]/",
        "http://2130706433/", "ftp://example.com/", "https://u:p@example.com/",
    ]  # fmt: skip
    for url in refused:
        response = live.post("detections", f"?webhook={requests.utils.quote(url)}")
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_webhook"
        assert response.json()["error"]["param"] == "webhook"
    assert Job.objects.count() == 0 and Charge.objects.count() == 0

    # Allowed when the job was created, refused when it is delivered (the worker's guard has
    # no exemption): nothing reaches the receiver and the delivery fails without retries.
    settings.VITRINE_WEBHOOK_ALLOW_HOSTS = ["127.0.0.1"]
    worker = start_worker(env_extra={"VITRINE_DETECTION_FLOOR": FLOOR})
    job = live.post(
        "detections", f"?webhook={requests.utils.quote(receiver.url)}", Prefer="respond-async"
    ).json()
    wait_for(
        lambda: live.job(job["id"])["webhook"]["status"] == "failed",
        timeout=300, interval=0.5, message=worker.output(),
    )  # fmt: skip
    webhook = live.job(job["id"])["webhook"]
    assert webhook["attempts"] == 1 and "not a public internet address" in webhook["last_error"]
    assert receiver.hits == []


def test_the_delivery_guard_refuses_an_address_allowed_at_creation(live, receiver, settings):
    """The task itself (called in-process): the host is resolved and checked again."""
    job = Job.objects.create(
        card=live.card, owner=live.user, queue="cpu", image_sha256="0" * 64, image_bytes=1,
        original_width=1, original_height=1, width=1, height=1, status="succeeded", result=[],
    )  # fmt: skip
    delivery = WebhookDelivery.objects.create(job=job, url=receiver.url, status="pending")
    settings.VITRINE_WEBHOOK_ALLOW_HOSTS = []
    assert webhooks.webhook_deliver(delivery_id=delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_status_code) == (1, None)
    assert receiver.hits == []


def _finished_job(live, **fields):
    return Job.objects.create(
        card=live.card, owner=live.user, queue="cpu", image_sha256="0" * 64, image_bytes=1,
        original_width=1, original_height=1, width=1, height=1, status="succeeded", result=[],
        **fields,
    )  # fmt: skip


def test_two_copies_of_one_delivery_message_make_one_attempt(live, receiver):
    """Two workers holding copies of one message (a redelivery) at the same moment: the
    compare-and-set on the attempt count lets one of them send. Run on PostgreSQL too."""
    from django.db import connection

    delivery = WebhookDelivery.objects.create(
        job=_finished_job(live), url=receiver.url, status="pending"
    )
    start, outcomes = threading.Barrier(2), []

    def copy():
        start.wait()
        try:
            outcomes.append(webhooks.webhook_deliver(delivery_id=delivery.pk, attempts=0))
        finally:
            connection.close()

    threads = [threading.Thread(target=copy) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["", "delivered"]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, len(receiver.hits)) == ("delivered", 1, 1)
    # A later copy of the same message finds the attempt made.
    assert webhooks.webhook_deliver(delivery_id=delivery.pk, attempts=0) == ""


def test_the_reaper_sends_a_webhook_whose_message_was_lost(start_worker, live, receiver, settings):
    from datetime import timedelta

    from django.utils import timezone

    worker = start_worker(env_extra=WORKER_ENV)
    long_ago = timezone.now() - timedelta(seconds=settings.VITRINE_WEBHOOK_RETRY_MAX + 600)
    job = _finished_job(live, finished_at=long_ago)
    # The job ended but whoever ended it died before queueing its webhook.
    delivery = WebhookDelivery.objects.create(job=job, url=receiver.url)
    assert webhooks.webhooks_sweep() == 1
    wait_for(
        lambda: WebhookDelivery.objects.get(pk=delivery.pk).status == "delivered",
        timeout=240, interval=0.5, message=worker.output(),
    )  # fmt: skip
    assert len(receiver.hits) == 1 and receiver.hits[0]["headers"]["Vitrine-Webhook-Id"] == str(
        job.pk
    )


def test_a_webhook_whose_message_the_broker_refused_goes_at_the_next_sweep(
    start_worker, live, receiver
):
    """The job ends while the broker is away: its webhook's message cannot be sent. The
    delivery notes when it was due, and the reaper's next sweep once the broker is back
    sends it (before session 44 it waited for the sweep of lost messages, an hour and five
    minutes with the default backoff); the attempt's claim clears the note."""
    from tests.playground.test_serving_faults import broker_unreachable

    worker = start_worker(env_extra=WORKER_ENV)
    job = _finished_job(live)
    delivery = WebhookDelivery.objects.create(job=job, url=receiver.url)
    with broker_unreachable():
        webhooks.webhook_job_finished(job.pk)
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == ("pending", 0)
        assert delivery.resend_at is not None
        assert webhooks.webhooks_sweep() == 0  # still away: kept for the next sweep
    assert WebhookDelivery.objects.get(pk=delivery.pk).resend_at == delivery.resend_at
    assert webhooks.webhooks_sweep() == 1
    wait_for(
        lambda: WebhookDelivery.objects.get(pk=delivery.pk).status == "delivered",
        timeout=240, interval=0.5, message=worker.output(),
    )  # fmt: skip
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.resend_at, len(receiver.hits)) == (1, None, 1)
    assert webhooks.webhooks_sweep() == 0  # sent once


def test_under_uvicorn_the_job_body_lifecycle_headers_and_webhook(
    start_worker, live, receiver, broker_url, tmp_path, settings
):
    """The production server (ASGI: the awaited answer is built outside DRF) gives the
    same body, headers and webhook as the test server."""
    import os
    import subprocess
    import sys

    from django.db import connection

    from config.settings.env import redis_client_url
    from tests.conftest import REPO, database_url, free_port

    worker = start_worker(env_extra=WORKER_ENV)
    successor = factories.card(slug="next-one")
    ModelCard.objects.filter(pk=live.card.pk).update(
        status="deprecated", replacement=successor, sunset_date="2027-01-01",
        deprecation_date="2026-11-01",
    )  # fmt: skip
    port = free_port()
    env = {
        **os.environ, **WORKER_ENV,
        "DATABASE_URL": database_url(connection.settings_dict), "CELERY_BROKER_URL": broker_url,
        "VITRINE_REDIS_URL": redis_client_url(broker_url), "VITRINE_SYNC_WAIT": "600",
        "VITRINE_JOB_STORAGE": str(settings.VITRINE_JOB_STORAGE), "PYTHONUNBUFFERED": "1",
    }  # fmt: skip
    argv = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning"]  # fmt: skip
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as out:
        web = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:

        def up():
            try:
                return requests.get(f"{base}/healthz", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_for(up, timeout=120, message="uvicorn did not start")
        # The request head is bounded (h11 refuses one still incomplete past 16 KiB, so at
        # most one socket read more): a 1 MiB header never reaches Django.
        try:
            big = requests.get(f"{base}/healthz", headers={"X-Big": "a" * 2**20}, timeout=30)
        except requests.RequestException:
            pass  # refused (400), the connection reset while the head was still being sent
        else:
            assert big.status_code == 400, big.text
        # An image streamed without a Content-Length (requests sends a generator chunked)
        # reaches the API whole: a quote of its bytes, not "no image".
        image = photo()
        quote = requests.post(
            f"{base}/v1/detections/{live.card.model_id}", params={"dry_run": "true"},
            data=(image[i : i + 1000] for i in range(0, len(image), 1000)),
            headers=live.headers, timeout=60,
        )  # fmt: skip
        assert quote.status_code == 200, (quote.text, log.read_text())
        assert quote.json()["image"]["bytes"] == len(image)
        response = requests.post(
            f"{base}/v1/detections/{live.card.model_id}",
            params={"threshold": FLOOR, "webhook": receiver.url},
            data=photo(), headers=live.headers, timeout=600,
        )  # fmt: skip
        assert response.status_code == 200, (response.text, log.read_text(), worker.output())
        body = response.json()
        assert (body["status"], body["model_revision"], body["cost"]) == (
            "succeeded", "rev-test-1", "0.0002",
        )  # fmt: skip
        assert response.headers["Deprecation"] == "@1793491200"
        assert f"<{base}/v1/detections/{successor.model_id}>" in response.headers["Link"]
        wait_for(lambda: len(receiver.hits) == 1, timeout=240, interval=0.5)
        assert json.loads(receiver.hits[0]["body"])["id"] == body["id"]
    finally:
        web.terminate()
        web.wait(timeout=30)
