"""Database work of async views, run without blocking the event loop or Django's one
thread-sensitive thread.

Django's ASGI handler runs every sync view and every middleware hop of every request on
one shared thread (asgiref's ``thread_sensitive``). A burst of hundreds of inference calls
(each ~100 ms of ORM work to create its job, then a look at its row every few seconds
while it waits) queued there would make every other request of the process (``/healthz``,
pages, polls) wait behind them at each hop: /healthz p95 was 393 ms during a 300-call
burst. So under an ASGI server that work runs on this module's own pool of
``VITRINE_API_DB_CONCURRENCY`` threads, each keeping its own database connection, recycled
as a request's is (``close_old_connections``: CONN_MAX_AGE and health checks), rather than
opening a connection per look (a PostgreSQL backend fork each).

Under WSGI (Django's test client, the live test server) the call stays on the calling
thread, whose connection holds a test's transaction, and closes that connection after
(unless inside the test's transaction), so a waiting call holds none.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections, connection

_pool: ThreadPoolExecutor | None = None


def _api_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(
            max_workers=settings.VITRINE_API_DB_CONCURRENCY, thread_name_prefix="vitrine-db"
        )
    return _pool


def _pooled(fn: Callable, *args) -> Any:
    close_old_connections()
    try:
        return fn(*args)
    finally:
        close_old_connections()


def call_closing(fn: Callable, *args) -> Any:
    """``fn(*args)``, then this thread's connection closed (unless inside a test's
    transaction): for sync work run from a coroutine that must hold no connection after."""
    try:
        return fn(*args)
    finally:
        if not connection.in_atomic_block:
            connection.close()


async def run_db(request, fn: Callable, *args) -> Any:
    """``await run_db(request, fn, *args)``: ``fn(*args)`` on the pool under ASGI, on the
    calling (thread-sensitive) thread otherwise; see the module's docstring."""
    if isinstance(request, ASGIRequest):
        return await sync_to_async(_pooled, thread_sensitive=False, executor=_api_pool())(fn, *args)
    return await sync_to_async(call_closing)(fn, *args)
