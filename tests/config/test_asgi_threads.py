"""Requests under ASGI take their thread from a pool (catalog/asgi_threads.py).

Django's handler makes a thread for each request's sync work and a second one to join it
when the request ends; ours lends each request an idle thread of the process. What must
hold: sync work still runs on a thread of the request's own (two requests at once never
share one), a thread still busy with a request's work is not lent to the next, and
sequential requests stop making threads.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.http import JsonResponse
from django.urls import path

from catalog import asgi_threads
from catalog.asgi_threads import PooledThreadsASGIHandler

released = threading.Event()
arrived: list[str] = []


def where(request):
    return JsonResponse({"thread": threading.current_thread().name})


def held(request):
    arrived.append(threading.current_thread().name)
    released.wait(30)
    return JsonResponse({"thread": threading.current_thread().name})


urlpatterns = [path("where", where), path("held", held)]


async def _get(handler, path_: str) -> dict:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path_, "raw_path": path_.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
    }  # fmt: skip
    sent: list[dict] = []
    requested = False

    async def receive():
        nonlocal requested
        if requested:  # the body was read: the client stays until the answer
            await asyncio.sleep(3600)
        requested = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await handler(scope, receive, send)
    assert sent[0]["status"] == 200
    return json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def _threads(handler, count: int, *, settle: bool = False) -> list[str]:
    """The threads ``count`` sequential requests ran on. ``settle``: before each request,
    wait until the last one's thread is idle again (handed back once the no-op queued
    behind its request has run, which may be just after the next request starts)."""

    def idle_again(name: str) -> bool:
        prefix = name.rsplit("_", 1)[0]
        return any(e._thread_name_prefix == prefix for e in list(asgi_threads._idle))

    async def run():
        names: list[str] = []
        for _ in range(count):
            deadline = time.monotonic() + 30
            while settle and names and not idle_again(names[-1]):
                assert time.monotonic() < deadline, "a request's thread never came back"
                await asyncio.sleep(0.001)
            names.append((await _get(handler, "/where"))["thread"])
        return names

    return asyncio.run(run())


@pytest.mark.urls(__name__)
def test_sequential_requests_reuse_the_threads_of_finished_ones():
    made = asgi_threads.executors_made()
    names = _threads(PooledThreadsASGIHandler(), 20, settle=True)
    assert all(name.startswith("asgi-request") for name in names)
    # Each request takes the thread the one before handed back: one thread for all.
    assert len(set(names)) == 1
    assert asgi_threads.executors_made() - made <= 1


@pytest.mark.urls(__name__)
def test_djangos_own_handler_makes_a_thread_per_request():
    """The control: the same requests through Django's handler, a new thread each."""
    names = _threads(ASGIHandler(), 5)
    assert len(set(names)) == 5


@pytest.mark.urls(__name__)
def test_requests_at_once_each_run_on_a_thread_of_their_own():
    arrived.clear()
    released.clear()
    handler = PooledThreadsASGIHandler()

    async def run():
        calls = [asyncio.create_task(_get(handler, "/held")) for _ in range(3)]
        deadline = time.monotonic() + 30
        while len(arrived) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        # All three are inside their views at once, each holding its thread.
        assert len(set(arrived)) == 3
        released.set()
        return [(await call)["thread"] for call in calls]

    try:
        assert len(set(asyncio.run(run()))) == 3
    finally:
        released.set()


def test_a_thread_still_busy_with_a_request_is_not_lent_again():
    """A client that went away leaves its sync view running on the request's thread: the
    next request gets another thread until that work ends."""
    busy = asgi_threads._take()
    gate = threading.Event()
    running = busy.submit(gate.wait, 30)
    asgi_threads._give_back(busy)
    other = asgi_threads._take()
    try:
        assert other is not busy
    finally:
        asgi_threads._give_back(other)
        gate.set()
    running.result(timeout=30)
    deadline = time.monotonic() + 30
    while busy not in asgi_threads._idle and time.monotonic() < deadline:
        time.sleep(0.01)
    assert busy in asgi_threads._idle  # idle again once its work ended


def test_what_is_not_http_is_refused_as_django_refuses_it():
    async def run():
        await PooledThreadsASGIHandler()({"type": "websocket"}, None, None)

    with pytest.raises(ValueError, match="Django can only handle ASGI/HTTP connections"):
        asyncio.run(run())


def test_the_served_application_uses_it():
    from config.asgi import application  # ServerStartup(BodyLimitASGIMiddleware(handler))

    assert isinstance(application.app.app, PooledThreadsASGIHandler)


def test_a_forked_child_does_not_get_its_parents_idle_threads():
    """A server that forks its workers after serving (or importing) leaves them none of
    its idle executors: their threads exist only in the parent."""
    executor = asgi_threads._take()
    asgi_threads._give_back(executor)
    deadline = time.monotonic() + 30
    while executor not in asgi_threads._idle and time.monotonic() < deadline:
        time.sleep(0.01)
    assert executor in asgi_threads._idle
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report how many idle executors it sees, then leave at once
        os.write(write, str(len(asgi_threads._idle)).encode())
        os._exit(0)
    os.close(write)
    seen = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert seen == b"0"
    assert executor in asgi_threads._idle  # the parent keeps its own
