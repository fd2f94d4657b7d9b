"""Cross-origin calls to the HTTP API (``/v1/``), so the browser snippet works from any site.

The API authenticates with a Bearer key in a header, never a cookie, so any origin may
call it (``Access-Control-Allow-Origin: *``, no credentials): a page that can send the
request already holds the key. Pages and the admin get no CORS headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

API_PREFIX = "/v1/"
ALLOW_HEADERS = "Authorization, Content-Type, Prefer, Idempotency-Key, X-Request-Id"
ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
# What a browser script may read besides the simple headers: cost, balance, job id, limits,
# and a deprecated model's lifecycle (RFC 9745 / RFC 8594, the successor's Link).
EXPOSE_HEADERS = (
    "X-Vitrine-Cost, X-Vitrine-Balance, X-Vitrine-Byok, X-Vitrine-Job-Id, X-Request-Id, "
    "Location, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, "
    "Deprecation, Sunset, Link"
)
PREFLIGHT_MAX_AGE = "600"


def _is_preflight(request: HttpRequest) -> bool:
    return request.method == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in request.META


def _preflight() -> HttpResponse:
    response = HttpResponse(status=204)
    response["Access-Control-Allow-Methods"] = ALLOW_METHODS
    response["Access-Control-Allow-Headers"] = ALLOW_HEADERS
    response["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    return response


def _allow(response: HttpResponse) -> HttpResponse:
    response["Access-Control-Allow-Origin"] = "*"
    response["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
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
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        if _is_preflight(request):
            return _allow(_preflight())
        return _allow(self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            return await self.get_response(request)
        if _is_preflight(request):
            return _allow(_preflight())
        return _allow(await self.get_response(request))
