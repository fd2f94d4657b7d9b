"""Job-finished signals: a worker publishes on Redis when a job ends, waiting calls await it.

A synchronous inference call must not hold a thread or poll the database while the job
runs. The worker (or whoever ends the job: a cancel, the reaper) publishes the job's id on
the channel ``vitrine:job:<id>`` after the transaction that ended it commits; the waiting
request, an ``async`` view under an ASGI server, subscribes to that channel (on its
process's one shared subscription, ``_Subscriber``) and waits for Redis to confirm it
*before* it reads the job row once, so a job that ended in between is seen in the row and a
job that ends later is heard on the channel. The row stays the truth: a missed signal (Redis
restarted, a publish that failed) costs at most ``RECHECK_EVERY`` seconds, after which the
row is read again; with no Redis configured (an AMQP broker and no ``VITRINE_REDIS_URL``)
the wait reads the row every ``RECHECK_EVERY`` seconds, still without holding a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import weakref

import redis
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings

from playground import offload

logger = logging.getLogger(__name__)

CHANNEL = "vitrine:job:{job_id}"
# How often a waiting call reads the row anyway: the bound on what a lost signal costs.
RECHECK_EVERY = 5.0
# When a waiting call first reads its row, once subscribed (seconds).
FIRST_READ_AFTER = 0.02
# A publish must not hold up a worker when Redis is away: the row is the truth.
PUBLISH_TIMEOUT = 2.0
# After a subscription was not confirmed in time, how long the shared subscription's
# connection has to answer a PING (or deliver anything) before it is taken for silent and
# replaced (seconds).
PROBE_WAIT = 5.0

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


# A signal's data: FINAL, or the job's answer row (ANSWER + selectors.answer_encode's bytes).
FINAL = b"final"
ANSWER = b"answer:"


def job_finished_publish(job_id, *, answer: tuple | None = None) -> None:
    """Tell waiting calls that a job ended. Call after the commit that ended it.
    ``answer``: the job's answer row as that commit left it (``selectors.answer_sql``),
    carried with the signal; a waiting call answers from it instead of reading the row."""
    jobs_finished_publish([(job_id, answer)])


def jobs_finished_publish(ended: list[tuple]) -> None:
    """``job_finished_publish`` for each (job id, answer row or None) of jobs that one
    commit ended (a worker's batch): one round trip to Redis for all of them."""
    client = _client()
    if client is None or not ended:
        return
    signals = [
        (CHANNEL.format(job_id=job_id), _signal_data(job_id, answer)) for job_id, answer in ended
    ]
    try:
        if len(signals) == 1:
            client.publish(*signals[0])
        else:
            pipe = client.pipeline(transaction=False)
            for channel, data in signals:
                pipe.publish(channel, data)
            pipe.execute()
    except redis.RedisError as exc:
        # Waiters read the row every RECHECK_EVERY seconds: a lost signal costs latency only.
        logger.warning(
            "%d finished signal(s) not published (jobs %s; %s)",
            len(signals), ", ".join(str(job_id) for job_id, _ in ended), exc,
        )  # fmt: skip


def _signal_data(job_id, answer: tuple | None) -> bytes:
    if answer is None:
        return FINAL
    from playground.selectors import answer_encode

    try:
        return ANSWER + answer_encode(answer)
    except TypeError as exc:  # a column type the codec does not carry: read the row
        logger.warning("job %s: answer not carried (%s)", job_id, exc)
        return FINAL


# A drop-in call (Hugging Face, Cloudflare: no 202 to answer with) that cannot cancel its
# still-unfinished job at its wait's bound because the database is away gives the job up
# here instead, and the worker that finishes a job older than ``give_up_possible`` looks
# here before it commits the success: whichever writes the job's key first decides. The
# call wins: it answers 503 "nothing charged", and the worker ends the job cancelled,
# unbilled, when the database is back. The worker wins: the call waits on for the job
# (it is running) as it does for any running job. One key per job, written once.
FATE = "vitrine:job:{job_id}:fate"
GIVEN_UP = b"given-up"
FINISHING = b"finishing"
# Kept while the database may stay away (the given-up job is ended when it is back).
GIVEN_UP_TTL = 7 * 24 * 3600
# Sets KEYS[1] to ARGV[1] for ARGV[2] seconds unless it is set; returns what it held.
_FATE_SCRIPT = """local held = redis.call('GET', KEYS[1])
if not held then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
return held"""


def job_give_up(job_id) -> bool | None:
    """For a waiting drop-in call whose database is away at its bound: True when the job is
    given up (it will not be charged: the worker ends it cancelled), False when a worker is
    finishing it (the call waits on), None when it cannot be told (no Redis, or Redis away:
    the call answers its 503 as before)."""
    client = _client()
    if client is None:
        return None
    key = FATE.format(job_id=job_id)
    try:
        held = client.eval(_FATE_SCRIPT, 1, key, GIVEN_UP, GIVEN_UP_TTL)
    except redis.RedisError as exc:
        logger.warning("job %s: could not be given up (%s)", job_id, exc)
        return None
    return held is None or held == GIVEN_UP


def job_fate(job_id) -> bytes | None:
    """What the job's fate key holds (``GIVEN_UP``, ``FINISHING``), None when nothing (or
    no Redis to ask)."""
    client = _client()
    if client is None:
        return None
    try:
        return client.get(FATE.format(job_id=job_id))
    except redis.RedisError as exc:
        logger.warning("job %s: its fate not read (%s)", job_id, exc)
        return None


def give_up_possible(created_at, now) -> bool:
    """Whether a waiting call may already have given up the job made at ``created_at``:
    none does before the shortest drop-in wait (``VITRINE_HF_WAIT``) has passed, so a
    worker finishing a younger job (nearly all) asks Redis nothing. Half of it is kept
    for the hosts' clocks (the web's made ``created_at``)."""
    shortest = min(settings.VITRINE_HF_WAIT, settings.VITRINE_HF_WAIT_FOR_MODEL)
    return (now - created_at).total_seconds() >= shortest / 2


def jobs_given_up(job_ids: list) -> set:
    """Of the jobs a worker is about to finish as succeeded, those their waiting calls gave
    up (``job_give_up``); the others are marked finishing, for as long as a call may still
    wait for them. Redis away: none (logged), the jobs finish as run."""
    client = _client()
    if client is None or not job_ids:
        return set()
    finishing_ttl = (
        max(settings.VITRINE_HF_WAIT, settings.VITRINE_HF_WAIT_FOR_MODEL)
        + settings.CELERY_TASK_HARD_TIME_LIMIT
        + 2 * settings.VITRINE_JOB_LEASE
    )
    try:
        pipe = client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.eval(_FATE_SCRIPT, 1, FATE.format(job_id=job_id), FINISHING, finishing_ttl)
        held = pipe.execute()
    except redis.RedisError as exc:
        logger.warning("jobs %s: not checked for given-up calls (%s)", job_ids, exc)
        return set()
    return {job_id for job_id, value in zip(job_ids, held, strict=True) if value == GIVEN_UP}


def job_is_final(job_id) -> bool:
    """True when the job is final (or gone). Read by every waiting call once its job's first
    moments are past, and again every RECHECK_EVERY, while the worker runs the job on the
    same cores: on PostgreSQL a prepared statement (0.76 -> 0.25 ms a read against the
    ORM's ``values_list().first()`` on two cores), elsewhere without first()'s ORDER BY."""
    from django.db import connection

    from catalog.db import prepared_row
    from playground.models import Job

    if connection.vendor == "postgresql":
        row = prepared_row(f"SELECT status FROM {Job._meta.db_table} WHERE id = %s::uuid", [job_id])
        status = row[0] if row is not None else None
    else:
        status = next(iter(Job.objects.filter(pk=job_id).values_list("status", flat=True)), None)
    return status is None or status in Job.FINAL


class _Subscriber:
    """One pub/sub connection per event loop, shared by every call waiting in it.

    A waiting call used to open its own connection and subscription: a connect, a
    SUBSCRIBE and a close per call (~4 ms of CPU on two cores, and as many connections to
    Redis as calls waiting: 300 for a burst of 300). Here each process keeps one
    connection; a job's channel is subscribed while someone waits on it, and a reader task
    hands each signal to the calls waiting for that job. When the connection fails, every
    call waiting on it is told (it goes on reading its row every ``RECHECK_EVERY``) and the
    next call opens a new one. A connection that goes silent without closing (a half-open
    TCP link after a partition, a peer gone without a word) is found by ``suspect``: a
    subscription not confirmed in time sends a PING, and nothing heard back within
    ``PROBE_WAIT`` fails the connection as if it had closed.

    Nothing is sent once the subscriber is broken: redis-py's pub/sub opens a new connection
    for a command sent after it was closed, which nobody would ever close.
    """

    def __init__(self, url: str) -> None:
        self.client = aioredis.Redis.from_url(
            url, socket_connect_timeout=PUBLISH_TIMEOUT, client_name=subscriber_name()
        )
        self.pubsub = self.client.pubsub()
        self.sending = asyncio.Lock()  # one SUBSCRIBE/UNSUBSCRIBE on the wire at a time
        self.waiting: dict[str, set[asyncio.Future]] = {}
        # Per channel: the confirmation of its current subscription (what every waiter
        # awaits), and the SUBSCRIBEs sent but not yet confirmed, oldest first.
        self.ready: dict[str, asyncio.Future] = {}
        self.confirming: dict[str, list[asyncio.Future]] = {}
        self.broken = False
        self.reader: asyncio.Task | None = None
        # While a PING is out (``suspect``): resolved by the next thing the reader reads.
        self.answered: asyncio.Future | None = None

    async def watch(self, channel: str) -> asyncio.Future:
        """A future that resolves to the data of the channel's next signal, bytes (False:
        the connection failed). Returns once the subscription is confirmed, so a signal
        published after that is never missed; raises (RedisError, OSError, TimeoutError)
        when it cannot be."""
        loop = asyncio.get_running_loop()
        signal = loop.create_future()
        waiters = self.waiting.setdefault(channel, set())
        waiters.add(signal)
        try:
            if len(waiters) == 1:
                self.ready[channel] = confirmed = loop.create_future()
                self.confirming.setdefault(channel, []).append(confirmed)
                async with self.sending:
                    if self.broken:  # failed while this call waited to send
                        raise redis.ConnectionError("the subscription's connection failed")
                    await self.pubsub.subscribe(channel)  # sends: the reader gets the reply
                if self.reader is None:
                    self.reader = loop.create_task(self._read(), name=SUBSCRIBER_NAME)
            if not await asyncio.wait_for(asyncio.shield(self.ready[channel]), PUBLISH_TIMEOUT):
                raise redis.ConnectionError("the subscription's connection failed")
        except BaseException:
            self.unwatch(channel, signal)
            raise
        return signal

    def unwatch(self, channel: str, signal: asyncio.Future) -> None:
        waiters = self.waiting.get(channel)
        if waiters is None or signal not in waiters:
            return
        waiters.discard(signal)
        if not waiters:
            del self.waiting[channel]
            self.ready.pop(channel, None)
            if not self.broken:
                _in_background(self._unsubscribe(channel))

    async def _unsubscribe(self, channel: str) -> None:
        try:
            async with self.sending:
                # Not when nobody waits on it again, nor on a closed subscriber.
                if channel not in self.waiting and not self.broken:
                    await self.pubsub.unsubscribe(channel)
        except (redis.RedisError, OSError) as exc:
            self._fail(exc)

    async def _read(self) -> None:
        try:
            while True:
                message = await self.pubsub.get_message(timeout=None)
                if self.answered is not None and not self.answered.done():
                    self.answered.set_result(True)  # the connection is alive
                if message is None:
                    continue
                channel = message["channel"]
                channel = channel.decode() if isinstance(channel, bytes) else channel
                if message["type"] == "subscribe":
                    pending = self.confirming.get(channel)
                    if pending:  # else a resubscription after a silent reconnect
                        confirmed = pending.pop(0)
                        if not pending:
                            del self.confirming[channel]
                        if not confirmed.done():
                            confirmed.set_result(True)
                elif message["type"] == "message":
                    data = message["data"] or FINAL  # what job_finished_heard returns
                    for signal in self.waiting.get(channel, ()):
                        if not signal.done():
                            signal.set_result(data)
        except asyncio.CancelledError:  # closed: by _fail, or the loop is ending
            self._fail(None)
            await self._close()
            raise
        except Exception as exc:  # redis-py's own retries are spent: the connection is gone
            self._fail(exc)
            await self._close()

    def suspect(self) -> None:
        """A subscription was not confirmed in time: a busy server or event loop, or a
        connection gone silent. A PING tells them apart (one at a time): anything read
        within ``PROBE_WAIT`` after it keeps the connection; nothing fails it, and the next
        call subscribes on a new one. Before session 44 a silent connection was kept until
        it closed, and every later call of the process read its row every RECHECK_EVERY."""
        if self.broken or self.answered is not None or self.reader is None:
            return
        self.answered = asyncio.get_running_loop().create_future()
        _in_background(self._probe(self.answered))

    async def _probe(self, answered: asyncio.Future) -> None:
        try:
            async with asyncio.timeout(PROBE_WAIT):
                async with self.sending:
                    if self.broken:
                        return
                    await self.pubsub.ping()
                await asyncio.shield(answered)
        except TimeoutError:
            self._fail(redis.TimeoutError(f"nothing heard {PROBE_WAIT:g} s after a PING"))
        except (redis.RedisError, OSError) as exc:
            self._fail(exc)
        finally:
            if self.answered is answered:
                self.answered = None

    async def _close(self) -> None:
        with contextlib.suppress(redis.RedisError, OSError):
            await self.pubsub.aclose()
            await self.client.aclose()

    def _fail(self, exc: BaseException | None) -> None:
        """The connection is gone (or closing): tell everyone waiting on it, close it, and
        let the next call open a new one."""
        if self.broken:
            return
        self.broken = True
        if exc is not None:
            logger.warning("job signals: the subscription failed (%s); reading rows", exc)
        loop = asyncio.get_running_loop()
        if _subscribers.get(loop) is self:
            del _subscribers[loop]
        for futures in [*self.waiting.values(), *self.confirming.values(), [self.answered]]:
            for future in futures:
                if future is not None and not future.done():
                    future.set_result(False)
        if self.reader is None:
            _in_background(self._close())
        elif self.reader is not asyncio.current_task():
            self.reader.cancel()  # its way out closes the connection


SUBSCRIBER_NAME = "vitrine-job-signals"


def subscriber_name() -> str:
    """The subscription's name in Redis's CLIENT LIST: which process holds it."""
    return f"{SUBSCRIBER_NAME}-{os.getpid()}"


_subscribers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_background: set[asyncio.Task] = set()


def _in_background(coroutine) -> None:
    """Run ``coroutine`` on this loop without waiting for it (kept referenced until done)."""
    task = asyncio.get_running_loop().create_task(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)


def _subscriber(url: str) -> _Subscriber:
    """This event loop's subscriber (made on first use, again after a failure)."""
    loop = asyncio.get_running_loop()
    subscriber = _subscribers.get(loop)
    if subscriber is None or subscriber.broken:
        subscriber = _subscribers[loop] = _Subscriber(url)
    return subscriber


async def job_finished_wait(job_id, *, timeout: float, is_final=None) -> bool:
    """Wait until the job is final or ``timeout`` seconds pass; True when it is final.
    ``is_final``: as ``job_finished_heard``'s."""
    return bool(await job_finished_heard(job_id, timeout=timeout, is_final=is_final))


async def job_finished_heard(job_id, *, timeout: float, is_final=None) -> bool | bytes:
    """``job_finished_wait``, telling more when the job is final: the data of its finished
    signal when that was heard (bytes: ``carried_answer`` reads the answer row it may
    carry), True when the row said so; False when ``timeout`` seconds passed first.

    ``is_final``: an async callable that reads the row (default: ``job_is_final`` on the
    thread-sensitive thread, closing its connection after); the API passes one that reads
    it on its database pool (``playground.offload``)."""
    if is_final is None:

        async def is_final():
            # Holds no connection between looks (hundreds of calls wait at once).
            return await sync_to_async(offload.call_closing)(job_is_final, job_id)

    deadline = time.monotonic() + timeout
    url = settings.VITRINE_REDIS_URL
    channel = CHANNEL.format(job_id=job_id)
    subscriber = signal = None
    if url:
        subscriber = _subscriber(url)
        try:
            signal = await subscriber.watch(channel)
        except TimeoutError:
            # No confirmation in time: this call reads its row; the subscription stays for
            # the others unless a PING finds its connection silent (a busy loop or server
            # answers it).
            logger.warning("job %s: subscription not confirmed; reading the row", job_id)
            subscriber.suspect()
            signal = None
        except (redis.RedisError, OSError) as exc:
            logger.warning("job %s: waiting without signals (%s)", job_id, exc)
            subscriber._fail(exc)
            signal = None
    try:
        if signal is not None:
            # The row is read once the job's first moments are past, not at once: a job
            # cannot have ended before it was claimed, and a read now would take the cores
            # from the worker's claim of it (the hand-off of every call). A job that ended
            # before the subscription was confirmed (its signal went to no one) costs this
            # wait at most; the API answers a key's job that had already ended at once.
            try:
                heard = await asyncio.wait_for(
                    asyncio.shield(signal),
                    max(0.0, min(FIRST_READ_AFTER, deadline - time.monotonic())),
                )
            except TimeoutError:
                pass
            else:
                if heard:
                    return heard
                logger.warning("job %s: signal lost; reading the row", job_id)
                signal = None
        while True:
            if await is_final():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            step = min(RECHECK_EVERY, remaining)
            if signal is None:
                await asyncio.sleep(step)
                continue
            try:
                # shield: a step that ends keeps the signal for the next step.
                heard = await asyncio.wait_for(asyncio.shield(signal), step)
            except TimeoutError:
                continue  # a missed signal costs this step: read the row again
            if heard:
                return heard  # the caller answers from the row, or from what it carried
            logger.warning("job %s: signal lost; reading the row", job_id)
            signal = None
    finally:
        if signal is not None:
            subscriber.unwatch(channel, signal)


def carried_answer(final: bool | bytes) -> tuple | None:
    """The answer row a job's finished signal carried (``job_finished_heard``'s result),
    or None: no signal heard, a plain one, a row of other columns (another release's
    worker), or data that is not a row (logged)."""
    if not isinstance(final, bytes) or not final.startswith(ANSWER):
        return None
    from playground.selectors import answer_decode

    try:
        return answer_decode(final[len(ANSWER) :])
    except ValueError as exc:
        logger.warning("a finished signal's answer could not be read (%s); reading the row", exc)
        return None
