"""The inference HTTP API: an image in, boxes out, paid from the wallet.

``POST /v1/inference/<org>/<name>`` takes raw image bytes, a multipart ``image`` field, or
Hugging Face's JSON body ``{"inputs": <base64>, "parameters": {"threshold": 0.5}}``. The
job's cost is reserved before anything is queued (402 when the wallet cannot cover it);
the call then waits for the result (up to ``VITRINE_SYNC_WAIT`` seconds) and answers the
Hugging Face shape, or answers 202 with the job resource at once with
``Prefer: respond-async`` or when the wait runs out. ``GET /v1/jobs/<id>`` polls it.

The wait holds no thread and no database connection: ``inference_create`` is an ``async``
view (served by an ASGI server) that runs the synchronous DRF view for everything up to
the queued job, then awaits the job's finished signal (``playground.events``) and answers
from the row.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import uuid
import weakref
from collections.abc import Callable
from decimal import Decimal
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SynchronousOnlyOperation
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.urls import reverse
from django.utils.http import parse_header_parameters
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.auth import ApiKeyAuthentication
from billing.services.charges import key_allow_list_check, user_has_byok
from catalog import errors
from catalog.errors import refuse_unknown_query
from catalog.lifecycle import card_callable_check, lifecycle_apply, lifecycle_remember
from catalog.models import ModelCard, PriceRoute
from catalog.selectors import card_renamed, card_with_routes
from playground import (
    body_limits,
    events,
    idempotency,
    limits,
    offload,
    openapi,
    pipeline,
    services,
    webhooks,
)
from playground.failures import (
    ACCOUNT_CLOSED_CODE,
    CANCELLED,
    FAILURES,
    SERVICE_UNAVAILABLE,
    job_failure,
)
from playground.flavours import CLOUDFLARE, HF, VITRINE, wants_hf
from playground.models import Job, JobStatus
from playground.options import Options, query_box_format, request_options
from playground.quote import quote_build
from playground.runtime import ImageError
from playground.runtime.images import EMPTY_IMAGE_MESSAGE, FORMAT_NAMES, sniff_format
from playground.selectors import (
    job_from_answer,
    job_of_owner,
    job_reread,
    jobs_of_owner,
    model_filter_known,
)
from playground.serializers import JobSerializer, job_data
from playground.storage import StorageUnavailable

DEFAULT_THRESHOLD = 0.5
# The bytes of a urlencoded form: printable ASCII (tabs and line ends tolerated).
_FORM_BYTES = bytes(range(32, 127)) + b"\t\r\n"
# What a caller told 503 should wait before trying again.
RETRY_AFTER_SECONDS = 5

MISSING_IMAGE = (
    "Send an image: raw bytes, a multipart 'image' file (curl -F image=@photo.jpg), or JSON "
    '{"inputs": <base64>}.'
)
# The same on the drop-in routes, naming only what each takes (no multipart there).
MISSING_IMAGE_HF = (
    "Send an image: its raw bytes as the request body (curl --data-binary @photo.jpg), or "
    'JSON {"inputs": <base64>}.'
)
MISSING_IMAGE_CLOUDFLARE = (
    "Send an image: its raw bytes as the request body (curl --data-binary @photo.jpg), or "
    'JSON {"image": [0-255, ...]}.'
)
NO_IMAGE_PART = (
    "The form has no 'image' file: send the image as a multipart file part (curl -F "
    'image=@photo.jpg), as the raw request body, or as JSON {"inputs": <base64>}.'
)
IMAGE_NOT_A_FILE = (
    "'image' came as a text field, not a file: send it as a multipart file part (curl -F "
    "image=@photo.jpg, not image=<photo.jpg), as the raw request body, or as JSON "
    '{"inputs": <base64>}.'
)
IMAGE_WITHOUT_FILE_NAME = (
    "The 'image' part has an empty file name (filename=\"\"), as a browser sends a file input "
    "with no file chosen, so it holds no file: choose a file, or send it with a name (curl -F "
    "image=@photo.jpg)."
)
BAD_BASE64 = "'inputs' is not valid base64 image data."
ONE_IMAGE = "Send one 'image' part: a call detects objects in one image."
INPUTS_NOT_TEXT = "'inputs' must be a string: the image's base64 (or a data: URL)."
logger = logging.getLogger(__name__)
BAD_THRESHOLD = "'threshold' must be a number between 0 and 1."
THRESHOLD_TWICE = (
    "'threshold' was given more than once with different values ({values}): give it once, "
    "in the query string or in the body."
)
TOO_LARGE = "The upload is {size:,} bytes; the limit is {limit:,} bytes."
NO_ROUTE = "{model} has no callable route named '{route}'."
PROVIDER_ROUTE = (
    "The {route} route runs on {provider} with your own key: store it on your dashboard "
    "(BYOK), or use Vitrine's own route '{own}'."
)
JOB_NOT_FOUND = "No job {job_id} for this API key's account."
JOBS_PAGE_DEFAULT = 20
JOBS_PAGE_MAX = 100
BAD_CHOICE = "'{name}' must be one of: {choices}."
BAD_BOUNDED_INT = "'{name}' must be a whole number from {low} to {high}."
NO_SUCH_CURSOR = "'starting_after' names no job of this account: {value}."
ACCEPTED_UNREAD = (
    "The job was made and will run, but its state cannot be read now (a database restart): "
    "poll its url for the answer; do not send the call again."
)
NO_SUCH_MODEL_FILTER = "'model' names no model: {value}. Model ids are listed at /v1/models."
NOT_CANCELLABLE = "Job {job_id} is {status}; only a queued job can be cancelled."
IMAGE_NOT_DELETABLE = (
    "Job {job_id} is {status}: its image can be deleted once it has finished (a queued job "
    "can be cancelled first, with DELETE /v1/jobs/{job_id})."
)
JOB_LOST = (
    "The job was lost before it ran: the database restarted. Nothing was charged; send the"
    " request again."
)

# The HTTP status a failed job answers with, by its error code (playground/failures.py).
FAILURE_STATUS = {code: failure.status for code, failure in FAILURES.items()}
# The HTTP status a refused upload answers with, by its ImageError code (others: 400).
IMAGE_ERROR_STATUS = {"image_too_large": 413, "unsupported_format": 415}


# The OpenAPI description of POST /v1/inference (/v1/detections reads InferenceCreateApi's
# docstring): for API users, so no internal names or paths.
INFERENCE_CREATE_DESCRIPTION = (
    "Detects objects in one image with the model named in the path, charged to your wallet "
    "at Vitrine's per-image price (reserved before the job is queued: `402 "
    "insufficient_credits` when the wallet cannot cover it; a provider's route, e.g. "
    "`route=cloudflare`, runs on your own provider key (BYOK) and charges the wallet "
    "nothing). The call waits for the result "
    "and answers Hugging Face's shape: a bare JSON array of `{label, score, box}` with "
    "integer pixel boxes, the job id, cost and balance in the `X-Vitrine-*` headers. With "
    "`Prefer: respond-async`, or when the wait runs out, it answers `202` with the job at "
    "once: poll it at `GET /v1/jobs/{job_id}`. `dry_run=true` answers a quote (the "
    "image's size and resize, the price and exact cost, whether your wallet covers it) "
    "without running or charging anything. "
    "`POST /v1/detections/{model_id}` is the same call answering the job resource on `200` "
    "too."
)

JOB_RESOURCE_DOC = (
    "The job: id, object 'detection_job', model, route, status (queued, running, succeeded, "
    "failed, cancelled), created/started/finished, attempts, image {sha256, width, height, "
    "original_width, original_height, deleted}, threshold, detections (null until "
    "succeeded), floor, timings, error {code, message}, cost, would_be_cost, byok, "
    "charge_status, balance, url, "
    "request_id (the X-Request-Id of the call that created it), weights {revision, untrained, "
    "backend, precision, notice} (what computed the boxes; null until a worker loaded the "
    "model; untrained weights also set the X-Vitrine-Weights: untrained header)."
)


class ImageBytesParser(BaseParser):
    """Any other content type: the body is the image itself."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        if stream is None:
            return b""
        # One byte past the limit is enough to refuse: a body without Content-Length is
        # never read whole (the middleware refuses a declared length over it).
        limit = body_limits.body_limit(media_type or "")
        data = stream.read(limit + 1)
        if len(data) > limit:
            raise body_limits.too_large(None, media_type or "")
        if unlabelled_json(data, media_type):
            return json_body(data)
        return data


