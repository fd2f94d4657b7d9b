"""A task's message, sent with one Redis command where Celery's path would take ~1 ms.

Every inference call sends its job's ``run_detection`` message before its transaction
commits (``services.job_create``), so the publish is on the path of every call. Through
``apply_async`` it measured ~0.6 ms of Python in a warm process and ~1.2 ms in the web
process of a call (two cores, the cache cold after the last job) against ~0.14 ms for the
``LPUSH`` it ends in: the routing of the task's options, the producer pool and kombu's
retry wrapper, ~15 configuration lookups and three layers of message building, for a
message whose every field is known in advance.

``publish`` builds the message Celery would (protocol 2, JSON, base64 body, the task's
time limits and ``ignore_result``, the caller's headers), sends Celery's
``before_task_publish`` and ``after_task_publish`` signals around it as Celery does
(django-structlog puts the request's context in the headers and logs ``task_enqueued``
there), and pushes it onto the queue's list with the kombu channel's own Redis client, so
every broker URL form, its timeouts and TLS are the ones Celery uses. A worker cannot tell
the two apart: ``tests/playground/test_task_messages.py`` holds the message field by field
against what ``apply_async`` sends and reads it back as a worker's channel does, and every
job of the live tests reaches its real worker this way.

It takes that path only where the message is that simple: a Redis broker through
``playground.broker.RedisTransport``, protocol 2, JSON, no compression, no sent events, no
countdown, priority or other option, and no task running in this process (whose id would
be the message's parent). Anything else, and any error on the fast path (a broker away,
a reconnection), goes through ``apply_async`` as before, with its retry policy: a message
is never lost to the shortcut, only sent the long way.
"""

from __future__ import annotations

import base64
import logging
import os
import uuid
from functools import cache

import redis
from celery import signals
from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
from kombu.utils.json import dumps

logger = logging.getLogger(__name__)


def publish(task, args: tuple, *, queue: str, headers: dict, **options) -> None:
    """Send ``task(*args)`` to ``queue`` with ``headers``, as ``task.apply_async(args,
    queue=queue, headers=headers, **options)`` would; raises what that raises."""
    if not options.keys() <= {"retry", "retry_policy"} or not _simple(task, queue):
        task.apply_async(args, queue=queue, headers=headers, **options)
        return
    try:
        _push(task, args, queue=queue, headers=headers, retry_policy=options.get("retry_policy"))
    except Exception as exc:  # redis and kombu raise many types; apply_async retries them
        if _timed_out(exc):
            # The broker took a connection and did not answer within its socket timeout (a
            # partition): Celery's retries would wait as long again, each, the caller
            # waiting. Not sent (or sent and not acknowledged: the claim makes it harmless).
            raise
        logger.info("task %s: the short publish failed (%s); sending it through Celery", task, exc)
        task.apply_async(args, queue=queue, headers=headers, **options)


