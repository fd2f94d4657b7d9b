"""Refusing oversized and unreadable request bodies on the inference API and the try page.

Two layers, both scoped to ``/v1/`` and to POSTs of a model's try page:

- ``RequestLimitsMiddleware`` (Django, sync and async): a ``Content-Length`` over the limit
  (``playground.body_limits.body_limit``) is answered 413 before anything reads the body, and
  errors Django raises while parsing a body (a multipart without a boundary, too many form
  fields, a form field over ``DATA_UPLOAD_MAX_MEMORY_SIZE``, a broken upload) become 4xx in
  the API's one JSON error shape instead of Django's HTML 400. It runs before
  ``CsrfViewMiddleware``, whose check would otherwise read a try-page form body first.
- ``BodyLimitASGIMiddleware`` (wraps the ASGI application): Django's ASGI handler reads the
  whole body before any middleware runs, so a body without ``Content-Length`` (chunked) or
  one longer than it claimed is counted as it arrives and cut one byte past the limit: 413,
  and nothing more is read. A chunked body within the limit is read here and handed on
  with its ``Content-Length``: Django's request reads ``Content-Length`` bytes of a body, so
  without one it would see none (an image streamed by ``curl -T``, a generator given to
  ``requests`` or a ``ReadableStream`` given to ``fetch`` would be "no image"). Under WSGI
  the server hands Django at most ``Content-Length`` bytes, so the Django middleware's
  check is enough there.

Browser form posts on the try page (no ``Accept: application/json``) get the page back with
the message, as the view's own refusals do; everything else gets JSON.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Awaitable, Callable
from tempfile import SpooledTemporaryFile
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import (
    DisallowedHost,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.http.request import UnreadablePostError
from django.middleware.common import CommonMiddleware as DjangoCommonMiddleware
from django.shortcuts import redirect
from django.template import loader
from django.utils.deprecation import MiddlewareMixin
from django.views import defaults

from catalog import errors
from catalog.cors import API_PREFIXES, cors_headers
from catalog.inline_middleware import InlineHooks
from catalog.observability import REQUEST_ID_HEADER, is_well_formed, new_request_id
from playground import body_limits, flavours

logger = logging.getLogger(__name__)

API_PREFIX = "/v1/"
NUL_IN_ADDRESS = (
    "The address holds a NUL character (%00); no model id, name or search term has one."
)
TRY_SUFFIX = "/try"


def in_scope(path: str) -> bool:
    if flavours.in_scope(path):  # /v1/, /hf/, /client/v4/
        return True
    return path.startswith("/models/") and path.endswith(TRY_SUFFIX)


def _wants_json(request: HttpRequest) -> bool:
    return flavours.in_scope(request.path) or "application/json" in request.headers.get(
        "Accept", ""
    )


def _flavour(request: HttpRequest) -> str:
    """The request's API flavour, from its raw query string: ``request.GET`` raises again
    for a query over ``DATA_UPLOAD_MAX_NUMBER_FIELDS``, inside the refusal of that very
    error, and Django then answered its HTML 400 on the API (1,001 query parameters)."""
    return flavours.flavour_for(request.path, request.headers, request.META.get("QUERY_STRING"))


def refusal(request: HttpRequest, error: errors.ApplicationError) -> HttpResponse:
    """The error in the request's API flavour (Vitrine's one JSON shape, Hugging Face's or
    Cloudflare's), or for a browser form the try page with a message."""
    if _wants_json(request):
        return flavours.error_response(_flavour(request), error)
    messages.error(request, error.message)
    return redirect(request.path)


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's 500 (``handler500``). On the API, an error raised outside the view, where
    ``process_exception`` does not see it (a middleware reading a signed-in visitor's
    session or user while the database is down), is the flavour's JSON too: 503
    ``database_unavailable`` for a database outage, else its 500. Elsewhere, the site's
    503 page for a database outage (a restart, a failover, a pool with no free connection
    for its whole wait: a moment's fault, with ``Retry-After``; a page answered 500 "went
    wrong" for it before session 44), else its 500 page."""
    exception = sys.exc_info()[1]
    outage = isinstance(exception, (OperationalError, InterfaceError))
    if flavours.in_scope(request.path):
        error = flavours.database_unavailable() if outage else flavours.internal_error()
        return flavours.error_response(_flavour(request), error)
    if outage:
        return database_unavailable_page()
    return defaults.server_error(request)


DISALLOWED_HOST = (
    "This server does not answer for the host this request named (its Host header); call "
    "the API at the address its documentation gives."
)
UNREADABLE_REQUEST = "The request could not be read; check its address and headers."


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 400 (``handler400``), for a request refused before any view: a Host header
    not in ALLOWED_HOSTS, say. On the API it is the flavour's JSON error (it was Django's
    HTML 400 page, though every other API answer is JSON: session 46's probe); elsewhere
    Django's page. Nothing here may ask the request for its host."""
    if flavours.in_scope(request.path):
        disallowed = isinstance(exception, DisallowedHost)
        error = errors.ApplicationError(
            DISALLOWED_HOST if disallowed else UNREADABLE_REQUEST,
            code="disallowed_host" if disallowed else "bad_request",
        )
        return flavours.error_response(_flavour(request), error)
    return defaults.bad_request(request, exception)


def database_unavailable_page() -> HttpResponse:
    """The site's 503 page for a database outage, rendered as Django renders its 500 page:
    no request, no context, no query."""
    response = HttpResponse(loader.get_template("503.html").render(), status=503)
    response["Retry-After"] = str(flavours.DATABASE_RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


class CommonMiddleware(InlineHooks, DjangoCommonMiddleware):
    """Django's, except that only GET and HEAD are redirected to the slashed URL: a
    redirected POST loses its body (a 301), and in DEBUG Django raises instead (a 500).
    Its hooks do no I/O: under ASGI they run in the event loop (catalog.inline_middleware)."""

    def should_redirect_with_slash(self, request: HttpRequest) -> bool:
        if request.method not in ("GET", "HEAD"):
            return False
        return super().should_redirect_with_slash(request)

    def process_request(self, request: HttpRequest):
        # No id, name or search term of the site holds a NUL, and PostgreSQL refuses one in
        # any text it is sent: an address with one (/models/%00/x, ?models=%00) raised a
        # DataError, a 500, wherever it reached a query (session 43's outside probe).
        if "\x00" in request.path or "%00" in request.META.get("QUERY_STRING", ""):
            if _wants_json(request):
                error = errors.ApplicationError(NUL_IN_ADDRESS, code="invalid_characters")
                return flavours.error_response(_flavour(request), error)
            return defaults.bad_request(request, SuspiciousOperation(NUL_IN_ADDRESS))
        return super().process_request(request)


def body_error(
    exc: BaseException, request: HttpRequest | None = None
) -> errors.ApplicationError | None:
    """The 4xx for an error Django raises while reading or parsing a body (or, with
    ``request``, its query string); None for others."""
    if isinstance(exc, RequestDataTooBig):
        return errors.ApplicationError(
            body_limits.FIELD_TOO_LARGE.format(limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE),
            code="request_too_large",
            status=413,
        )
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        query = request.META.get("QUERY_STRING", "") if request is not None else ""
        if isinstance(exc, TooManyFieldsSent) and limit and query.count("&") + 1 > limit:
            message = body_limits.TOO_MANY_PARAMETERS.format(limit=limit)
            return errors.ApplicationError(message, code="too_many_fields")
        return errors.ApplicationError(body_limits.TOO_MANY_FIELDS, code="too_many_fields")
    if isinstance(exc, MultiPartParserError):
        return errors.ApplicationError(
            body_limits.INVALID_MULTIPART.format(reason=str(exc).rstrip(".") or "malformed"),
            code="invalid_multipart",
        )
    if isinstance(exc, UnreadablePostError):
        return errors.ApplicationError(body_limits.UNREADABLE_BODY, code="unreadable_body")
    if isinstance(exc, SuspiciousOperation):
        return errors.ApplicationError(
            body_limits.UNREADABLE_BODY, code="bad_request"
        )  # e.g. a file name Django refuses
    return None


def _declared_length(request: HttpRequest) -> int | None:
    raw = request.META.get("CONTENT_LENGTH") or "0"
    try:
        length = int(raw)
    except ValueError:
        return None
    return length if length >= 0 else None


class RequestLimitsMiddleware(InlineHooks, MiddlewareMixin):
    """See the module docstring. ``MiddlewareMixin`` makes it work under WSGI and ASGI;
    under ASGI its check runs in the event loop, except for the try page's form, whose
    parsing (possibly into temporary files) hops to a thread."""

    def hop_view(self, request: HttpRequest, view_func) -> bool:
        return (
            request.method in body_limits.BODY_METHODS
            and in_scope(request.path)
            and not flavours.in_scope(request.path)
        )

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        if not in_scope(request.path):
            return None
        try:
            # The query string, parsed here (Django parses it on first use): under ASGI a
            # DRF view first read it while choosing its renderer, and a query of more than
            # DATA_UPLOAD_MAX_NUMBER_FIELDS parameters failed that choice, which DRF's
            # error handling then needed: a 500 on every route but one (session 46's probe).
            request.GET  # noqa: B018
        except TooManyFieldsSent as exc:
            return refusal(request, body_error(exc, request))
        if request.method not in body_limits.BODY_METHODS:
            return None
        length = _declared_length(request)
        if length is None:
            error = errors.ApplicationError(
                body_limits.BAD_CONTENT_LENGTH, code="bad_content_length"
            )
            return refusal(request, error)
        content_type = request.content_type or ""
        if length > body_limits.body_limit(content_type):
            return refusal(request, body_limits.too_large(length, content_type))
        if not flavours.in_scope(request.path):
            # The try page is a plain Django view: parse its form here, where a broken body
            # can still be answered politely (the CSRF check would parse it next, raising).
            try:
                request.POST  # noqa: B018 -- parses the body
                request.FILES  # noqa: B018
            except Exception as exc:
                error = body_error(exc, request)
                if error is None:
                    raise
                return refusal(request, error)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception):
        outage = isinstance(exception, (OperationalError, InterfaceError))
        if outage and not flavours.in_scope(request.path):
            # A page's (or the try page's) view met a database outage: its 503 page here,
            # as an answer, so the request's log line says 503 too (through handler500 it
            # said request_failed, 500). One raised before the view (the session's read of
            # a signed-in visitor) still comes through server_error.
            logger.warning(
                "database unavailable on %s %s: %s", request.method, request.path, exception
            )
            return database_unavailable_page()
        if not in_scope(request.path):
            return None
        error = body_error(exception, request)
        if error is not None:
            return refusal(request, error)
        if not flavours.in_scope(request.path):
            return None  # the try page: Django's own 500 page
        if isinstance(exception, errors.ApplicationError):
            # Refused outside a DRF view (an awaited call's answer: api.job_lost).
            return refusal(request, exception)
        if outage:
            # The database is down or restarting, or the web process's pool had no free
            # connection for its whole wait (psycopg_pool.PoolTimeout, wrapped by Django):
            # a retryable 503, not a bug's 500.
            logger.warning(
                "database unavailable on %s %s: %s", request.method, request.path, exception
            )
            return refusal(request, flavours.database_unavailable())
        # A bug on the API: a retryable 500 in the caller's flavour, with no internals;
        # the traceback goes to the logs (and to Sentry through its logging integration).
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return refusal(request, flavours.internal_error())


# --- ASGI ---------------------------------------------------------------------------------
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# How much of a streamed body read here each message hands on (Django reads its body in
# chunks of this size too: ASGIHandler.chunk_size).
STREAMED_CHUNK = 64 * 1024


class BodyLimitASGIMiddleware:
    """Wraps an ASGI application: bodies over the limit are refused or cut while streaming."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") not in body_limits.BODY_METHODS
            or not in_scope(scope.get("path", ""))
        ):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        content_type = headers.get("content-type", "")
        limit = body_limits.body_limit(content_type)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(send, body_limits.too_large(int(declared), content_type), scope)
            return
        if "content-length" not in headers:
            await self._streamed(scope, receive, send, limit, content_type)
            return

        received = 0
        cut = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, cut
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Django sees a client that went away: it answers nothing and reads no
                    # more; the 413 is sent below.
                    cut = True
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, tracking_send)
        if cut and not started:
            await self._refuse(send, body_limits.too_large(None, content_type), scope)

    async def _streamed(
        self, scope: Scope, receive: Receive, send: Send, limit: int, content_type: str
    ) -> None:
        """A body without ``Content-Length`` (chunked): read here, one chunk past the limit
        at most (413), then handed to the application with its length, from memory or, past
        Django's in-memory upload size, from a temporary file (as Django would keep it)."""
        size = 0
        with SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE) as spool:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # the client went away: nobody to answer
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    await self._refuse(send, body_limits.too_large(None, content_type), scope)
                    return
                spool.write(chunk)
                if not message.get("more_body", False):
                    break
            spool.seek(0)
            read_all = False

            async def replay() -> Message:
                nonlocal read_all
                if read_all:
                    return await receive()  # the client's disconnect, when it comes
                chunk = spool.read(STREAMED_CHUNK)
                read_all = spool.tell() >= size
                return {"type": "http.request", "body": chunk, "more_body": not read_all}

            headers = [*scope["headers"], (b"content-length", str(size).encode())]
            await self.app({**scope, "headers": headers}, replay, send)

    @staticmethod
    async def _refuse(send: Send, error: errors.ApplicationError, scope: Scope) -> None:
        """The refusal, as Django's middleware would have dressed it: the request's id
        (the caller's when well formed, as ``RequestIdMiddleware`` takes it) and, on the
        API, the CORS headers, so a page's ``fetch()`` reads the 413 instead of a network
        error; the body as compact as the views' JSON; one log line with the id. Before
        session 46 these answers carried neither, and nothing was logged."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope.get("path", "")
        flavour = flavours.flavour_for(
            path, headers, scope.get("query_string", b"").decode("latin-1")
        )
        body = json.dumps(flavours.error_body(flavour, error), separators=(",", ":")).encode()
        incoming = headers.get(REQUEST_ID_HEADER.lower())
        request_id = incoming if is_well_formed(incoming) else new_request_id()
        dressed = {**flavours.error_headers(flavour, error), REQUEST_ID_HEADER: request_id}
        if path.startswith(API_PREFIXES):
            dressed |= cors_headers()
        logger.warning(
            "%s %s refused before the application: %s %s (request_id=%s)",
            scope.get("method"), path, error.status, error.code, request_id,
        )  # fmt: skip
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    *(
                        (name.lower().encode("latin-1"), value.encode("latin-1"))
                        for name, value in dressed.items()
                    ),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
