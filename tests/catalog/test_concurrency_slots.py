"""``ratelimit.slot_take``/``slot_give``: at most N at once per identity, in Redis (shared
by every process) and in one process's memory; a slot never given back lapses."""

from __future__ import annotations

import time

import pytest

from catalog import ratelimit


@pytest.fixture(params=["memory", "redis"])
def store(request, settings):
    if request.param == "redis":
        url = request.getfixturevalue("limits_redis")
        settings.VITRINE_LIMITS_REDIS_URL = url
    else:
        settings.VITRINE_LIMITS_REDIS_URL = ""
    return request.param


def test_at_most_the_limit_at_once_and_a_slot_given_back_is_free(store):
    who = f"acct-{store}-{time.time_ns()}"
    take = lambda m: ratelimit.slot_take("t", who, limit=2, lapse=60, member=m)  # noqa: E731
    assert [take("a"), take("b"), take("c")] == [True, True, False]
    assert take("a") is True  # the same member again (a redelivered message): its own slot
    ratelimit.slot_give("t", who, member="b")
    assert take("c") is True and take("d") is False
    assert ratelimit.slot_take("t", who + "-other", limit=2, lapse=60, member="x") is True


def test_a_slot_never_given_back_lapses(store):
    who = f"acct-{store}-{time.time_ns()}"
    assert ratelimit.slot_take("t", who, limit=1, lapse=0.3, member="killed") is True
    assert ratelimit.slot_take("t", who, limit=1, lapse=60, member="next") is False
    time.sleep(0.5)  # past the lapse: not a speed assertion
    assert ratelimit.slot_take("t", who, limit=1, lapse=60, member="next") is True
