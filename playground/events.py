"""Job-finished signals: a worker publishes on Redis when a job ends, waiting calls await it.

A synchronous inference call must not hold a thread or poll the database while the job
runs. The worker (or whoever ends the job: a cancel, the reaper) publishes the job's id on
the channel ``vitrine:job:<id>`` after the transaction that ended it commits; the waiting
request, an ``async`` view under an ASGI server, subscribes to that channel *before* it
reads the job row once, so a job that ended in between is seen in the row and a job that
ends later is heard on the channel. The row stays the truth: a missed signal (Redis
restarted, a publish that failed) costs at most ``RECHECK_EVERY`` seconds, after which the
row is read again; with no Redis configured (an AMQP broker and no ``VITRINE_REDIS_URL``)
the wait reads the row every ``RECHECK_EVERY`` seconds, still without holding a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

import redis
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings

from playground import offload

logger = logging.getLogger(__name__)

CHANNEL = "vitrine:job:{job_id}"
# How often a waiting call reads the row anyway: the bound on what a lost signal costs.
RECHECK_EVERY = 5.0
# A publish must not hold up a worker when Redis is away: the row is the truth.
PUBLISH_TIMEOUT = 2.0

_local = threading.local()


def _client() -> redis.Redis | None:
    """One synchronous client per thread and URL (made after a worker's fork, on first use)."""
    url = settings.VITRINE_REDIS_URL
    if not url:
        return None
    cached = getattr(_local, "client", None)
    if cached is None or cached[0] != url:
        client = redis.Redis.from_url(
            url, socket_timeout=PUBLISH_TIMEOUT, socket_connect_timeout=PUBLISH_TIMEOUT
        )
        _local.client = cached = (url, client)
    return cached[1]


def job_finished_publish(job_id) -> None:
    """Tell waiting calls that a job ended. Call after the commit that ended it."""
    client = _client()
    if client is None:
        return
    try:
        client.publish(CHANNEL.format(job_id=job_id), "final")
    except redis.RedisError as exc:
        # Waiters read the row every RECHECK_EVERY seconds: a lost signal costs latency only.
        logger.warning("job %s: finished signal not published (%s)", job_id, exc)


def job_is_final(job_id) -> bool:
    """True when the job is final (or gone)."""
    from playground.models import Job

    status = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
    return status is None or status in Job.FINAL


async def _signalled(pubsub, *, until: float) -> bool:
    """Wait for the job's signal until the monotonic time ``until``; True when it came.
    ``get_message`` also returns (None) for the subscription's own confirmation: that is no
    reason to read the row again, so the wait goes on until the step's end."""
    while (left := until - time.monotonic()) > 0:
        message = await pubsub.get_message(timeout=left)
        if message is not None and message.get("type") == "message":
            return True
    return False


async def job_finished_wait(job_id, *, timeout: float, is_final=None) -> bool:
    """Wait until the job is final or ``timeout`` seconds pass; True when it is final.

    ``is_final``: an async callable that reads the row (default: ``job_is_final`` on the
    thread-sensitive thread, closing its connection after); the API passes one that reads
    it on its database pool (``playground.offload``)."""
    if is_final is None:

        async def is_final():
            # Holds no connection between looks (hundreds of calls wait at once).
            return await sync_to_async(offload.call_closing)(job_is_final, job_id)

    deadline = time.monotonic() + timeout
    url = settings.VITRINE_REDIS_URL
    client = pubsub = None
    if url:
        try:
            client = aioredis.Redis.from_url(url, socket_connect_timeout=PUBLISH_TIMEOUT)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(CHANNEL.format(job_id=job_id))
        except (redis.RedisError, OSError) as exc:
            logger.warning("job %s: waiting without signals (%s)", job_id, exc)
            pubsub = None
    try:
        while True:
            if await is_final():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            step_ends = time.monotonic() + min(RECHECK_EVERY, remaining)
            if pubsub is None:
                await asyncio.sleep(step_ends - time.monotonic())
                continue
            try:
                if await _signalled(pubsub, until=step_ends):
                    return True  # the row is read by the caller, which answers from it
            except (redis.RedisError, OSError) as exc:
                logger.warning("job %s: signal lost (%s); reading the row", job_id, exc)
                pubsub = None
    finally:
        if pubsub is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                await pubsub.aclose()
        if client is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                await client.aclose()
