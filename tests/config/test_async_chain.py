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
from asgiref.sync import AsyncToSync, SyncToAsync
from django.conf import settings as django_settings
from django.contrib import messages
from django.http import JsonResponse
from django.test import AsyncClient, Client
from django.urls import path
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt

from config.urls import urlpatterns as site_urlpatterns
from tests import factories

OURS = "catalog.static_files.AsyncCapableWhiteNoiseMiddleware"
WHITENOISE = "whitenoise.middleware.WhiteNoiseMiddleware"


# A thread parked for the view is inside AsyncToSync's call, which scheduled the view on
# the event loop and waits for it (in ``run_until_future``, called from there only). Looked
# for by the call's own frame: the view can start before that thread has reached its wait.
_PARKING = AsyncToSync.__call__.__code__


def _parked(frame) -> bool:
    while frame is not None:
        if frame.f_code is _PARKING:
            return True
        frame = frame.f_back
    return False


async def probe(request):
    parked = sum(1 for frame in sys._current_frames().values() if _parked(frame))
    return JsonResponse({"parked": parked})


@csrf_exempt
async def api_like(request):
    """Like the inference API: exempt from CSRF, no session, the user set by the view."""
    return JsonResponse({"ok": True})


def remember(request):
    request.session["seen"] = request.session.get("seen", 0) + 1
    messages.info(request, "remembered")
    return JsonResponse({"seen": request.session["seen"]})


def recall(request):
    return JsonResponse(
        {
            "seen": request.session.get("seen"),
            "messages": [str(m) for m in messages.get_messages(request)],
            "user": request.user.username,
        }
    )


def form(request):
    return JsonResponse({"posted": request.POST.get("x")})


urlpatterns = [
    path("probe", probe),
    path("api", api_like),
    path("remember", remember),
    path("recall", recall),
    path("form", form),
    # The site's own, after these: its error pages (a refused form's 403) link to them.
    *site_urlpatterns,
]


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


def _record_hops(monkeypatch, keep) -> list[str]:
    """The names (module.qualname) of the sync functions sent to a thread by sync_to_async
    for which ``keep(name)`` is true."""
    seen: list[str] = []
    original = SyncToAsync.__call__

    async def counted(self, *args, **kwargs):
        func = getattr(self.func, "__func__", self.func)
        name = f"{getattr(func, '__module__', '') or ''}.{getattr(func, '__qualname__', func)}"
        if keep(name):
            seen.append(name)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counted)
    return seen


@pytest.fixture
def hops(monkeypatch) -> list[str]:
    """The sync functions sent to a thread by middleware."""
    return _record_hops(monkeypatch, lambda name: "middleware" in name.rsplit(".", 2)[0])


DJANGOS_OWN = {
    "catalog.inline_middleware.RequestLogMiddleware": (
        "django_structlog.middlewares.RequestMiddleware"
    ),
    "catalog.inline_middleware.SecurityMiddleware": (
        "django.middleware.security.SecurityMiddleware"
    ),
    "catalog.inline_middleware.SessionMiddleware": (
        "django.contrib.sessions.middleware.SessionMiddleware"
    ),
    "playground.middleware.CommonMiddleware": "django.middleware.common.CommonMiddleware",
    "catalog.inline_middleware.CsrfViewMiddleware": "django.middleware.csrf.CsrfViewMiddleware",
    "catalog.inline_middleware.AuthenticationMiddleware": (
        "django.contrib.auth.middleware.AuthenticationMiddleware"
    ),
    "catalog.inline_middleware.MessageMiddleware": (
        "django.contrib.messages.middleware.MessageMiddleware"
    ),
    "catalog.inline_middleware.XFrameOptionsMiddleware": (
        "django.middleware.clickjacking.XFrameOptionsMiddleware"
    ),
}


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("chain", ["ours", "django's own (the control)"])
def test_an_api_call_crosses_the_middleware_chain_without_a_thread_hop(settings, hops, chain):
    """With Django's own middlewares a POST like an inference call makes 15 hops."""
    if chain != "ours":
        settings.MIDDLEWARE = [DJANGOS_OWN.get(m, m) for m in settings.MIDDLEWARE]
    response = asyncio.run(AsyncClient().post("/api", b"bytes", content_type="image/jpeg"))
    assert response.status_code == 200
    assert "X-Frame-Options" in response and "X-Content-Type-Options" in response
    assert len(hops) == (0 if chain == "ours" else 15), hops