def _timed_out(exc: BaseException | None) -> bool:
    """Whether a socket timeout is behind ``exc``: redis-py's own, or the socket's as kombu
    re-raises it (an ``OperationalError`` from the connection's set-up, whose cause is the
    timeout: before session 45 that one went on to Celery's retries, ~3 timeouts more)."""
    for _ in range(8):  # a chain, never a cycle, but bounded all the same
        if exc is None:
            return False
        if isinstance(exc, (redis.TimeoutError, TimeoutError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _simple(task, queue: str) -> bool:
    """Whether this message is one ``_push`` builds exactly as Celery would."""
    app = task.app
    return (
        _simple_app(app, app.conf.broker_url)
        and _simple_queue(app, queue)
        and app.current_worker_task is None
    )


@cache
def _simple_app(app, broker_url: str) -> bool:
    from playground.broker import RedisTransport

    conf = app.conf
    try:
        transport = type(app.connection_for_write().transport)
    except Exception:  # an unknown transport: Celery's own path reports it
        return False
    return (
        issubclass(transport, RedisTransport)
        and conf.task_protocol == 2
        and conf.task_serializer == "json"
        and not conf.task_compression
        and not conf.task_send_sent_event
        and conf.task_default_priority is None
        and conf.task_default_delivery_mode in ("persistent", 2)
        and not conf.task_routes
        and not signals.task_sent.receivers  # Celery's deprecated signal: not sent here
    )


@cache
def _simple_queue(app, name: str) -> bool:
    """A queue on a direct exchange without priorities: Celery sends its messages through
    the anonymous exchange, straight onto the list named after the queue. Looked up as
    Celery's publish does (a queue not configured is made, with task_create_missing_queues)."""
    try:
        queue = app.amqp.queues[name]
    except KeyError:
        return False
    exchange = queue.exchange
    return (
        exchange is not None
        and exchange.type == "direct"
        and exchange.delivery_mode in (None, 2, "persistent")
        and not (queue.queue_arguments or {}).get("x-max-priority")
        and queue.routing_key == name
    )


@cache
def _origin(pid: int) -> str:
    return anon_nodename()


@cache
def _constants(task, queue: str) -> dict:
    """What every message of ``task`` to ``queue`` shares (read once: each is a lookup
    through Celery's configuration or a task proxy)."""
    app = task.app
    return {
        "name": task.name,
        "timelimit": (task.time_limit, task.soft_time_limit),
        "ignore_result": task.ignore_result,
        "declare": [app.amqp.queues[queue]],
        "policy": dict(app.conf.task_publish_retry_policy),
        "repr_limits": (app.amqp.argsrepr_maxsize, app.conf.task_repr_maxlevels),
    }


def _push(task, args: tuple, *, queue: str, headers: dict, retry_policy: dict | None) -> None:
    app = task.app
    known = _constants(task, queue)
    name = known["name"]
    task_id = str(uuid.uuid4())
    # As celery.app.amqp.AMQP.as_task_v2 and send_task_message build them.
    message_headers = {
        "lang": "py",
        "task": name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": list(known["timelimit"]),
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": saferepr(args, *known["repr_limits"]),
        "kwargsrepr": "{}",
        "origin": _origin(os.getpid()),
        "ignore_result": known["ignore_result"],
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
        **headers,
    }
    properties = {"correlation_id": task_id, "reply_to": app.thread_oid}
    body = (args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None})
    policy = {**known["policy"], **(retry_policy or {})}  # the send's, as Celery merges it
    signals.before_task_publish.send(
        sender=name, body=body, exchange="", routing_key=queue, declare=known["declare"],
        headers=message_headers, properties=properties,
        retry_policy=policy,
    )  # fmt: skip
    envelope = {
        "body": base64.b64encode(dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": message_headers,
        "properties": {
            **properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    # Celery's own producer pool: its connection, built from the broker URL configured now
    # and rebuilt after a fork; the channel keeps one Redis client (playground.broker).
    with app.producer_pool.acquire(block=True) as producer:
        _connect(producer.connection, policy)
        with producer.channel.conn_or_acquire() as client:
            client.lpush(queue, dumps(envelope))
    signals.after_task_publish.send(
        sender=name, body=body, headers=message_headers, exchange="", routing_key=queue
    )


def _connect(connection, policy: dict) -> None:
    """Connect (a no-op when connected) with the send's retry policy, as ``apply_async``
    does. The channel would otherwise connect with kombu's defaults, 2 s, 4 s... between
    tries for up to Celery's ``broker_connection_timeout``: a refused connection (the broker
    restarting) held the first call of each process ~6 s before its 503 (session 45), then
    again through Celery's path. Within that same time budget: a broker that takes the
    connection and never answers costs one socket timeout, not one per retry."""
    connection.ensure_connection(
        max_retries=policy.get("max_retries", 3),
        interval_start=policy.get("interval_start", 0),
        interval_step=policy.get("interval_step", 0.2),
        interval_max=policy.get("interval_max", 1),
        timeout=connection.connect_timeout,
    )