# A JSON object's first bytes; no image format starts so.
_JSON_OBJECT = re.compile(rb"[ \t\r\n]*\{")


def unlabelled_json(data: bytes, media_type: str | None) -> bool:
    """Whether a body not labelled JSON is a JSON object all the same, to be read as one:
    huggingface_hub before 1.0 posts ``{"inputs": ..., "parameters": ...}`` with no
    Content-Type (its async client as ``application/octet-stream``), ``curl -d`` labels it
    a form and ``fetch()`` with a string body ``text/plain``. Hugging Face's API reads
    them as JSON; here each was a 415 "unsupported image format" (session 46's client
    probe). A body labelled as an image is taken at its word."""
    if (media_type or "").lower().startswith("image/"):
        return False
    return _JSON_OBJECT.match(data) is not None


class ImageOrFormParser(BaseParser):
    """``application/x-www-form-urlencoded``: a form (``image`` aside, its fields are
    text), or an image sent with curl's default type. ``curl --data-binary @photo.jpg``
    without ``-H Content-Type`` labels the bytes as a form, as Hugging Face's examples
    send them; a form body is percent-encoded ASCII, so a body with other bytes is taken as
    the image itself (then checked like any raw upload: a non-image is a 415)."""

    media_type = "application/x-www-form-urlencoded"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = body_limits.body_limit(self.media_type)
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise body_limits.too_large(None, self.media_type)
        if raw.translate(None, _FORM_BYTES):  # bytes no form has: the image itself
            return raw
        if unlabelled_json(raw, media_type):  # curl -d '{"inputs": ...}'
            return json_body(raw)
        if len(raw) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            # Django's own cap on a form, answered as before (playground.middleware:
            # 413 request_too_large, "send the image as a multipart 'image' file").
            raise RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        return QueryDict(raw, encoding=encoding)


class _PartWatch:
    """A multipart body's stream, read through to Django's parser, noting what that parser
    does not tell: whether the body reached its closing boundary (a body cut off mid-file
    parses as one without that file), and whether an ``image`` part came with an empty file
    name (which it skips as no part at all). Only the part headers that follow a boundary
    line are looked at; the boundary never occurs inside a part."""

    # A part's headers: a few short lines after its boundary line.
    _TAIL = 8192

    def __init__(self, stream, boundary: bytes) -> None:
        self._stream = stream
        self._heads = re.compile(
            rb"--" + re.escape(boundary) + rb"\r?\n((?:[^\r\n]{1,2000}\r?\n){1,16}?)\r?\n"
        )
        self._close = b"--" + boundary + b"--"
        self._tail = b""
        self.closed = False
        self.image_without_file_name = False

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        window = self._tail + chunk
        if not self.closed and self._close in window:
            self.closed = True
        for match in self._heads.finditer(window):
            if _image_part_without_file_name(match.group(1)):
                self.image_without_file_name = True
        self._tail = window[-self._TAIL :]
        return chunk


def _image_part_without_file_name(head: bytes) -> bool:
    """Whether a part's headers name it ``image`` with a file name Django drops ("", or
    one that is nothing once its directories are cut: "/", "..")."""
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() != "content-disposition":
            continue
        _, params = parse_header_parameters(value)
        if params.get("name") != "image" or "filename" not in params:
            return False
        kept = params["filename"].replace("\\", "/").rsplit("/", 1)[-1]
        return kept.strip() in ("", ".", "..")
    return False