@pytest.mark.urls(__name__)
@pytest.mark.django_db(transaction=True)
def test_sessions_messages_and_users_still_reach_the_database(hops):
    """What may do I/O still hops: a session saved, messages kept, a signed-in user read
    for the log line; the next request sees all three."""
    user = factories.user(username="ada")
    client = AsyncClient()
    client.force_login(user)  # sync in Django 5.2 (aforce_login is the async one)
    hops.clear()

    first = asyncio.run(client.get("/remember"))
    assert first.json() == {"seen": 1}
    assert any("SessionMiddleware.process_response" in h for h in hops)
    assert any("MessageMiddleware.process_response" in h for h in hops)
    assert any("handle_response" in h for h in hops)  # the user was never read: lazy

    second = asyncio.run(client.get("/recall"))
    assert second.json() == {"seen": 1, "messages": ["remembered"], "user": "ada"}


@pytest.mark.urls(__name__)
@pytest.mark.django_db(transaction=True)
def test_csrf_is_still_enforced_on_forms(hops):
    client = AsyncClient(enforce_csrf_checks=True)
    refused = asyncio.run(client.post("/form", {"x": "1"}))
    assert refused.status_code == 403
    assert any("CsrfViewMiddleware.process_view" in h for h in hops)  # the form was read
    client.cookies["csrftoken"] = token = "a" * 32
    accepted = asyncio.run(client.post("/form", {"x": "1", "csrfmiddlewaretoken": token}))
    assert accepted.json() == {"posted": "1"}


# --- the start of a served request ----------------------------------------------------------
@pytest.fixture
def signal_hops(monkeypatch) -> list[str]:
    """The signal dispatches sent to a thread (Django's sync receivers, grouped)."""
    return _record_hops(monkeypatch, lambda name: "dispatch" in name or "asgi_startup" in name)


async def _served(application, path: str, *, lifespan: bool) -> tuple[int, list[dict]]:
    """GET ``path`` through the real ASGI application, as uvicorn calls it, after the
    server's lifespan startup (``lifespan``), then its shutdown."""
    answers: list[dict] = []
    shut_down = asyncio.Event()

    async def lifespan_receive():
        if not answers:
            return {"type": "lifespan.startup"}
        await shut_down.wait()  # the server stops after the request
        return {"type": "lifespan.shutdown"}

    async def lifespan_send(message):
        answers.append(message)

    if lifespan:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
        server = asyncio.create_task(application(scope, lifespan_receive, lifespan_send))
        while not answers:
            await asyncio.sleep(0)  # until the startup is complete
    sent: list[dict] = []
    body = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if body:
            return body.pop(0)
        await asyncio.sleep(3600)  # a client waiting for the answer

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 5),
        "server": ("testserver", 80),
    }  # fmt: skip
    await application(scope, receive, send)
    if lifespan:
        shut_down.set()
        await server
    return sent[0]["status"], answers


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("lifespan", [True, False], ids=["served", "control"])
def test_a_served_request_starts_without_a_thread_hop(settings, signal_hops, lifespan):
    """Once the server has started the application, request_started's receivers run inline
    (no connection is open at a request's start); without the startup (the control)
    Django's sync receivers cost a hop. The shutdown puts Django's receivers back."""
    from django.core import signals
    from django.db import close_old_connections, reset_queries

    from config.asgi import application

    status, answers = asyncio.run(_served(application, "/probe", lifespan=lifespan))
    assert status == 200
    started = [h for h in signal_hops if "sync_send" in h]
    assert len(started) == (0 if lifespan else 1), signal_hops
    if lifespan:
        assert answers == [
            {"type": "lifespan.startup.complete"},
            {"type": "lifespan.shutdown.complete"},
        ]
    live = [ref() for _, ref, *_ in signals.request_started.receivers]
    assert reset_queries in live and close_old_connections in live


@pytest.mark.django_db  # the receivers' thread may hold the test's own connection
@pytest.mark.parametrize("logged", [False, True], ids=["nothing to do", "queries logged"])
def test_djangos_receivers_still_run_when_they_have_something_to_do(signal_hops, logged):
    """With a query logged (or a connection open) in the request's context, Django's
    receivers run as before, on a thread; with neither, nothing hops."""
    from django.db import connection

    from catalog.asgi_startup import request_started_inline

    async def start():
        if logged:
            connection.queries_log.append({"sql": "SELECT 1", "time": "0.000"})  # no I/O
        try:
            await request_started_inline(signal=None, sender=None)
        finally:
            connection.queries_log.clear()

    asyncio.run(start())
    ran = [h for h in signal_hops if "asgi_startup._run_djangos" in h]
    assert len(ran) == (1 if logged else 0), signal_hops
