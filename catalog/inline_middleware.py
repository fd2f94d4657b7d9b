"""Django's middlewares without a thread hop per hook under ASGI.

Under ASGI, Django runs each hook of a ``MiddlewareMixin`` middleware (``process_request``,
``process_view``, ``process_response``) through ``sync_to_async(thread_sensitive=True)``:
a hop to the process's one thread-sensitive thread and back, per hook, per request. With
our chain that was 15 hops on every API call (1.7 ms before the view and 1.4 ms after it on
two EPYC cores, measured with timestamps in the bench), all queued on that one thread when
many calls arrive at once. The hooks below run in the event loop instead, in the cases
where they do no I/O; where one may reach the database (a session to save, messages kept
in the session, a CSRF token in the session, a form body to parse, a signed-in user to look
up for the log line) it still hops, as Django does. Should a hook run inline touch the
database anyway, Django refuses it there (``SynchronousOnlyOperation``) rather than
blocking the loop. Under WSGI nothing changes: ``__call__`` is Django's.
"""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.middleware import (
    AuthenticationMiddleware as DjangoAuthenticationMiddleware,
)
from django.contrib.messages.middleware import MessageMiddleware as DjangoMessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpRequest, HttpResponse
from django.middleware.clickjacking import (
    XFrameOptionsMiddleware as DjangoXFrameOptionsMiddleware,
)
from django.middleware.csrf import CsrfViewMiddleware as DjangoCsrfViewMiddleware
from django.middleware.security import SecurityMiddleware as DjangoSecurityMiddleware
from django.utils.functional import SimpleLazyObject, empty
from django_structlog.middlewares import request as structlog_request

from catalog.csp import add_policy


def _hop(hook):
    return sync_to_async(hook, thread_sensitive=True)


class InlineHooks:
    """For a ``MiddlewareMixin`` subclass: under ASGI its hooks run in the event loop
    unless ``hop_request``/``hop_view``/``hop_response`` say this call may do I/O."""

    def __init__(self, get_response) -> None:
        super().__init__(get_response)
        if self.async_mode and hasattr(self, "process_view"):
            # Django adapts process_view once, when it loads the chain: a coroutine
            # function is awaited as it is, a plain one would hop on every request.
            sync_view = self.process_view

            async def process_view(request, view_func, view_args, view_kwargs):
                if self.hop_view(request, view_func):
                    return await _hop(sync_view)(request, view_func, view_args, view_kwargs)
                return sync_view(request, view_func, view_args, view_kwargs)

            self.process_view = process_view

    def hop_request(self, request: HttpRequest) -> bool:
        return False

    def hop_view(self, request: HttpRequest, view_func) -> bool:
        return False

    def hop_response(self, request: HttpRequest, response: HttpResponse) -> bool:
        return False

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        response = None
        if hasattr(self, "process_request"):
            if self.hop_request(request):
                response = await _hop(self.process_request)(request)
            else:
                response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if self.hop_response(request, response):
                response = await _hop(self.process_response)(request, response)
            else:
                response = self.process_response(request, response)
        return response


class SecurityMiddleware(InlineHooks, DjangoSecurityMiddleware):
    """Headers and the HTTPS redirect, and the pages' Content-Security-Policy
    (catalog/csp.py): no I/O."""

    def process_response(self, request, response):
        return add_policy(request, super().process_response(request, response))


class XFrameOptionsMiddleware(InlineHooks, DjangoXFrameOptionsMiddleware):
    """One header: no I/O."""


class AuthenticationMiddleware(InlineHooks, DjangoAuthenticationMiddleware):
    """Sets a lazy ``request.user``: the lookup happens where the user is first read."""


class SessionMiddleware(InlineHooks, DjangoSessionMiddleware):
    """Making the (lazy) session costs nothing; saving it is a database write."""

    def hop_response(self, request, response) -> bool:
        session = getattr(request, "session", None)
        return session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)

    def process_response(self, request, response):
        response = super().process_response(request, response)
        if response.cookies and "public" in response.get("Cache-Control", ""):
            # An answer that sets or deletes a cookie (a stale session's, the CSRF token's)
            # is this visitor's own: a shared cache that stores Set-Cookie would hand it to
            # the next visitor (a catalogue page with a deleted session signed everyone out).
            response["Cache-Control"] = "private, max-age=0"
        return response


class MessageMiddleware(InlineHooks, DjangoMessageMiddleware):
    """Nothing to store unless the request read or added messages (which may be kept in
    the session)."""

    def hop_response(self, request, response) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class CsrfViewMiddleware(InlineHooks, DjangoCsrfViewMiddleware):
    """The token comes from a cookie; checking an unsafe request to a view that is not
    exempt reads its form body, which hops."""

    def hop_request(self, request) -> bool:
        return settings.CSRF_USE_SESSIONS

    def hop_view(self, request, view_func) -> bool:
        exempt = getattr(view_func, "csrf_exempt", False)
        return not exempt and request.method not in SAFE_METHODS

    def hop_response(self, request, response) -> bool:
        return settings.CSRF_USE_SESSIONS


class RequestLogMiddleware(structlog_request.RequestMiddleware):
    """django-structlog's, with its two hooks in the event loop: binding the request id
    and logging ``request_started`` (this middleware runs before the user exists), and
    logging ``request_finished`` with the user's id, unless that means looking the user up
    from a session (a page's signed-in visitor the view never read): then it hops. An API
    call's user is the key's, already loaded; an anonymous one needs no query."""

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        if hasattr(request, "user"):  # placed after the authentication middleware
            await _hop(self.prepare)(request)
        else:
            self.prepare(request)
        try:
            response = await self.get_response(request)
        except asyncio.CancelledError:  # the client went away: as django-structlog logs it
            structlog_request.logger.log(
                structlog_request.app_settings.REQUEST_CANCELLED_LOG_LEVEL, "request_cancelled"
            )
            raise
        if _user_unresolved(request):
            await _hop(self.handle_response)(request, response)
        else:
            self.handle_response(request, response)
        return response


def _user_unresolved(request: HttpRequest) -> bool:
    """True when reading ``request.user`` may query the database: it is still the
    authentication middleware's lazy lookup and the request carries a session key (with
    none the lookup answers the anonymous user without a query)."""
    user = request.__dict__.get("user")
    if not (isinstance(user, SimpleLazyObject) and user._wrapped is empty):
        return False
    session = getattr(request, "session", None)
    return session is None or session.session_key is not None