class BodyMultiPartParser(MultiPartParser):
    """DRF's multipart parser, its failures answered as the API's ``invalid_multipart``
    (README, *Bad input*), not DRF's ``parse_error``; a body cut off before its closing
    boundary is one too (Django's parser drops an unfinished file: it read as "no image"),
    and an ``image`` part with an empty file name, which Django's parser skips, is a
    ``missing_image`` that says so."""

    def parse(self, stream, media_type=None, parser_context=None):
        _, params = parse_header_parameters(media_type or "")
        boundary = params.get("boundary", "")
        watch = _PartWatch(stream, boundary.encode("latin-1")) if boundary else None
        try:
            parsed = super().parse(watch or stream, media_type, parser_context)
        except ParseError as exc:
            reason = str(exc.detail).removeprefix("Multipart form parse error - ")
            raise errors.ApplicationError(
                body_limits.INVALID_MULTIPART.format(reason=reason.rstrip(".") or "malformed"),
                code="invalid_multipart",
            ) from None
        if watch is not None and not watch.closed:
            raise errors.ApplicationError(body_limits.MULTIPART_CUT, code="invalid_multipart")
        if watch is not None and watch.image_without_file_name and "image" not in parsed.files:
            raise errors.ApplicationError(
                IMAGE_WITHOUT_FILE_NAME, code="missing_image", param="image"
            )
        return parsed


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """An object's members, refusing a name given twice: the standard library keeps the
    last, so ``{"threshold": 0.9, "threshold": 0.1}`` would run at 0.1 unsaid (RFC 8259
    leaves such an object's meaning to the reader)."""
    data = dict(pairs)
    if len(data) < len(pairs):
        seen = set()
        for name, _ in pairs:
            if name in seen:
                raise ValueError(f"the name {name!r} appears twice in one object: give it once")
            seen.add(name)
    return data


