"""Django's Redis cache with its connection pools and clients kept per process, not per
request or per call.

Django keeps cache objects per async context (``django.core.cache.caches`` is an asgiref
``Local``), and its Redis client keeps its connection pool on that object: under an ASGI
server every request built a new pool and opened a new connection to Redis (100 requests
for a cached page: 101 connections, and the connect with its handshake was half of the
cached page's time). This client keeps one pool per process for each server and set of
options. redis-py's pools are thread-safe and reset themselves in a forked child (a
gunicorn worker), so sharing them is safe.

Django's client also builds a new ``redis.Redis`` for every call (``get_client``): its
constructor sets up ~200 response callbacks, ~7% of a signed-in visitor's cached model
page (three cache reads: the catalogue's version, the session, the page). A ``redis.Redis``
holds no connection of its own (each command takes one from the pool) and is thread-safe,
so one per pool serves every call.

**An outage is a miss, not an error.** The page cache and the sessions' cached copy share
the broker's Redis in production: with Django's client a Redis restart made every cached
page and every signed-in page a 500. Here a connection or timeout error reads as a miss
(``get`` gives the default, ``add`` False, ``set`` stores nothing) and is logged once per
outage; the pages render and the sessions read the database (``cached_db``). After an
error the server is not asked again for ``RETRY_AFTER`` seconds, so an unreachable host
costs a request at most one timeout (``socket_connect_timeout``/``socket_timeout``, 0.5 s
and 1 s unless OPTIONS says otherwise), not one per cache call.
"""

from __future__ import annotations

import logging
import threading
import time

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)
DOWN = (RedisConnectionError, RedisTimeoutError)
RETRY_AFTER = 1.0  # seconds a server that failed is left alone
TIMEOUTS = {"socket_connect_timeout": 0.5, "socket_timeout": 1.0}

_shared: dict[tuple, tuple] = {}  # (server, options) -> (pool, client)
_lock = threading.Lock()


class SharedPoolRedisCacheClient(RedisCacheClient):
    def __init__(self, servers, **options) -> None:
        super().__init__(servers, **(TIMEOUTS | options))
        self._options_key = repr(sorted(self._pool_options.items()))

    def _get_shared(self, write: bool) -> tuple:
        index = self._get_connection_pool_index(write)
        key = (self._servers[index], self._options_key)
        shared = _shared.get(key)
        if shared is None:
            with _lock:
                shared = _shared.get(key)
                if shared is None:
                    pool = self._pool_class.from_url(self._servers[index], **self._pool_options)
                    shared = _shared[key] = (pool, self._client(connection_pool=pool))
        return shared

    def _get_connection_pool(self, write):
        return self._get_shared(write)[0]

    def get_client(self, key=None, *, write=False):
        return self._get_shared(write)[1]

    # --- an outage is a miss ------------------------------------------------------------
    _down_until = 0.0  # class-wide: every client of the process shares the servers' state

    def _guarded(self, call, *args, failed, **kwargs):
        cls = SharedPoolRedisCacheClient
        if time.monotonic() < cls._down_until:
            return failed()
        try:
            return call(*args, **kwargs)
        except DOWN as exc:
            if time.monotonic() >= cls._down_until + 30 * RETRY_AFTER:  # once per outage
                logger.warning("cache unavailable, serving without it: %s", exc)
            cls._down_until = time.monotonic() + RETRY_AFTER
            return failed()

    def get(self, key, default):
        return self._guarded(super().get, key, default, failed=lambda: default)

    def get_many(self, keys):
        return self._guarded(super().get_many, keys, failed=dict)

    def has_key(self, key):
        return self._guarded(super().has_key, key, failed=lambda: False)

    def add(self, key, value, timeout):
        return self._guarded(super().add, key, value, timeout, failed=lambda: False)

    def set(self, key, value, timeout):
        return self._guarded(super().set, key, value, timeout, failed=lambda: None)

    def set_many(self, data, timeout):
        return self._guarded(super().set_many, data, timeout, failed=lambda: None)

    def touch(self, key, timeout):
        return self._guarded(super().touch, key, timeout, failed=lambda: False)

    def delete(self, key):
        return self._guarded(super().delete, key, failed=lambda: False)

    def delete_many(self, keys):
        return self._guarded(super().delete_many, keys, failed=lambda: None)

    def clear(self):
        return self._guarded(super().clear, failed=lambda: False)

    def incr(self, key, delta):
        def missing():  # as for a key not there: callers set a value instead (also a miss)
            raise ValueError(f"Key '{key}' not found (the cache is unavailable).")

        return self._guarded(super().incr, key, delta, failed=missing)


class SharedPoolRedisCache(RedisCache):
    """``django.core.cache.backends.redis.RedisCache``, one connection pool and one client
    per process."""

    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = SharedPoolRedisCacheClient
