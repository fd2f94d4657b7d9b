"""Under an ASGI server a request stays on the event loop through the whole middleware chain.

Django adapts a sync-only middleware by running it, and every middleware outside it, on a
thread that stays parked while the rest of the request runs on the event loop: a
synchronous inference call waiting 30 s for its job held a thread for 30 s. WhiteNoise's
middleware was the one sync-only middleware; ``catalog.static_files`` makes it async
capable. The probe counts the threads parked in asgiref's ``run_until_future`` while an
async view runs: none now, one with WhiteNoise's own middleware (the control that shows
the probe can see it).
"""

from __future__ import annotations

import asyncio
import sys

import pytest
from django.conf import settings as django_settings
from django.http import JsonResponse
from django.test import AsyncClient, Client
from django.urls import path
from django.utils.module_loading import import_string

OURS = "catalog.static_files.AsyncCapableWhiteNoiseMiddleware"
WHITENOISE = "whitenoise.middleware.WhiteNoiseMiddleware"


def _parked(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "run_until_future":
            return True
        frame = frame.f_back
    return False


async def probe(request):
    parked = sum(1 for frame in sys._current_frames().values() if _parked(frame))
    return JsonResponse({"parked": parked})


urlpatterns = [path("probe", probe)]


def test_every_middleware_is_async_capable():
    for dotted in django_settings.MIDDLEWARE:
        assert getattr(import_string(dotted), "async_capable", False), dotted


@pytest.mark.urls(__name__)
@pytest.mark.parametrize(("middleware", "parked"), [(OURS, 0), (WHITENOISE, 1)])
def test_an_async_view_under_asgi_parks_no_thread(settings, middleware, parked):
    settings.MIDDLEWARE = [m if m != OURS else middleware for m in settings.MIDDLEWARE]
    response = asyncio.run(AsyncClient().get("/probe"))
    assert response.status_code == 200
    assert response.json() == {"parked": parked}


@pytest.mark.django_db
@pytest.mark.parametrize("client_class", [Client, AsyncClient])
def test_static_files_are_served_both_ways(settings, client_class):
    settings.WHITENOISE_USE_FINDERS = True  # serve static/ as in development
    client = client_class()
    get = client.get
    if client_class is AsyncClient:

        def get(url, **kwargs):
            return asyncio.run(client.get(url, **kwargs))

    response = get("/static/playground/playground.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    body = b"".join(response.streaming_content) if client_class is Client else None
    assert body is None or b"function" in body
    assert get("/static/no-such-file.js").status_code == 404
    assert get("/models").status_code == 200


def _connections_received(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return client.info("stats")["total_connections_received"]
    finally:
        client.close()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("backend", "shared"),
    [
        ("catalog.redis_cache.SharedPoolRedisCache", True),
        ("django.core.cache.backends.redis.RedisCache", False),  # the control
    ],
)
def test_under_asgi_requests_share_the_processs_redis_connections(
    broker_url, settings, backend, shared
):
    """Each ASGI request has its own cache object; with Django's own backend each one opened
    a new connection to Redis, with ours the process's pool serves them all."""
    from config.settings.env import redis_client_url

    url = redis_client_url(broker_url)
    settings.CACHES = {"default": {"BACKEND": backend, "LOCATION": url}}
    before = _connections_received(url)
    for _ in range(6):
        assert asyncio.run(AsyncClient().get("/models")).status_code == 200
    opened = _connections_received(url) - before - 1  # less the count's own connection
    assert opened <= 1 if shared else opened >= 6