def _json_depth(value) -> int:
    """How deeply ``value`` nests lists and dicts, without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in item)
    return deepest


class BoundedJSONParser(BaseParser):
    """A JSON parser with a size limit, a nesting limit and 400s for any bad JSON.

    Not a subclass of DRF's ``JSONParser``: DRF reads such a parser's body through
    ``request.body``, which Django caps at ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MB), so a
    base64 image past ~1.9 MB was an HTML 400. This one reads the stream itself, up to the
    JSON body limit (base64 of ``VITRINE_MAX_UPLOAD_BYTES`` plus the envelope). The
    standard library's parser recurses: 100000 nested brackets raise RecursionError (a
    500); that, and any nesting past ``MAX_JSON_DEPTH``, is a 400 ``invalid_json``.
    """

    media_type = "application/json"
    renderer_class = JSONRenderer

    def parse(self, stream, media_type=None, parser_context=None):
        limit = body_limits.body_limit("application/json")
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise body_limits.too_large(None, "application/json")
        return json_body(raw)


def json_body(raw: bytes):
    """A JSON body's value: strict, each object's names once, nesting bounded; any bad
    JSON a 400 ``invalid_json`` saying why."""
    try:
        # strict, as DRF's default; a name twice in one object is refused
        data = json.loads(raw, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except RecursionError:
        data = None
        depth = body_limits.MAX_JSON_DEPTH + 1
    except ValueError as exc:  # includes UnicodeDecodeError
        raise errors.ApplicationError(_not_json(raw, exc), code="invalid_json") from None
    else:
        depth = _json_depth(data)
    if depth > body_limits.MAX_JSON_DEPTH:
        raise errors.ApplicationError(
            body_limits.JSON_TOO_DEEP.format(depth=body_limits.MAX_JSON_DEPTH),
            code="invalid_json",
        )
    return data


# The Content-Type each image format is sent with, for a body labelled JSON by mistake.
IMAGE_MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}


def _not_json(raw: bytes, exc: ValueError) -> str:
    """Why a body labelled JSON is not: an image (or another file) sent with the wrong
    Content-Type says so, rather than "'utf-8' codec can't decode byte 0xff"."""
    claimed = sniff_format(raw)
    if claimed in IMAGE_MEDIA_TYPES:
        return body_limits.JSON_IS_IMAGE.format(
            format=FORMAT_NAMES.get(claimed, claimed), media_type=IMAGE_MEDIA_TYPES[claimed]
        )
    if claimed is not None:
        return body_limits.JSON_IS_OTHER_FILE.format(format=claimed)
    reason = str(exc).splitlines()[0] if str(exc) else "unreadable"
    if "integer string conversion" in reason:  # Python's own advice is no caller's business
        reason = "a number in it has too many digits"
    return body_limits.INVALID_JSON.format(reason=reason)


def parse_threshold(raw, *, default: float = DEFAULT_THRESHOLD) -> float:
    """A caller's ``threshold``: a number in [0, 1] (nan and inf refused), ``default`` when
    absent, else ``ApplicationError`` 400 ``invalid_threshold``."""
    if raw is None or raw == "":
        return default
    try:
        # true/false are not numbers here (float(True) would be a threshold of 1), nor are
        # other scripts' digits (Arabic-Indic, full-width), which float() reads.
        ascii_digits = not isinstance(raw, str) or raw.isascii()
        value = -1.0 if isinstance(raw, bool) or not ascii_digits else float(raw)
    except (TypeError, ValueError, OverflowError):  # a JSON integer of 400 digits overflows
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise errors.ApplicationError(BAD_THRESHOLD, code="invalid_threshold", param="threshold")
    return value + 0.0  # -0 is 0 (it was echoed back as -0.0)


def prefers_async(request) -> bool:
    """``Prefer: respond-async`` (RFC 7240: preference names are case-insensitive, several
    may be listed, each may carry parameters)."""
    prefer = request.headers.get("Prefer", "")
    return any(
        part.split(";", 1)[0].split("=", 1)[0].strip().lower() == "respond-async"
        for part in prefer.split(",")
    )


def caller_threshold(request, body=None) -> float:
    """The call's threshold, from the query string or the body (a form field, JSON's
    ``parameters.threshold``), each checked. Given more than once with different values
    (``?threshold=0.9`` and a body's 0.5, or the query twice) is a 400 ``invalid_value``:
    running at either one would run the call at a threshold its caller may not have meant."""
    bodies = body if isinstance(body, list) else [] if body is None else [body]  # a form's
    given = [*request.query_params.getlist("threshold"), *bodies]
    values = {parse_threshold(raw) for raw in given if raw is not None and raw != ""}
    if len(values) > 1:
        raise errors.ApplicationError(
            THRESHOLD_TWICE.format(values=", ".join(f"{v:g}" for v in sorted(values))),
            code="invalid_value",
            param="threshold",
        )
    return values.pop() if values else DEFAULT_THRESHOLD


def b64_image(inputs: str) -> bytes:
    """A base64 image as callers send it: standard alphabet, padded, whitespace (the line
    breaks of ``base64 file`` or Python's ``encodebytes``) ignored; else 400."""
    if inputs.startswith("data:") and "," in inputs:
        inputs = inputs.split(",", 1)[1]  # a data: URL, as browsers make them
    try:
        return base64.b64decode("".join(inputs.split()), validate=True)
    except (binascii.Error, ValueError):
        raise errors.ApplicationError(BAD_BASE64, code="invalid_base64", param="inputs") from None


# What "send an image" says on each flavour's route: only the ways that route takes.
MISSING_IMAGE_BY_FLAVOUR = {HF: MISSING_IMAGE_HF, CLOUDFLARE: MISSING_IMAGE_CLOUDFLARE}


def read_image_input(request, *, flavour: str = VITRINE) -> tuple[bytes, float]:
    """The call's image bytes and threshold, from a raw body, a form or multipart body's
    ``image`` file, or JSON's base64 ``inputs``; each way of getting it wrong a 4xx that
    says which (``flavour``: whose route, for what the refusals suggest instead)."""
    data = request.data
    missing = MISSING_IMAGE_BY_FLAVOUR.get(flavour, MISSING_IMAGE)
    if isinstance(data, bytes):
        image, threshold = data, caller_threshold(request)
        if not image:
            raise errors.ApplicationError(missing, code="missing_image")
    elif isinstance(data, QueryDict):  # a form or a multipart body (Vitrine's routes)
        threshold = caller_threshold(request, data.getlist("threshold"))  # each of them
        files = request.FILES.getlist("image")
        if len(files) > 1:  # one would be dropped unsaid
            raise errors.ApplicationError(ONE_IMAGE, code="invalid_value", param="image")
        if not files:
            if "image" in data:  # curl -F image=<photo.jpg, or a form's image=<base64>
                raise errors.ApplicationError(IMAGE_NOT_A_FILE, code="invalid_value", param="image")
            raise errors.ApplicationError(NO_IMAGE_PART, code="missing_image", param="image")
        image = files[0].read()
        if not image:  # a file was sent and it is empty: the try page's answer
            raise errors.ApplicationError(EMPTY_IMAGE_MESSAGE, code="corrupt_image", param="image")
    else:
        inputs = data.get("inputs") if hasattr(data, "get") else None
        parameters = data.get("parameters") if hasattr(data, "get") else None
        parameters = parameters if isinstance(parameters, dict) else {}
        threshold = caller_threshold(request, parameters.get("threshold"))
        if inputs is not None and not isinstance(inputs, str):  # 123, [...], {...}
            raise errors.ApplicationError(INPUTS_NOT_TEXT, code="invalid_value", param="inputs")
        if not inputs:
            raise errors.ApplicationError(missing, code="missing_image", param="inputs")
        image = b64_image(inputs)
        if not image:  # "inputs": "====" decodes to nothing
            raise errors.ApplicationError(missing, code="missing_image", param="inputs")
    limit = settings.VITRINE_MAX_UPLOAD_BYTES
    if len(image) > limit:
        raise errors.ApplicationError(
            TOO_LARGE.format(size=len(image), limit=limit), code="image_too_large", status=413
        )
    return image, threshold


def _callable_card(model_id: str, request=None, *, successor_path=None) -> ModelCard:
    """The published card ``model_id`` names, if it may run now (404, 409, 410). Given the
    request, its answer (whatever it is, the 410 included) carries the card's lifecycle
    headers (``catalog/lifecycle.py``); ``successor_path`` builds the replacement's URL on
    routes that do not name the model by ``model_id``."""
    # With its organisation and active routes (_route); the replacement (a retired or
    # deprecated card's successor) loads only where set.
    card = card_with_routes(model_id=model_id)
    if card is None:
        # A renamed model's former id runs the card it names now (one query, on a miss only):
        # clients written against the old id keep working, as Hugging Face's do.
        renamed = card_renamed(model_id=model_id)
        card = card_with_routes(model_id=renamed) if renamed else None
    if card is None:
        raise errors.model_not_found(model_id)
    if request is not None:  # Deprecation/Sunset/Link on whatever this call answers
        lifecycle_remember(request, card, successor_path=successor_path)
    card_callable_check(card)  # the one check (catalog/lifecycle.py): 409 / 410
    return card


def _route(card: ModelCard, slug: str | None, *, user) -> PriceRoute:
    # Loaded with the card by _callable_card; read (all, then filtered) for any other card.
    routes = [r for r in card.routes.all() if r.is_active]
    own = next((r for r in routes if r.is_own), None)
    route = own if not slug else next((r for r in routes if r.slug == slug), None)
    if route is None or route.is_estimate:
        raise errors.ApplicationError(
            NO_ROUTE.format(model=card.model_id, route=slug or "vitrine"),
            code="route_not_found",
            status=404,
            param="route",
        )
    if not route.is_own and not user_has_byok(user=user, route=route):
        # We hold no account with the provider: its route runs only on the user's own key.
        raise errors.ApplicationError(
            PROVIDER_ROUTE.format(
                route=route.slug, provider=route.provider, own=own.slug if own else "none"
            ),
            code="byok_required",
            status=400,
            param="route",
        )
    return route


def _money(amount: Decimal) -> str:
    return f"{Decimal(amount).normalize():f}"


def job_resource(
    job: Job, *, request, threshold: float | None = None, box_format: str | None = None
) -> dict:
    """The job resource: one serializer (playground/serializers.py) for every body."""
    return job_data(job, request=request, threshold=threshold, box_format=box_format)


def _cost_headers(resource: dict) -> dict[str, str]:
    headers = {"X-Vitrine-Job-Id": resource["id"], "X-Vitrine-Cost": resource["cost"]}
    headers["X-Vitrine-Byok"] = "true" if resource["byok"] else "false"
    if resource["balance"] is not None:
        headers["X-Vitrine-Balance"] = resource["balance"]
    if resource["weights"] and resource["weights"]["untrained"]:
        # The 200 answer is the bare list of detections: the header carries the warning.
        headers["X-Vitrine-Weights"] = "untrained"
    return headers


class InferenceCreateApi(limits.RateLimitHeadersMixin, APIView):
    """Detects objects in one image with the model named in the path, charged to your wallet
    at Vitrine's per-image price (reserved before the job is queued: `402
    insufficient_credits` when the wallet cannot cover it; a provider's route, e.g.
    `route=cloudflare`, runs on your own provider key (BYOK) and charges the wallet
    nothing). The call waits for the result;
    with `Prefer: respond-async`, or when the wait runs out, it answers `202` with the job
    at once: poll it at `GET /v1/jobs/{job_id}`. `dry_run=true` answers a quote (the image's
    size and resize, the price and exact cost, whether your wallet covers it) without
    running or charging anything.
    """

    # The docstring above is written for API users: drf-spectacular shows it as the
    # description of /v1/detections (playground/detections.py declares none of its own).
    authentication_classes = [ApiKeyAuthentication]
    # Vitrine's own flavour (/v1/detections) answers the job resource on 200 too; this
    # route keeps Hugging Face's bare list (playground/detections.py).
    vitrine_flavour = False
    parser_classes = [BoundedJSONParser, BodyMultiPartParser, ImageOrFormParser, ImageBytesParser]

    class InputSerializer(serializers.Serializer):
        inputs = serializers.CharField(help_text="Base64 image (or send raw bytes instead).")
        parameters = serializers.DictField(required=False, help_text='{"threshold": 0.5}')

    def read_options(self, request) -> Options:
        """Vitrine's options (dry_run, webhook, box_format); refuses unknown parameters. A
        flavour with other body fields (e.g. Cloudflare's ``image``) overrides this."""
        return request_options(request, vitrine_flavour=self.vitrine_flavour)

    @extend_schema(
        operation_id="inference_create",
        summary="Detect objects in an image",
        description=INFERENCE_CREATE_DESCRIPTION,
        tags=["inference"],
        request=openapi.REQUEST_BODIES,
        parameters=openapi.parameters(
            "route", "threshold", "dry_run", "webhook", "Prefer", "Idempotency-Key"
        )
        + openapi.inference_headers(),
        responses={
            200: openapi.success_response(hf_list=True),
            202: openapi.job_response(JOB_RESOURCE_DOC),
            **openapi.INFERENCE_ERRORS,
        },
    )
    def post(self, request, model_id: str):
        api_key = request.auth
        card = _callable_card(model_id, request)
        limits.api_call_check(request, card)  # 429 + Retry-After when the key/account is full
        options = self.read_options(request)  # 400 unknown_parameter naming it
        route = _route(card, request.query_params.get("route"), user=request.user)
        idempotency_key = idempotency.key_from(request)
        image, threshold = read_image_input(request)
        if options.webhook is not None:
            webhooks.webhook_url_validate(options.webhook)  # 400 invalid_webhook
        extra_parameters = {"box_format": options.box_format} if self.vitrine_flavour else {}
        if options.dry_run:  # a quote: nothing stored, reserved, queued or charged
            if idempotency_key:  # the real call's 422 for a key used for another request
                idempotency.idempotent_job_find(
                    user=request.user,
                    key=idempotency_key,
                    print_=pipeline.request_print(
                        flavour="vitrine", card=card, route=route, image=image,
                        threshold=threshold, extra_parameters=extra_parameters,
                        webhook=options.webhook,
                    ),
                )  # fmt: skip
            try:
                quote = quote_build(
                    card=card, route=route, user=request.user, image_bytes=image,
                    threshold=threshold, api_key=api_key,
                )  # fmt: skip
            except ImageError as exc:
                raise errors.ApplicationError(
                    str(exc), code=exc.code, status=IMAGE_ERROR_STATUS.get(exc.code, 400)
                ) from None
            return Response(quote)
        # A synchronous call (inference_create awaits its job) says nothing of the job until
        # it ends, or until services.creation_flush has made its creation durable (_answer).
        waits = bool(settings.VITRINE_SYNC_WAIT) and not prefers_async(request)
        submitted = pipeline.job_submit(
            request=request,
            card=card,
            route=route,
            image=image,
            threshold=threshold,
            flavour="vitrine",
            idempotency_key=idempotency_key,
            extra_parameters=extra_parameters,
            webhook=options.webhook,
            answer_waits=waits,
        )
        job = submitted.job
        answer = {"full": self.vitrine_flavour, "box_format": options.box_format}
        if not waits or job.status in Job.FINAL:  # an Idempotency-Key's job that already ended
            response = job_response(request, job, threshold, **answer)
            if response.status_code == 202 and prefers_async(request):
                response["Preference-Applied"] = "respond-async"
            return pipeline.replay_mark(response, submitted)
        # inference_create awaits the job, holding no thread, then answers from the row.
        response = Response(status=202)
        response.vitrine_wait = (job, settings.VITRINE_SYNC_WAIT, threshold, answer)
        return pipeline.replay_mark(response, submitted)


def job_response(
    request, job: Job, threshold: float, *, full: bool = False, box_format: str = "int"
) -> HttpResponse:
    """The answer to an inference call about the job it made, from the job's row as it is
    now: the detections (200; the bare Hugging Face list, or the whole job resource with
    ``full``), the job's failure, or the job resource (202) while it is not finished."""
    return job_response_from(request, job_reread(job), threshold, full=full, box_format=box_format)


def job_response_from(
    request, job: Job, threshold: float, *, full: bool = False, box_format: str = "int"
) -> HttpResponse:
    """``job_response`` from the job's row as ``job`` holds it (already read, no read)."""
    resource = job_resource(job, request=request, threshold=threshold, box_format=box_format)
    headers = _cost_headers(resource)
    if job.status == JobStatus.SUCCEEDED:
        body = resource if full else resource["detections"]
        return JsonResponse(body, safe=False, headers=headers)
    if job.status in Job.FINAL:
        if job.status == JobStatus.CANCELLED and job.error_code != ACCOUNT_CLOSED_CODE:
            status, error_type, message = CANCELLED.status, None, CANCELLED.message or ""
            code = "job_cancelled"
        else:
            # What the caller is told: no server path or operator instruction (failures.py).
            status, error_type, message = job_failure(job.error_code, job.error_message)
            code = job.error_code or "job_failed"
        error = errors.ApplicationError(
            message,
            code=code,
            status=status,
            type=error_type,
            extra={"job": resource["id"], "cost": resource["cost"]},
        )
        if status == 503:
            headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return JsonResponse(error.as_dict(), status=status, headers=headers)
    headers["Location"] = resource["url"]
    return JsonResponse(resource, status=202, headers=headers)


_inference_create_sync = InferenceCreateApi.as_view()


def _create_job(request: HttpRequest, model_id: str, view=None) -> HttpResponse:
    return (view or _inference_create_sync)(request, model_id=model_id)


_db_slots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _db_slot() -> asyncio.Semaphore:
    """Bounds how many calls of this process do their database work at once (one
    semaphore per event loop). Hundreds may wait at once; without it a burst of them
    arriving, or timing out, together would open as many database connections and
    threads, past PostgreSQL's max_connections."""
    loop = asyncio.get_running_loop()
    slot = _db_slots.get(loop)
    if slot is None:
        slot = _db_slots[loop] = asyncio.Semaphore(settings.VITRINE_API_DB_CONCURRENCY)
    return slot


@csrf_exempt
async def inference_create(request: HttpRequest, model_id: str) -> HttpResponse:
    """``POST /v1/inference/<model>``: everything up to the queued job runs in the DRF view
    (authentication, validation, the reservation); then this coroutine awaits the job's
    finished signal for up to VITRINE_SYNC_WAIT seconds without holding a thread, and
    answers from the row (200 detections, the failure, or 202 with the job)."""
    # huggingface_hub pointed here: its flavour, no 202. A call that also uses anything of
    # Vitrine's own (?webhook=, ?dry_run=, Prefer, a multipart body) stays Vitrine's.
    if wants_hf(request.headers, request.GET):
        from playground.flavours.hf import hf_inference

        return await hf_inference(request, model_id)
    return await _create_and_wait(request, model_id)


async def _create_and_wait(request: HttpRequest, model_id: str, view=None) -> HttpResponse:
    async with _db_slot():
        response = await offload.run_db(request, _create_job, request, model_id, view)
    pending = getattr(response, "vitrine_wait", None)
    if pending is None:
        return lifecycle_apply(request, response)
    job, wait, threshold, answer_options = pending

    async def is_final() -> bool:
        try:
            return await offload.run_db(request, events.job_is_final, job.pk)
        except (OperationalError, InterfaceError):
            # The database went away after the job was made: the job still runs (and is
            # charged) when it is back, so the call keeps waiting on its finished signal.
            return False

    final = await events.job_finished_heard(job.pk, timeout=wait, is_final=is_final)
    answer = _answer_carried(request, job, final, threshold, answer_options)
    if answer is None:
        try:
            async with _db_slot():
                answer = await offload.run_db(
                    request, _answer, request, job, threshold, answer_options
                )
        except (OperationalError, InterfaceError) as exc:
            logger.warning("job %s: answered 202 unread, the database is away (%s)", job.pk, exc)
            answer = accepted_unread(request, job)
    return lifecycle_apply(request, limits.copy_rate_limit_headers(response, answer))


def accepted_unread(request, job: Job) -> HttpResponse:
    """202 for a job made by this call whose row cannot be read now (the database went away
    while the call waited), from what the call holds: its id, its URL to poll, its status
    as made. Not a 503: a caller told to retry would pay twice, as the job runs once the
    database is back; the job's cost comes with it when it is polled."""
    url = request.build_absolute_uri(
        reverse("playground_api:job-detail", kwargs={"job_id": job.pk})
    )
    body = {
        "id": str(job.pk),
        "object": "job",
        "status": JobStatus.QUEUED,
        "url": url,
        "model": job.card.model_id,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "message": ACCEPTED_UNREAD,
    }
    return JsonResponse(
        body, status=202, headers={"Location": url, "X-Vitrine-Job-Id": str(job.pk)}
    )


def _answer(request, job: Job, threshold: float, answer_options: dict) -> HttpResponse:
    return job_response_from(request, awaited_row(job), threshold, **answer_options)


def awaited_row(job: Job) -> Job:
    """The row of the job a synchronous call awaited, read now (no carried row, or the
    wait's bound passed), to answer from: a job that has not ended is made durable first
    (``services.creation_flush``); 503 ``job_lost`` when the row is gone."""
    try:
        fresh = job_reread(job)
    except Job.DoesNotExist:
        raise job_lost(job) from None
    if fresh.status not in Job.FINAL:
        services.creation_flush(job.pk)
    return fresh


def job_lost(job: Job) -> errors.ApplicationError:
    """503 for an awaited job whose row is gone: its creation, committed without waiting
    for its fsync (``services.creation_flush``), was lost with everything after it when the
    database crashed before the job ended. Nothing was charged; the call may be retried."""
    return errors.ApplicationError(
        JOB_LOST,
        code="job_lost",
        status=503,
        type=SERVICE_UNAVAILABLE,
        extra={"job": str(job.pk)},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def answer_from_carried(
    job: Job, row: tuple | None, threshold: float, build: Callable[[Job], HttpResponse]
) -> HttpResponse | None:
    """``build(fresh)``, run here, in the event loop, on the job as the row its finished
    signal carried holds it (read by its worker in the transaction that finished it: the
    row as committed, as job_reread would read it), with no database work and no thread;
    None when there is no row to build from, or the answer wanted something the row does
    not hold (a relation the request did not load): the caller reads the row in a thread.
    Slower, still the same answer."""
    fresh = job_from_answer(job, row, threshold=threshold) if row is not None else None
    if fresh is None:
        return None
    try:
        return build(fresh)
    except SynchronousOnlyOperation:
        logger.warning("job %s: its carried answer needed the database", job.pk)
        return None


def _answer_carried(
    request, job: Job, final: bool | bytes, threshold: float, answer_options: dict
) -> HttpResponse | None:
    """This API's answer from what the job's finished signal carried (``answer_from_carried``)."""
    return answer_from_carried(
        job,
        events.carried_answer(final),
        threshold,
        lambda fresh: job_response_from(request, fresh, threshold, **answer_options),
    )


# The OpenAPI generator documents the DRF view behind the coroutine.
inference_create.cls = InferenceCreateApi
inference_create.initkwargs = {}


class JobListSerializer(serializers.Serializer):
    """A page of your jobs, newest first."""  # the schema's JobList description

    object = serializers.CharField(help_text="list")
    data = JobSerializer(many=True)
    has_more = serializers.BooleanField()
    next = serializers.URLField(
        allow_null=True, help_text="The next page (starting_after its last job); null at the end."
    )


class JobListApi(limits.RateLimitHeadersMixin, APIView):
    """The account's jobs, newest first, a page at a time: what Replicate's and OpenAI's
    list endpoints give (``starting_after`` a job id, ``has_more``, ``limit`` 1-100)."""

    authentication_classes = [ApiKeyAuthentication]
    QUERY = {"limit", "starting_after", "status", "model", "box_format"}

    @extend_schema(
        operation_id="jobs_list",
        summary="Your detection jobs, newest first",
        description=(
            "Lists the jobs of your account, newest first, a page at a time: `limit` jobs "
            "(1 to 100), `has_more` and `next` (the following page's URL, or pass the last "
            "job's id as `starting_after`). Filter by `status` or `model`. A key restricted "
            "to some models lists their jobs only."
        ),
        tags=["inference"],
        parameters=[
            OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": JOBS_PAGE_MAX},
                             description=f"1 to {JOBS_PAGE_MAX} (default {JOBS_PAGE_DEFAULT})."),
            OpenApiParameter("starting_after", str, description="A job id: the page after it "
                             "(the previous page's last job)."),
            OpenApiParameter("status", str, enum=list(JobStatus.values)),
            OpenApiParameter("model", str, description="Only this model's jobs, e.g. "
                             "facebook/detr-resnet-50."),
            openapi.PARAMETERS["box_format"],
            *openapi.list_headers(),
        ],
        responses={200: JobListSerializer, **openapi.errors_for(400, 401, 405, 406, 429)},
    )  # fmt: skip
    def get(self, request):
        limits.api_read_check(request)
        query = request.query_params
        refuse_unknown_query(request, self.QUERY)
        limit = _bounded_int(query.get("limit"), "limit", JOBS_PAGE_DEFAULT, 1, JOBS_PAGE_MAX)
        status = query.get("status") or None
        if status is not None and status not in JobStatus.values:
            raise errors.ApplicationError(
                BAD_CHOICE.format(name="status", choices=", ".join(JobStatus.values)),
                code="invalid_value", param="status",
            )  # fmt: skip
        box_format = query_box_format(request)
        after = None
        if query.get("starting_after"):
            after = _owned_job_or_none(query["starting_after"], request.user)
            if after is None:
                raise errors.ApplicationError(
                    NO_SUCH_CURSOR.format(value=query["starting_after"][:64]),
                    code="invalid_value", param="starting_after",
                )  # fmt: skip
        model_id = query.get("model") or None
        if model_id is not None and not model_filter_known(model_id=model_id, user=request.user):
            # A renamed model's former id lists the jobs of the card it names now, where
            # that id may filter them (published, or a card they have jobs of): a draft's
            # new id is not told, by the filter or by this error, which names the id asked.
            renamed = card_renamed(model_id=model_id, published=False)
            if renamed is None or not model_filter_known(model_id=renamed, user=request.user):
                # An empty page would read as "no jobs of that model", not as a misspelt id.
                raise errors.ApplicationError(
                    NO_SUCH_MODEL_FILTER.format(value=model_id[:128]),
                    code="invalid_value", param="model",
                )  # fmt: skip
            model_id = renamed
        # A key restricted to some models lists their jobs only, as it may call only them.
        allowed = list(request.auth.allowed_models.values_list("pk", flat=True))
        jobs, more = jobs_of_owner(
            user=request.user, limit=limit, starting_after=after, status=status,
            model_id=model_id, card_ids=allowed or None,
        )  # fmt: skip
        following = None
        if more:
            params = {k: v for k, v in query.items() if k != "starting_after"}
            params["starting_after"] = str(jobs[-1].pk)
            following = request.build_absolute_uri(f"{request.path}?{urlencode(params)}")
        # The account's jobs and money (each job's charge, the wallet's balance): no-store,
        # not "private, no-cache", since a kept copy would only be refetched (no validators
        # to revalidate it with) and a browser would still write the balance to its disk.
        return Response({
            "object": "list",
            "data": [job_resource(job, request=request, box_format=box_format) for job in jobs],
            "has_more": more,
            "next": following,
        }, headers={"Cache-Control": "private, no-store"})  # fmt: skip


def _bounded_int(raw, name: str, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw) if raw.isascii() else low - 1  # not other scripts' digits
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise errors.ApplicationError(
            BAD_BOUNDED_INT.format(name=name, low=low, high=high), code="invalid_value", param=name
        )
    return value


def _owned_job_or_none(raw: str, user) -> Job | None:
    try:
        job_id = uuid.UUID(raw)
    except ValueError:
        return None
    return job_of_owner(job_id=job_id, user=user)


class JobDetailApi(limits.RateLimitHeadersMixin, APIView):
    authentication_classes = [ApiKeyAuthentication]

    def _job(self, request, job_id, *, to_show: bool = False) -> Job:
        """The caller's job, or 404. ``to_show``: read only to be shown as it is (GET), with
        its money in the same statement on PostgreSQL (``selectors.job_of_owner``)."""
        limits.api_read_check(request)
        job = None
        if isinstance(job_id, uuid.UUID):  # else not a job id (api_urls.JobIdConverter)
            job = job_of_owner(job_id=job_id, user=request.user, with_money=to_show)
        if job is None:
            raise errors.ApplicationError(
                JOB_NOT_FOUND.format(job_id=errors.shown(str(job_id))), code="job_not_found",
                status=404,
                type=errors.NOT_FOUND_ERROR,
            )  # fmt: skip
        # A key restricted to some models reads and cancels their jobs only: 403, as its
        # call or an Idempotency-Key replay of another model's job is.
        key_allow_list_check(request.auth, job.card)
        return job

    @extend_schema(
        operation_id="jobs_retrieve",
        summary="A detection job",
        description=(
            "Reads one of your jobs: its status (queued, running, succeeded, failed or "
            "cancelled), its detections once it has succeeded, its error if it failed, and "
            "its cost and your wallet's balance. Poll it after a `202` answer. `threshold` "
            "re-filters the stored boxes without running the model again."
        ),
        tags=["inference"],
        parameters=[
            openapi.JOB_ID,
            OpenApiParameter(
                "threshold",
                openapi.THRESHOLD_SCHEMA,
                description="Re-filter the boxes: the minimum score, 0..1.",
            ),
            openapi.PARAMETERS["box_format"],
            *openapi.job_headers(),
        ],
        responses={
            200: openapi.job_response(JOB_RESOURCE_DOC),
            **openapi.errors_for(400, 401, 403, 404, 405, 406, 429),
        },
    )
    def get(self, request, job_id):
        refuse_unknown_query(request, {"threshold", "box_format"})  # a typo is not ignored
        threshold = request.query_params.get("threshold")
        box_format = query_box_format(request)
        job = self._job(request, job_id, to_show=True)
        resource = job_resource(
            job, request=request, threshold=parse_threshold(threshold) if threshold else None,
            box_format=box_format,
        )  # fmt: skip
        # The account's job and wallet balance, polled while it runs: stored by no cache, as
        # GET /v1/jobs (and the page's own poll, playground/views.py job_detail).
        headers = {**_cost_headers(resource), "Cache-Control": "private, no-store"}
        return Response(resource, headers=headers)

    @extend_schema(
        operation_id="jobs_cancel",
        summary="Cancel a queued job",
        description=(
            "Cancels one of your jobs that no worker has started yet: the money reserved "
            "for it goes back to your wallet and nothing is charged. A job that is running "
            "or has finished answers `409 job_not_cancellable`."
        ),
        tags=["inference"],
        request=None,
        parameters=[openapi.JOB_ID, *openapi.job_headers()],
        responses={
            200: openapi.job_response(JOB_RESOURCE_DOC),
            **openapi.errors_for(400, 401, 403, 404, 405, 406, 409, 429),
        },
    )
    def delete(self, request, job_id):
        refuse_unknown_query(request, set())  # as a read does: a typo is not ignored
        job = self._job(request, job_id)
        if not services.job_cancel(job=job):
            job.refresh_from_db()
            raise errors.ApplicationError(
                NOT_CANCELLABLE.format(job_id=job_id, status=job.status),
                code="job_not_cancellable",
                status=409,
            )
        job.refresh_from_db()
        resource = job_resource(job, request=request)
        return Response(resource, headers=_cost_headers(resource))


class JobImageApi(JobDetailApi):
    """DELETE /v1/jobs/<id>/image: the caller's finished job's upload, deleted now."""

    http_method_names = ["delete", "options"]

    @extend_schema(
        operation_id="jobs_image_delete",
        summary="Delete a finished job's image",
        description=(
            "Deletes the stored upload of one of your finished jobs now rather than at the "
            "end of its retention; the job, its detections and its charge stay, and "
            "`image.deleted` says when. Deleting it again answers the same. A queued or "
            "running job answers 409 (its worker reads the image)."
        ),
        tags=["inference"],
        request=None,
        parameters=[openapi.JOB_ID, *openapi.job_headers()],
        responses={
            200: openapi.job_response(JOB_RESOURCE_DOC),
            **openapi.errors_for(400, 401, 403, 404, 405, 406, 409, 429, 503),
        },
    )
    def delete(self, request, job_id):
        refuse_unknown_query(request, set())
        job = self._job(request, job_id)
        try:
            deleted = services.job_image_delete(job=job)
        except StorageUnavailable as exc:
            raise pipeline.upload_refused(exc) from exc
        if not deleted:
            raise errors.ApplicationError(
                IMAGE_NOT_DELETABLE.format(job_id=job_id, status=job.status),
                code="job_not_finished",
                status=409,
            )
        resource = job_resource(job, request=request)
        return Response(resource, headers=_cost_headers(resource))
