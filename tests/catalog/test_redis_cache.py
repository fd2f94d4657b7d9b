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


# --- an outage is a miss -----------------------------------------------------------------
@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own, to stop and start again."""
    from playground.broker import EmbeddedRedis

    server = EmbeddedRedis(socket_path=tmp_path / "r.sock", data_dir=tmp_path, persist=False)
    yield server.start()
    server.stop()


@pytest.fixture
def _healthy():
    from catalog.redis_cache import SharedPoolRedisCacheClient

    SharedPoolRedisCacheClient._down_until = 0.0
    yield
    SharedPoolRedisCacheClient._down_until = 0.0


def test_a_server_that_is_down_reads_as_misses(own_redis, _healthy):
    url = "unix://" + str(own_redis.socket_path)
    cache = SharedPoolRedisCache(url, {})
    cache.set("k", 1, timeout=60)
    own_redis.stop()
    assert cache.get("k", "miss") == "miss"
    assert cache.get_many(["k"]) == {} and cache.has_key("k") is False
    assert cache.add("n", 1) is False
    cache.set("k", 2, timeout=60)  # stores nothing, raises nothing
    cache.delete("k")
    with pytest.raises(ValueError):  # as for a missing key: the caller sets one instead
        cache.incr("k")
    own_redis.start()
    from catalog.redis_cache import SharedPoolRedisCacheClient

    SharedPoolRedisCacheClient._down_until = 0.0  # past the pause after a failure
    cache.set("k", 3, timeout=60)
    assert cache.get("k") == 3  # back, with no restart of the process


@pytest.mark.django_db
def test_pages_and_signed_in_pages_answer_while_the_cache_is_down(
    client, settings, own_redis, _healthy, django_user_model
):
    """A Redis restart (the production recipe puts the page cache and the sessions' copy on
    the broker's Redis) made every catalogue page and every signed-in page a 500."""
    from django.core.cache import cache
    from django.core.management import call_command

    settings.CACHES = {
        "default": {
            "BACKEND": "catalog.redis_cache.SharedPoolRedisCache",
            "LOCATION": "unix://" + str(own_redis.socket_path),
        }
    }
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    call_command("seed_catalog", verbosity=0)
    member = django_user_model.objects.create_user("m", "m@example.com", "pw-m-long-1")
    client.force_login(member)
    assert client.get("/models")["X-Cache"] == "miss"
    assert client.get("/models")["X-Cache"] == "hit"
    own_redis.stop()
    for path in ("/models", "/models/facebook/detr-resnet-50", "/account/"):
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
    assert client.get("/models")["X-Cache"] == "miss"
    assert response.context["user"] == member  # the session, read from the database
    own_redis.start()
    cache.clear()  # (the pause after a failure is still on: nothing asked, nothing raised)
