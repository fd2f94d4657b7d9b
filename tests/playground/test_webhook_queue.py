"""Webhook deliveries have their own queue (``VITRINE_WEBHOOK_QUEUE``): a receiver that
holds its deliveries holds only the workers of that queue, never the default queue's
reaper, health pings and retention. Real workers and a real receiver on loopback."""

from __future__ import annotations

import http.server
import os
import signal
import threading
from io import StringIO

import pytest
from django.core.management import call_command

from playground import webhooks
from playground.models import WebhookDelivery
from tests import factories
from tests.conftest import wait_for
from tests.playground.test_job_worker import photo

pytestmark = pytest.mark.worker


# Each read and the whole attempt may take nearly the task's soft limit: a held attempt
# keeps its worker process for all of a test's checks.
HELD_ATTEMPTS = {
    "VITRINE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
    "VITRINE_WEBHOOK_READ_TIMEOUT": "59",
    "VITRINE_WEBHOOK_ATTEMPT_TIMEOUT": "59",
}


class _Holding(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.hits.append(self.path)
        if not self.path.endswith("/at-once"):
            self.server.release.wait(120)  # answers only when the test lets it
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def holding_receiver():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Holding)
    server.hits, server.release = [], threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def test_a_receiver_holding_its_delivery_does_not_hold_the_default_queue(
    start_worker, holding_receiver, settings, tmp_path
):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    env = HELD_ATTEMPTS
    hooks = start_worker("--queues", settings.VITRINE_WEBHOOK_QUEUE, env_extra=env)
    default = start_worker("--queues", "default", env_extra=env)
    job = factories.finished_run(
        card=factories.card(), image_bytes=photo(), result=[], owner=factories.user()
    )
    delivery = WebhookDelivery.objects.create(
        job=job, url=holding_receiver.url, status=WebhookDelivery.Status.PENDING
    )

    webhooks._enqueue(delivery.pk, attempts=0)
    wait_for(lambda: holding_receiver.hits, timeout=120, message=hooks.output() + default.output())
    # The delivery is being held: the default queue still answers (the command raises if
    # no worker answers within its timeout).
    out = StringIO()
    call_command("worker_check", "--queue", "default", "--timeout", "30", stdout=out)
    assert out.getvalue().startswith("default: ok, ")

    holding_receiver.release.set()
    wait_for(
        lambda: WebhookDelivery.objects.get(pk=delivery.pk).status == "delivered",
        timeout=120, message=hooks.output(),
    )  # fmt: skip


def test_one_accounts_held_deliveries_do_not_hold_another_accounts(
    start_worker, holding_receiver, settings, tmp_path
):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    env = {**HELD_ATTEMPTS, "VITRINE_WEBHOOK_PER_ACCOUNT": "1"}
    # Two delivering processes; account A's receiver holds every answer.
    hooks = start_worker(
        "--queues", settings.VITRINE_WEBHOOK_QUEUE, "--concurrency", "2", env_extra=env
    )
    alice, bob = factories.user(), factories.user()
    card = factories.card()

    def delivery(owner, path):
        job = factories.finished_run(card=card, image_bytes=photo(), result=[], owner=owner)
        return WebhookDelivery.objects.create(
            job=job, url=holding_receiver.url + path, status=WebhookDelivery.Status.PENDING
        )

    held = [delivery(alice, "/held-1"), delivery(alice, "/held-2")]
    answered = delivery(bob, "/at-once")
    for d in (*held, answered):
        webhooks._enqueue(d.pk, attempts=0)

    # A's second delivery waits its turn (its account's one attempt at a time is held), so
    # the second process takes B's: delivered while A's receiver still holds the first.
    # Without the bound both processes were A's until its receiver let go (59 s here).
    wait_for(
        lambda: WebhookDelivery.objects.get(pk=answered.pk).status == "delivered",
        timeout=45, message=hooks.output(),
    )  # fmt: skip
    assert not holding_receiver.release.is_set()
    assert [d.attempts for d in WebhookDelivery.objects.filter(pk__in=[h.pk for h in held])] in (
        [1, 0], [0, 1],
    )  # fmt: skip

    holding_receiver.release.set()
    wait_for(
        lambda: all(
            WebhookDelivery.objects.get(pk=h.pk).status == "delivered" for h in held
        ),
        timeout=120, message=hooks.output(),
    )  # fmt: skip


class _FirstHeld(http.server.BaseHTTPRequestHandler):
    """Holds the first delivery (its sender's port noted), answers later ones at once."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.hits.append(self.client_address[1])
        if len(self.server.hits) == 1:
            self.server.release.wait(120)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_delivery_whose_worker_is_killed_mid_attempt_is_attempted_again(
    start_worker, settings, tmp_path
):
    # kill -9 of the pool process holding the attempt: the broker hands the message out
    # again at once, but the attempt was claimed (the count is one up) and that copy made
    # nothing; the delivery stayed pending until the sweep, over an hour later. Now the
    # copy looks again after the attempt's deadline and schedules the next attempt.
    import psutil

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    env = {
        "VITRINE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
        "VITRINE_WEBHOOK_ATTEMPT_TIMEOUT": "3",
        "VITRINE_WEBHOOK_CONNECT_TIMEOUT": "1",
        "VITRINE_WEBHOOK_RETRY_BASE": "1",
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FirstHeld)
    server.hits, server.release = [], threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hooks = start_worker("--queues", settings.VITRINE_WEBHOOK_QUEUE, env_extra=env)
        job = factories.finished_run(
            card=factories.card(), image_bytes=photo(), result=[], owner=factories.user()
        )
        delivery = WebhookDelivery.objects.create(
            job=job,
            url=f"http://127.0.0.1:{server.server_address[1]}/hook",
            status=WebhookDelivery.Status.PENDING,
        )
        webhooks._enqueue(delivery.pk, attempts=0)
        wait_for(lambda: server.hits, timeout=120, message=hooks.output())
        sender = [
            c.pid
            for c in psutil.net_connections(kind="tcp")
            if c.laddr and c.laddr.port == server.hits[0] and c.pid
        ]
        assert sender, "the delivering process was not found"
        os.kill(sender[0], signal.SIGKILL)

        wait_for(
            lambda: WebhookDelivery.objects.get(pk=delivery.pk).status == "delivered",
            timeout=90, message=hooks.output(),
        )  # fmt: skip
        delivery.refresh_from_db()
        assert delivery.attempts == 2
        assert len(server.hits) == 2
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
