"""Django's Redis cache with its connection pools kept per process, not per request.

Django keeps cache objects per async context (``django.core.cache.caches`` is an asgiref
``Local``), and its Redis client keeps its connection pool on that object: under an ASGI
server every request built a new pool and opened a new connection to Redis (100 requests
for a cached page: 101 connections, and the connect with its handshake was half of the
cached page's time). This client keeps one pool per process for each server and set of
options. redis-py's pools are thread-safe and reset themselves in a forked child (a
gunicorn worker), so sharing them is safe. Under WSGI nothing changes: a thread's cache
object lived for the process already.
"""

from __future__ import annotations

import threading

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_pools: dict[tuple, object] = {}
_lock = threading.Lock()


class SharedPoolRedisCacheClient(RedisCacheClient):
    def _get_connection_pool(self, write):
        index = self._get_connection_pool_index(write)
        key = (self._servers[index], repr(sorted(self._pool_options.items())))
        pool = _pools.get(key)
        if pool is None:
            with _lock:
                pool = _pools.get(key)
                if pool is None:
                    pool = _pools[key] = self._pool_class.from_url(
                        self._servers[index], **self._pool_options
                    )
        return pool


class SharedPoolRedisCache(RedisCache):
    """``django.core.cache.backends.redis.RedisCache``, one connection pool per process."""

    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = SharedPoolRedisCacheClient
