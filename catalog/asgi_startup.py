"""What a web process sets up when its ASGI server starts it (the lifespan protocol).

Django's ``request_started`` receivers (``reset_queries``, ``close_old_connections``) are
sync functions, so Django's ASGI handler sends them through ``sync_to_async`` at the start
of every request: a trip to a thread it creates for that request (~0.5 ms on two cores,
measured in-process), before the view runs. The only other trip, closing the response,
comes after the response is sent. Both receivers act only on a database connection open in
this request's context (closed when unusable or too old) and on logged queries (cleared);
under ASGI a request starts with neither (its database work runs on threads of its own:
``playground.offload``, Django's sync views), so in a server process they run only when
there is something for them to do, on a thread as before, and never hop otherwise.
``request_finished`` is untouched: it is sent on the response's thread, where any
connection the request opened is closed.

Done at the server's lifespan startup, not on import: a process that imports
``config.asgi`` without serving it (the test suite, a management command) keeps Django's
own receivers, and a sync ``send()`` never meets the async receiver.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core import signals
from django.db import close_old_connections, connections, reset_queries

from catalog import idle_gc

_DJANGOS = (reset_queries, close_old_connections)


def _run_djangos(**kwargs) -> None:
    for receiver in _DJANGOS:
        receiver(**kwargs)


def _anything_to_do() -> bool:
    """Whether Django's receivers would change anything: a connection open (to close if
    unusable or too old) or queries logged (to clear). Attribute reads only, no I/O. The
    connection objects themselves may exist (the process made one before serving, and
    every request's context shares it) with no database connection open."""
    return any(
        conn.connection is not None or conn.queries_log
        for conn in connections.all(initialized_only=True)
    )


async def request_started_inline(**kwargs) -> None:
    """Django's two receivers, on a thread, only when they have something to do."""
    if _anything_to_do():
        await sync_to_async(_run_djangos)(**kwargs)


def inline_request_started() -> None:
    """Swap Django's sync ``request_started`` receivers for ``request_started_inline``."""
    for receiver in _DJANGOS:
        signals.request_started.disconnect(receiver)
    signals.request_started.connect(request_started_inline)


def djangos_request_started() -> None:
    """Undo ``inline_request_started``."""
    signals.request_started.disconnect(request_started_inline)
    for receiver in _DJANGOS:
        signals.request_started.connect(receiver)


class ServerStartup:
    """ASGI middleware answering the server's lifespan events, which Django's handler
    refuses (uvicorn then logs "ASGI 'lifespan' protocol appears unsupported"); at startup
    it calls ``inline_request_started`` and ``idle_gc.enable``, and from then on runs the
    cycle collector when the process's last request in flight has been answered
    (``catalog.idle_gc``)."""

    def __init__(self, app) -> None:
        self.app = app
        self.in_flight = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.in_flight += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.in_flight -= 1
                if not self.in_flight:
                    idle_gc.collect_if_due()
            return
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                inline_request_started()
                idle_gc.enable()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                djangos_request_started()
                idle_gc.disable()
                await send({"type": "lifespan.shutdown.complete"})
                return
