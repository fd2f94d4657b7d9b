"""With RabbitMQ as the broker (README: ``CELERY_BROKER_URL``, "Redis or AMQP only"), against
a real RabbitMQ in a virtual host of this test's own.

A worker holds a countdown's message unacknowledged until it runs (``acks_late``), and
RabbitMQ closes the channel of a consumer that holds one past its ``consumer_timeout`` (30
minutes by default): Celery calls that ``PreconditionFailed`` unrecoverable and the worker
exits. A webhook's backoff may be configured up to an hour (``VITRINE_WEBHOOK_RETRY_MAX``),
so a long one is sent in steps of at most ``MAX_COUNTDOWN``.

RabbitMQ is looked for at ``TEST_AMQP_URL`` (default ``amqp://guest:guest@127.0.0.1:5672``);
the virtual host is made with ``rabbitmqctl`` and deleted after. Without either, skipped.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from datetime import datetime
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from kombu import Connection, Exchange, Queue

from config.celery import app
from playground import webhooks
from playground.tasks import deliver_webhook
from tests.conftest import _reset_producer_pool

pytestmark = pytest.mark.same_on_any_database  # no database; the broker is its own

AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672").rstrip("/")
RABBITMQ_DEFAULT_CONSUMER_TIMEOUT = 1800  # seconds


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [shutil.which("rabbitmqctl") or "rabbitmqctl", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def amqp_broker():
    """This module's own virtual host on a real RabbitMQ, as the Celery app's broker."""
    parts = urlsplit(AMQP_URL)
    try:
        socket.create_connection((parts.hostname, parts.port or 5672), timeout=2).close()
    except OSError:
        pytest.skip(f"no RabbitMQ at {parts.hostname}:{parts.port or 5672} (TEST_AMQP_URL)")
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is needed to make the test's virtual host")
    vhost = f"vitrine_test_{os.getpid()}_{secrets.token_hex(4)}"
    if _rabbitmqctl("add_vhost", vhost).returncode != 0:
        pytest.skip("rabbitmqctl could not make a virtual host")
    user = parts.username or "guest"
    _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    url = f"{AMQP_URL}/{vhost}"
    previous = app.conf.broker_url
    app.conf.broker_url = url
    _reset_producer_pool(app)
    try:
        yield url
    finally:
        app.conf.broker_url = previous
        _reset_producer_pool(app)
        _rabbitmqctl("delete_vhost", vhost)


def _take(url: str, queue: str = settings.VITRINE_WEBHOOK_QUEUE):
    """The next message on ``queue`` (taken off it), as a worker would receive it."""
    with Connection(url) as conn:
        declared = Queue(queue, Exchange(queue), routing_key=queue)(conn.default_channel)
        deadline = time.monotonic() + 10
        while (message := declared.get(no_ack=True)) is None:
            assert time.monotonic() < deadline, f"no message on {queue}"
            time.sleep(0.05)
        return message


def _eta_in(message) -> float:
    """Seconds from now until the message's ETA (None: at once)."""
    eta = message.headers.get("eta")
    return 0.0 if eta is None else datetime.fromisoformat(eta).timestamp() - time.time()


def test_a_long_webhook_backoff_is_never_held_past_rabbitmqs_ack_timeout(amqp_broker):
    """A retry an hour away (the configurable cap): the message a worker would hold until
    it runs is due within MAX_COUNTDOWN, well inside RabbitMQ's default consumer_timeout;
    it carries when the attempt is really due. (Sent with the whole hour as its countdown,
    a worker held it unacknowledged for 30 minutes and then exited.)"""
    sent = time.time()
    webhooks._enqueue(424242, attempts=9, countdown=3600)
    message = _take(amqp_broker)
    assert 0 < _eta_in(message) <= RABBITMQ_DEFAULT_CONSUMER_TIMEOUT / 2
    assert _eta_in(message) <= webhooks.MAX_COUNTDOWN + 2
    args, kwargs, _ = json.loads(message.body)
    assert args == [424242, 9]
    assert sent + 3600 - 2 <= kwargs["due"] <= time.time() + 3600


def test_a_step_that_runs_before_the_attempt_is_due_sends_the_rest_on(amqp_broker):
    """The message runs at its step's end: nothing is attempted (no delivery is read), and
    the rest of the wait is sent on, the last step without ``due``."""
    due = time.time() + 1500
    assert deliver_webhook.run(424242, 9, due) == ""
    message = _take(amqp_broker)
    assert webhooks.MAX_COUNTDOWN - 5 <= _eta_in(message) <= webhooks.MAX_COUNTDOWN + 2
    args, kwargs, _ = json.loads(message.body)
    assert (args, kwargs) == ([424242, 9], {"due": due})

    due = time.time() + 300
    assert deliver_webhook.run(424242, 9, due) == ""
    message = _take(amqp_broker)
    assert 295 <= _eta_in(message) <= 302
    args, kwargs, _ = json.loads(message.body)
    assert (args, kwargs) == ([424242, 9], {})


def test_a_short_backoff_is_sent_as_before(amqp_broker):
    webhooks._enqueue(424243, attempts=2, countdown=20)
    message = _take(amqp_broker)
    assert 15 <= _eta_in(message) <= 22
    args, kwargs, _ = json.loads(message.body)
    assert (args, kwargs) == ([424243, 2], {})
