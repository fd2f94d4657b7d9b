"""The request id: one id per HTTP request, on the response, in every log line, on its jobs.

``RequestIdMiddleware`` runs first (outermost), so every response carries ``X-Request-Id``:
pages, API errors, 404s, static files, security redirects. A caller's own id is kept when it
is well-formed (a load balancer's or a client's, so one id follows a call across systems);
anything else (missing, too long, odd characters, a header-injection attempt) is replaced
by a fresh uuid4 hex. The id is bound into structlog's context variables for the request,
where log lines (``merge_contextvars``), Sentry events (``before_send``) and new jobs
(``current_request_id``) read it.

Generic on purpose: nothing here knows about other apps, so it lives in ``catalog``, which
depends on none.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

import structlog
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

REQUEST_ID_HEADER = "X-Request-Id"
_META_KEY = "HTTP_X_REQUEST_ID"
# Printable, header- and log-safe, long enough not to collide by accident.
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{8,128}")


def is_well_formed(value: str | None) -> bool:
    return bool(value) and _WELL_FORMED.fullmatch(value) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str:
    """The id bound for the request (or task) this code runs in; "" outside one."""
    return str(structlog.contextvars.get_contextvars().get("request_id") or "")


class RequestIdMiddleware:
    """Accept or make the request id, bind it for logging, echo it on the response.

    Sync and async capable: under ASGI an async view keeps the id in its task's context.
    Runs before django-structlog's ``RequestMiddleware``, which reads the id this one wrote
    back into ``request.META`` (``DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID``) and logs
    ``request_started``/``request_finished`` with it.
    """

    sync_capable = True
    async_capable = True

    def __init__(
        self, get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]
    ) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.is_async:
            return self.__acall__(request)
        request_id = self._bind(request)
        try:
            response = self.get_response(request)
        finally:
            structlog.contextvars.clear_contextvars()
        response[REQUEST_ID_HEADER] = request_id
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        request_id = self._bind(request)
        try:
            response = await self.get_response(request)
        finally:
            structlog.contextvars.clear_contextvars()
        response[REQUEST_ID_HEADER] = request_id
        return response

    @staticmethod
    def _bind(request: HttpRequest) -> str:
        incoming = request.META.get(_META_KEY)
        request_id = incoming if is_well_formed(incoming) else new_request_id()
        # Everything downstream (request.headers, django-structlog) sees the accepted id only.
        request.META[_META_KEY] = request_id
        request.__dict__.pop("headers", None)  # request.headers is cached from META
        request.request_id = request_id
        # A thread or task may carry context over from an earlier request: start clean.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        return request_id
