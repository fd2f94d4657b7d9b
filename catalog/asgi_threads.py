"""Django's ASGI handler, with each request's thread taken from a pool instead of made.

Django runs every request inside its own ``ThreadSensitiveContext``: the request's sync
work (a sync view, a middleware hook that may do I/O, the response's ``close()`` with its
``request_finished`` receivers) runs on one thread of that request's, so that two requests
never share a thread's database connection at once. asgiref makes that thread for the
request (a new ``ThreadPoolExecutor(max_workers=1)`` on its first sync call) and, when the
request ends, starts a second thread to shut the first down. Two thread starts and a join
per request: on a sync view (a page, ``GET /v1/jobs/<id>``, ``/healthz``) the first one is
on the request's path, before the view runs; on every request, the API's included (whose
response is closed on that thread), both take CPU from the next.

Here a request takes an idle one-thread executor from this process's pool (or makes one
when none is idle) and gives it back when it ends, once its thread has finished whatever
the request left on it (a sync view still running after its client went away stays on its
thread, which no other request gets until then). Each request still has a thread of its
own while it runs, as Django and asgiref intend; threads are reused as a WSGI server's
are (gunicorn's threads, Django's development server), so nothing a request leaves in its
thread's state outlives it that a WSGI deployment would not keep too: its database
connection is closed or returned to the pool by ``request_finished`` as before.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler

# Idle executors kept for the next requests; past this many (a burst of slow sync views
# ended) the extra threads end.
KEPT_IDLE = 64

_idle: deque[ThreadPoolExecutor] = deque()
_counting = threading.Lock()
_made = 0


def _forget_parents() -> None:
    """In a forked child (a server's worker process): the parent's threads are not there,
    so neither are its idle executors (work sent to one would wait forever)."""
    global _counting
    _idle.clear()
    _counting = threading.Lock()


os.register_at_fork(after_in_child=_forget_parents)


def executors_made() -> int:
    """How many request threads this process has made (tests, diagnostics)."""
    return _made


def _take() -> ThreadPoolExecutor:
    global _made
    try:
        return _idle.pop()
    except IndexError:
        with _counting:
            _made += 1
            number = _made
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"asgi-request-{number}")


def _give_back(executor: ThreadPoolExecutor) -> None:
    """Idle again once everything the request queued on its thread has run (a no-op
    queued behind it), not before."""

    def idle(_) -> None:
        if len(_idle) < KEPT_IDLE:
            _idle.append(executor)
        else:
            executor.shutdown(wait=False)

    executor.submit(lambda: None).add_done_callback(idle)


class PooledThreadsASGIHandler(ASGIHandler):
    """``ASGIHandler`` whose requests take their thread from a pool (module docstring)."""

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            # Django's own handler refuses it the same way.
            return await super().__call__(scope, receive, send)
        executor = _take()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            _give_back(executor)


def get_asgi_application() -> PooledThreadsASGIHandler:
    """``django.core.asgi.get_asgi_application`` with ``PooledThreadsASGIHandler``."""
    import django

    django.setup(set_prefix=False)
    return PooledThreadsASGIHandler()
