"""A job's message sent with one Redis command (playground.messages) against a real broker.

The short path exists for speed only: what a worker receives must be what Celery's
``apply_async`` would have sent, field by field, and anything the short path does not
build (another broker, a countdown, a message sent from inside a task, a broker away) must
go through Celery as before, never be dropped.
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import redis
import structlog

from config.celery import app
from config.settings.env import redis_client_url
from playground import messages
from playground.services import ENQUEUE_RETRY_POLICY
from playground.tasks import REQUEST_ID_HEADER, run_detection
from tests.conftest import _reset_producer_pool, free_port

# Fields that name one message (a new uuid each): the rest must be equal.
MESSAGE_IDS = (("headers", "id"), ("headers", "root_id"), ("properties", "correlation_id"))


@pytest.fixture
def broker(broker_url):
    """The app sending to the session's real broker; a queue of this test's own."""
    previous = app.conf.broker_url
    app.conf.broker_url = broker_url
    _reset_producer_pool(app)
    server = redis.Redis.from_url(redis_client_url(broker_url))
    queue = f"test-messages-{uuid.uuid4().hex[:8]}"
    try:
        yield server, queue
    finally:
        server.delete(queue)
        server.close()
        app.conf.broker_url = previous
        _reset_producer_pool(app)


def _sent(server: redis.Redis, queue: str) -> list[dict]:
    """The queue's messages, oldest first (kombu pushes on the left, pops on the right)."""
    return [json.loads(raw) for raw in reversed(server.lrange(queue, 0, -1))]


def _without_ids(message: dict) -> dict:
    message = json.loads(json.dumps(message))
    task_id = message["headers"]["id"]
    for part, name in MESSAGE_IDS:
        assert message[part][name] == task_id
        message[part][name] = "<id>"
    assert (
        str(uuid.UUID(message["properties"]["delivery_tag"]))
        == (message["properties"]["delivery_tag"])
    )
    message["properties"]["delivery_tag"] = "<tag>"
    return message


def _celery_must_not_send(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the short path fell back to apply_async")

    monkeypatch.setattr(run_detection, "apply_async", refuse)


def test_the_short_path_sends_the_message_apply_async_sends(broker, monkeypatch):
    server, queue = broker
    job_id = str(uuid.uuid4())
    headers = {REQUEST_ID_HEADER: "req-messages-1"}
    # django-structlog's receivers put the request's context in the message's headers.
    structlog.contextvars.bind_contextvars(request_id="req-messages-1", user_id=7)
    try:
        run_detection.apply_async(
            (job_id,), queue=queue, headers=headers, retry=True,
            retry_policy=ENQUEUE_RETRY_POLICY,
        )  # fmt: skip
        with monkeypatch.context() as patched:
            _celery_must_not_send(patched)
            messages.publish(
                run_detection, (job_id,), queue=queue, headers=headers, retry=True,
                retry_policy=ENQUEUE_RETRY_POLICY,
            )  # fmt: skip
    finally:
        structlog.contextvars.unbind_contextvars("request_id", "user_id")
    celerys, ours = _sent(server, queue)
    assert ours["headers"]["id"] != celerys["headers"]["id"]
    assert ours["headers"]["__django_structlog__"]["request_id"] == "req-messages-1"
    assert _without_ids(ours) == _without_ids(celerys)


def test_a_message_sent_the_short_way_is_read_as_celery_reads_it(broker, monkeypatch):
    """The worker's side: kombu's channel takes it off the queue and Celery's protocol 2
    reading gives the task, its argument and the request id."""
    _, queue = broker
    job_id = str(uuid.uuid4())
    _celery_must_not_send(monkeypatch)
    messages.publish(run_detection, (job_id,), queue=queue, headers={REQUEST_ID_HEADER: "r-2"})
    with app.connection_for_read() as connection:
        received = connection.default_channel.basic_get(queue, no_ack=True)
    assert received.headers["task"] == "playground.run_detection"
    assert received.headers[REQUEST_ID_HEADER] == "r-2"
    limits = [run_detection.time_limit, run_detection.soft_time_limit]
    assert received.headers["timelimit"] == limits
    args, kwargs, embed = received.decode()
    assert (args, kwargs) == ([job_id], {})
    assert embed == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    assert received.delivery_info["routing_key"] == queue


def test_messages_go_on_after_redis_drops_its_connections(broker):
    server, queue = broker
    messages.publish(run_detection, ("a",), queue=queue, headers={})
    server.client_kill_filter(_type="normal", skipme=True)  # a restart, a failover
    messages.publish(run_detection, ("b",), queue=queue, headers={})
    _reset_producer_pool(app)  # what a fork does to the pool
    messages.publish(run_detection, ("c",), queue=queue, headers={})
    sent = [json.loads(base64.b64decode(m["body"]))[0] for m in _sent(server, queue)]
    # A command lost with its connection may be sent again (redis-py's retry, or Celery's
    # after it): a job's message delivered twice runs it once (its claim). None is lost.
    assert sorted(set(map(tuple, sent))) == [("a",), ("b",), ("c",)]


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"countdown": 5}, "a countdown is an eta"),
        ({"priority": 3}, "a priority picks another list"),
    ],
    ids=["countdown", "priority"],
)
def test_what_the_short_path_does_not_build_goes_through_celery(broker, monkeypatch, options, why):
    server, queue = broker
    calls = []
    monkeypatch.setattr(run_detection, "apply_async", lambda *a, **kw: calls.append((a, kw)))
    messages.publish(run_detection, ("x",), queue=queue, headers={}, **options)
    assert calls == [((("x",),), {"queue": queue, "headers": {}, **options})], why
    assert server.llen(queue) == 0


def test_another_broker_goes_through_celery(monkeypatch):
    calls = []
    monkeypatch.setattr(run_detection, "apply_async", lambda *a, **kw: calls.append(kw["queue"]))
    previous = app.conf.broker_url
    app.conf.broker_url = "amqp://guest:guest@127.0.0.1:5672//"
    try:
        messages.publish(run_detection, ("x",), queue="cpu", headers={})
    finally:
        app.conf.broker_url = previous
    assert calls == ["cpu"]


def test_inside_a_task_the_message_goes_through_celery(broker, monkeypatch):
    """A task sending a message is its parent (parent_id, root_id): Celery's path says so."""
    _, queue = broker
    calls = []
    monkeypatch.setattr(run_detection, "apply_async", lambda *a, **kw: calls.append(kw["queue"]))
    monkeypatch.setattr(type(app), "current_worker_task", property(lambda self: run_detection))
    messages.publish(run_detection, ("x",), queue=queue, headers={})
    assert calls == [queue]


def test_a_broker_away_falls_back_to_celery_which_raises(broker, monkeypatch):
    """Nothing is dropped quietly: with the broker away the short path fails, Celery's path
    retries by its policy and raises, and the caller (services._send) records the job as
    not enqueued for the sweeper."""
    _, queue = broker
    app.conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"
    _reset_producer_pool(app)
    celerys = run_detection.apply_async
    calls = []

    def through_celery(*args, **kwargs):
        calls.append(kwargs["queue"])
        return celerys(*args, **kwargs)

    monkeypatch.setattr(run_detection, "apply_async", through_celery)
    with pytest.raises(Exception, match=r"(?i)connect|refused"):
        messages.publish(
            run_detection, ("x",), queue=queue, headers={}, retry=True,
            retry_policy=ENQUEUE_RETRY_POLICY,
        )  # fmt: skip
    assert calls == [queue]
