"""What the drop-in flavours share: a DRF view base that renders errors in the flavour's
shape, and the async shell that runs it and then waits for the job without a thread."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.auth import ApiKeyAuthentication
from catalog import errors
from catalog.errors import refuse_unknown
from playground import api, limits, offload
from playground.flavours import CLOUDFLARE, HF, error_body, error_headers
from playground.options import refuse_non_object

# What each drop-in route takes instead of a multipart form (curl -F), which is Vitrine's.
MULTIPART_REFUSED = {
    HF: (
        "This route takes the image as the raw request body (curl --data-binary @photo.jpg) "
        'or as base64 in JSON {"inputs": ...}, not as a multipart form (curl -F): multipart '
        "uploads are taken on /v1/inference/<org>/<name> and /v1/detections/<org>/<name>."
    ),
    CLOUDFLARE: (
        "This route takes the image as the raw request body (curl --data-binary @photo.jpg) "
        'or as JSON {"image": [0-255, ...]}, not as a multipart form (curl -F): multipart '
        "uploads are taken on /v1/inference/<org>/<name> and /v1/detections/<org>/<name>."
    ),
}


class MultipartRefusedParser(BaseParser):
    """A multipart body on a drop-in route: 415 saying what the route takes. Hugging
    Face's task API and Workers AI take the image as the body (or their JSON); without
    this, the multipart envelope itself was checked as the image ("Unsupported image
    format" for a valid JPEG sent with curl -F)."""

    media_type = "multipart/*"

    def parse(self, stream, media_type=None, parser_context=None):
        view = (parser_context or {}).get("view")
        flavour = getattr(view, "flavour", HF)
        raise errors.ApplicationError(
            MULTIPART_REFUSED.get(flavour, MULTIPART_REFUSED[HF]),
            code="unsupported_media_type",
            status=415,
        )


def refuse_unknown_options(
    request, *, query: set[str], fields: set[str], nested: dict[str, set[str]] | None = None
) -> None:
    """400 ``unknown_parameter`` naming the first query parameter, JSON field or nested
    key (``parameters.top_k``) the flavour does not know: a typo must not run and charge a
    call with defaults the caller did not mean (as on Vitrine's own routes)."""
    refuse_unknown(request.query_params.keys(), query, where="query parameter")
    data = request.data
    if not isinstance(data, dict):
        return  # raw image bytes
    refuse_unknown(data.keys(), fields, where="body field")
    for name, known in (nested or {}).items():
        value = data.get(name)
        refuse_non_object(
            name, value, example="{" + ", ".join(f'"{k}": ...' for k in sorted(known)) + "}"
        )
        if isinstance(value, dict):
            refuse_unknown(value.keys(), known, where="parameter", prefix=f"{name}.")


class FlavourApi(limits.RateLimitHeadersMixin, APIView):
    """An inference view of one flavour: Vitrine's auth, parsers and errors, rendered in
    the flavour's shape (``flavour``)."""

    flavour: str
    authentication_classes = [ApiKeyAuthentication]
    parser_classes = [api.BoundedJSONParser, MultipartRefusedParser, api.ImageBytesParser]

    def get_exception_handler(self):
        flavour = self.flavour

        def handler(exc, context):
            response = errors.api_exception_handler(exc, context)
            if response is None:
                return None  # a bug: the middleware answers the flavour's 500
            body = dict(response.data["error"])
            error = errors.ApplicationError(
                body.pop("message"),
                code=body.pop("code"),
                status=response.status_code,
                type=body.pop("type"),
                param=body.pop("param", None),
                extra=body,
                headers={k: v for k, v in response.items() if k.lower() != "content-type"},
            )
            # The flavour's own text, where the refusal has one (body_limits.too_large).
            error.flavour_messages = getattr(exc, "flavour_messages", None)
            return Response(
                error_body(flavour, error),
                status=error.status,
                headers=error_headers(flavour, error),
            )

        return handler


async def run_view(view, request: HttpRequest, **kwargs) -> HttpResponse:
    """The view on the API's database pool under ASGI (playground/offload.py)."""
    async with api._db_slot():
        return await offload.run_db(request, lambda: view(request, **kwargs))


async def answer(fn, request: HttpRequest, *args) -> HttpResponse:
    async with api._db_slot():
        return await offload.run_db(request, fn, request, *args)


async def answer_waited(
    fn, request: HttpRequest, submitted, threshold: float, outcome: str, row: tuple | None
) -> HttpResponse:
    """``fn(request, submitted, threshold, outcome, job)``, the flavour's answer about the
    job it waited for: built here, in the event loop, from the row the job's finished
    signal carried (as ``playground.api`` answers its own calls: no read, no thread), or,
    when there is none or the answer wants the database (a cancelled job's estimate),
    from the row read on the API's database pool."""
    built = api.answer_from_carried(
        submitted.job,
        row,
        threshold,
        lambda fresh: fn(request, submitted, threshold, outcome, fresh),
    )
    if built is not None:
        return built
    return await answer(fn, request, submitted, threshold, outcome, None)
