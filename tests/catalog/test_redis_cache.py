"""The page cache's Redis client: one per process, shared by every call and cache object."""

from __future__ import annotations

import os
import uuid

import pytest

from catalog.redis_cache import SharedPoolRedisCache


@pytest.fixture
def redis_url(broker_url) -> str:
    from config.settings.env import redis_client_url

    return redis_client_url(broker_url)


def test_every_call_and_every_cache_object_use_one_client_and_pool(redis_url):
    """Django builds a cache object per async context (an ASGI request) and its client built
    a new redis.Redis for every call; here one client and one pool serve them all."""
    first = SharedPoolRedisCache(redis_url, {})
    second = SharedPoolRedisCache(redis_url, {})  # another request's cache object
    key = f"test-redis-cache-{uuid.uuid4()}"
    first.set(key, {"page": b"<html>"}, timeout=60)
    assert second.get(key) == {"page": b"<html>"}
    clients = {id(cache._cache.get_client(write=write)) for cache in (first, second)
               for write in (False, True)}  # fmt: skip
    assert len(clients) == 1
    assert first._cache.get_client().connection_pool is second._cache._get_connection_pool(False)
    # Other options (another database) are another client.
    other = SharedPoolRedisCache(redis_url, {"OPTIONS": {"health_check_interval": 7}})
    assert other._cache.get_client() is not first._cache.get_client()
    second.delete(key)


def test_a_forked_process_reads_through_the_shared_client(redis_url):
    """A gunicorn worker is forked from the master: the client made before the fork works
    in the child (redis-py's pool gives the child connections of its own)."""
    cache = SharedPoolRedisCache(redis_url, {})
    key = f"test-redis-cache-{uuid.uuid4()}"
    cache.set(key, 42, timeout=60)
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery, only the answer
        os._exit(0 if SharedPoolRedisCache(redis_url, {}).get(key) == 42 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.get(key) == 42  # and the parent's connections still answer
    cache.delete(key)
