"""A web process's shared job-signal subscription whose connection goes silent without
closing (a half-open TCP link: a partition, a peer or middlebox gone without a word).

A real forwarder (``TcpGate``) sits between the process and Redis and makes the connections
it carries so far go silent, while new connections through it work, as after a partition
that healed for new flows only. Each test checks that nothing of it is left subscribed on
the server afterwards: a later test counts this process's subscriptions.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import pytest

from playground import events, services
from tests import factories
from tests.conftest import wait_for
from tests.playground.test_serving_faults import _finish_soon, _subscribers, photo
from tests.tcp_gate import TcpGate


def _redis_target(url: str) -> tuple[str, int] | str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return (parts.hostname or "127.0.0.1", parts.port or 6379)


def _gated_url(url: str, gate: TcpGate) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        db = parse_qs(parts.query).get("db", ["0"])[0]
    else:
        db = parts.path.lstrip("/") or "0"
    return f"redis://127.0.0.1:{gate.port}/{db}"


@pytest.fixture
def storage(settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"


@pytest.fixture
def gated_redis(settings, broker_url):
    """The process's Redis URL through an open gate; (direct URL, gate). Closed after, and
    nothing of this process left subscribed on the server."""
    from config.settings.env import redis_client_url

    direct = redis_client_url(broker_url)
    gate = TcpGate(_redis_target(direct), open=True)
    settings.VITRINE_REDIS_URL = _gated_url(direct, gate)
    try:
        yield direct, gate
    finally:
        gate.close()
    try:
        wait_for(lambda: not _subscribers(direct), timeout=10)
    except AssertionError:
        raise AssertionError(f"left: {_subscribers(direct)}") from None


async def _until(predicate, timeout: float = 60.0) -> bool:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


@pytest.mark.django_db(transaction=True)
def test_a_job_signal_subscription_that_went_silent_is_replaced(
    settings, gated_redis, storage, monkeypatch
):
    """The subscription's connection goes silent: the next call finds its subscription
    unconfirmed and reads its row; the PING sent then is not answered, the connection is
    failed, and a later call subscribes on a new one and hears its job's signal. Before
    session 44 the silent connection was kept until it closed: every later call of the
    process read its row every ``RECHECK_EVERY`` (a 40 ms synchronous call took 2-5 s)."""
    _direct, gate = gated_redis
    url = settings.VITRINE_REDIS_URL
    monkeypatch.setattr(events, "PROBE_WAIT", 1.0)
    card = factories.card()
    jobs = [services.job_create(card=card, image_bytes=photo()) for _ in range(3)]

    async def scenario():
        # A first call subscribes (confirmed) and hears its signal: the connection is made.
        monkeypatch.setattr(events, "RECHECK_EVERY", 10_000)
        finisher = _finish_soon(jobs[0])
        assert isinstance(await events.job_finished_heard(jobs[0].pk, timeout=120), bytes)
        await asyncio.to_thread(finisher.join)
        silent = events._subscriber(url)
        gate.silence()
        # A call on the silent connection: unconfirmed, it reads its row (its job ends).
        monkeypatch.setattr(events, "RECHECK_EVERY", 0.2)
        finisher = _finish_soon(jobs[1])
        assert await events.job_finished_heard(jobs[1].pk, timeout=120) is True
        await asyncio.to_thread(finisher.join)
        assert await _until(lambda: silent.broken), "the silent connection was kept"
        # The next call subscribes on a new connection and hears its signal: nothing else
        # can end its wait before its timeout (its row is not final when it first reads).
        monkeypatch.setattr(events, "RECHECK_EVERY", 10_000)
        finisher = _finish_soon(jobs[2])
        heard = await events.job_finished_heard(jobs[2].pk, timeout=60)
        await asyncio.to_thread(finisher.join)
        assert events._subscriber(url) is not silent
        return heard

    assert isinstance(asyncio.run(scenario()), bytes)
