"""A served web process: uvloop under uvicorn, and its cycle collector run when its last
request in flight has been answered (catalog/idle_gc.py), with what startup built frozen;
the shutdown undoes both."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from catalog import idle_gc
from catalog.asgi_startup import ServerStartup


@pytest.mark.parametrize(
    ("counts", "generation"),
    [
        ((0, 0, 0), None),
        ((699, 9, 9), None),  # too few new objects: nothing, whatever the older counts
        ((700, 0, 0), 0),
        ((5000, 9, 9), 0),
        ((700, 10, 0), 1),
        ((700, 10, 9), 1),
        ((700, 10, 10), 2),
    ],
)
def test_the_collection_due_is_the_one_cpythons_thresholds_would_run(counts, generation):
    assert idle_gc.due(counts) == generation


class Node:
    """An object in a reference cycle with itself: only the cycle collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_the_collector_runs_once_the_last_request_in_flight_is_answered():
    held = asyncio.Event()
    made: list[weakref.ref] = []

    async def app(scope, receive, send):
        if scope["path"] == "/hold":
            await held.wait()
        else:
            # Cyclic garbage: past the default threshold, short of the one in flight.
            made.extend(weakref.ref(Node()) for _ in range(500))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    server = ServerStartup(app)
    before = gc.get_threshold()
    collections: list[int] = []

    def seen(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    async def request(path: str) -> None:
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            pass

        await server({"type": "http", "path": path}, receive, send)

    async def run():
        answers: list[str] = []
        stop = asyncio.Event()

        async def lifespan_receive():
            if not answers:
                return {"type": "lifespan.startup"}
            await stop.wait()  # the server stops after the requests
            return {"type": "lifespan.shutdown"}

        async def lifespan_send(message):
            answers.append(message["type"])

        lifespan = asyncio.create_task(
            server({"type": "lifespan"}, lifespan_receive, lifespan_send)
        )
        while not answers:
            await asyncio.sleep(0)
        assert answers == ["lifespan.startup.complete"]
        assert idle_gc.enabled()
        assert gc.get_threshold()[0] == idle_gc.IN_FLIGHT_THRESHOLD
        assert gc.get_freeze_count() > 0  # what the process had built is frozen

        gc.callbacks.append(seen)
        try:
            holding = asyncio.create_task(request("/hold"))
            await asyncio.sleep(0)
            await request("/make")  # answered while /hold is still in flight
            assert idle_gc.YOUNG <= gc.get_count()[0] < idle_gc.IN_FLIGHT_THRESHOLD
            assert not collections  # no one collected: a request is in flight
            assert all(ref() is not None for ref in made)  # the cycles are still there
            held.set()
            await holding  # the last request in flight ends
            assert collections[:1] in ([0], [1], [2])  # the collection due, once
            assert all(ref() is None for ref in made)  # and it freed them
        finally:
            gc.callbacks.remove(seen)
        stop.set()
        await lifespan
        assert answers == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

    try:
        asyncio.run(run())
    finally:
        idle_gc.disable()
    assert not idle_gc.enabled()
    assert gc.get_threshold() == before  # Python's own collector again
    assert gc.get_freeze_count() == 0


def test_a_process_that_was_never_started_keeps_pythons_collector():
    """Importing the application (tests, management commands) changes nothing."""
    assert not idle_gc.enabled()
    assert idle_gc.collect_if_due() is None


def test_uvicorn_serves_with_uvloop_and_h11():
    """uvloop is installed with the project, so uvicorn's "auto" loop takes it, as `make
    run`, the bench and gunicorn's uvicorn workers start it; the parser stays h11, which
    refuses a request head past 16 KiB (httptools, "auto"'s first choice when installed,
    bounds none)."""
    from uvicorn.config import Config
    from uvicorn.protocols.http.h11_impl import H11Protocol

    config = Config(app="config.asgi:application", lifespan="off")
    config.load()
    assert config.http_protocol_class is H11Protocol
    assert config.h11_max_incomplete_event_size is None  # h11's own 16 KiB bound
    assert config.get_loop_factory().__module__.startswith("uvloop")
