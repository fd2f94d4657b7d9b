"""Cross-origin calls to the HTTP API (``/v1/`` and the drop-in routes ``/hf/`` and
``/client/v4/``), so the browser snippet, huggingface.js and the Cloudflare SDK work from
any site.

The API authenticates with a Bearer key in a header, never a cookie, so any origin may
call it (``Access-Control-Allow-Origin: *``, no credentials): a page that can send the
request already holds the key. Pages and the admin get no CORS headers.
"""

from __future__ import annotations

import string
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

API_PREFIXES = ("/v1/", "/hf/", "/client/v4/")
# The prefixes without their slash are the API's too: ``/v1`` answers the API's JSON 404,
# and a script that reads it needs the same CORS headers as for any other API answer.
# Matched whole, so a page such as ``/v1foo`` is not taken for the API.
API_ROOTS = frozenset(prefix.rstrip("/") for prefix in API_PREFIXES)
ALLOW_HEADERS = (
    "Authorization, Content-Type, Prefer, Idempotency-Key, X-Request-Id, X-Wait-For-Model, "
    "X-Use-Cache"
)
# A preflight's Access-Control-Request-Headers is echoed when it names only header names
# (clients add their own, e.g. the Cloudflare SDK's X-Stainless-*): with no cookies and a
# Bearer key the page already holds, no header lets a page do more than it could.
_HEADER_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "-_, ")
ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
# What a browser script may read besides the simple headers: cost, balance, job id, limits,
# and a deprecated model's lifecycle (RFC 9745 / RFC 8594, the successor's Link).
EXPOSE_HEADERS = (
    "X-Vitrine-Cost, X-Vitrine-Balance, X-Vitrine-Byok, X-Vitrine-Job-Id, X-Vitrine-Weights, "
    "X-Request-Id, "
    "Location, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, "
    "Deprecation, Sunset, Link, X-Vitrine-Error-Code, X-Vitrine-Cache, x-should-retry, "
    "Idempotent-Replayed, Preference-Applied"
)
PREFLIGHT_MAX_AGE = "600"


def is_api_path(path: str) -> bool:
    """Whether ``path`` is the HTTP API's: under one of ``API_PREFIXES``, or one of them
    without its trailing slash."""
    return path.startswith(API_PREFIXES) or path in API_ROOTS


def _is_preflight(request: HttpRequest) -> bool:
    return request.method == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in request.META


def _preflight(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(status=204)
    response["Access-Control-Allow-Methods"] = ALLOW_METHODS
    asked = request.META.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "")
    fits = asked and len(asked) <= 1024 and set(asked) <= _HEADER_NAME_CHARS
    response["Access-Control-Allow-Headers"] = asked if fits else ALLOW_HEADERS
    response["Vary"] = "Access-Control-Request-Headers"
    response["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    return response


def cors_headers() -> dict[str, str]:
    """What makes an API answer readable from any origin (also sent by the ASGI body
    limit's refusals, playground/middleware.py, which no middleware here sees)."""
    return {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": EXPOSE_HEADERS}


def _allow(response: HttpResponse) -> HttpResponse:
    for name, value in cors_headers().items():
        response[name] = value
    return response


class ApiCorsMiddleware:
    """Answers the API's preflight requests and marks its answers (errors included)
    readable from any origin. Sync and async capable, like the API's views."""

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
        if not is_api_path(request.path):
            return self.get_response(request)
        if _is_preflight(request):
            return _allow(_preflight(request))
        return _allow(self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        if not is_api_path(request.path):
            return await self.get_response(request)
        if _is_preflight(request):
            return _allow(_preflight(request))
        return _allow(await self.get_response(request))
