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
"""

from __future__ import annotations

import threading

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_shared: dict[tuple, tuple] = {}  # (server, options) -> (pool, client)
_lock = threading.Lock()


class SharedPoolRedisCacheClient(RedisCacheClient):
    def __init__(self, servers, **options) -> None:
        super().__init__(servers, **options)
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


class SharedPoolRedisCache(RedisCache):
    """``django.core.cache.backends.redis.RedisCache``, one connection pool and one client
    per process."""

    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = SharedPoolRedisCacheClient
