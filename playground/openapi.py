"""The inference API's OpenAPI pieces: request bodies, response bodies, headers, parameters.

One place for what ``/v1/inference``, ``/v1/detections`` and ``/v1/jobs`` declare, so a
client generator sees every body the parsers accept (JSON with base64 ``inputs``, raw
image bytes, multipart ``image``), every status the code can answer (all in the one error
shape, catalog/errors.py) and the headers that carry cost, limits and retry hints.
The schemathesis test (tests/playground/test_openapi_schemathesis.py) holds the code to it.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema_field,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers

from catalog import errors
from catalog.api import NOT_JSON
from catalog.lifecycle import LIFECYCLE_HEADERS
from playground.serializers import DEFAULT_THRESHOLD, JobSerializer, PriceVersionSerializer


@extend_schema_field(OpenApiTypes.BYTE)
class Base64Field(serializers.CharField):
    """A base64 string (a ``data:`` URL prefix is accepted too): ``format: byte``."""


# A 32x32 PNG, base64: the JSON body's example, which Swagger UI's "Try it out" sends as it is.
EXAMPLE_IMAGE_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAIAAAD8GO2jAAAAK0lEQVR42u3NQQEAQAQAMC6NiCKKdSX4bQWW0xWXXhwT"
    "CAQCgUAgEAgEWz6b/gGoTIbtSQAAAABJRU5ErkJggg=="
)


@extend_schema_serializer(
    component_name="InferenceRequest",
    # Without it "Try it out" offered {"inputs": "string", ..., "webhook": "string"}: not an
    # image, and a webhook the API refuses (400).
    examples=[
        OpenApiExample(
            "A 32x32 image",
            value={"inputs": EXAMPLE_IMAGE_BASE64, "parameters": {"threshold": DEFAULT_THRESHOLD}},
            request_only=True,
        )
    ],
)
class InferenceJsonSerializer(serializers.Serializer):
    inputs = Base64Field(help_text="The image, base64 (or send the raw bytes instead).")
    parameters = inline_serializer(
        "InferenceParameters",
        fields={
            "threshold": serializers.FloatField(
                min_value=0, max_value=1, required=False, default=DEFAULT_THRESHOLD
            )
        },
        required=False,
    )
    webhook = serializers.URLField(
        required=False,
        help_text="http(s) URL the finished job is POSTed to, signed (or ?webhook=).",
    )


@extend_schema_field(OpenApiTypes.BINARY)
class BinaryFileField(serializers.FileField):
    """An uploaded file: ``format: binary`` (drf-spectacular says ``uri`` for a FileField
    outside a request-only component)."""


@extend_schema_field({"type": "string", "format": "uri", "example": ""})
class FormUrlField(serializers.URLField):
    """An optional URL form field whose example is empty. Swagger UI's "Try it out" fills
    each multipart field with its schema's example, or with a made-up one ("string" for
    any string) when there is none, and sends the form as filled: a call as it was offered
    sent webhook=string and was refused (400 invalid_webhook). Empty, the field is sent
    empty, and an empty form field is no webhook (playground/options.py)."""


@extend_schema_serializer(component_name="InferenceUpload")
class InferenceUploadSerializer(serializers.Serializer):
    image = BinaryFileField(help_text="The image file.")
    # A default, for "Try it out" to offer (it offered 1, which keeps almost no box).
    threshold = serializers.FloatField(
        min_value=0, max_value=1, required=False, default=DEFAULT_THRESHOLD,
        help_text="Minimum score, 0..1.",
    )  # fmt: skip
    webhook = FormUrlField(
        required=False,
        help_text="http(s) URL the finished job is POSTed to, signed (leave it empty for none).",
    )


REQUEST_BODIES = {
    "application/json": InferenceJsonSerializer,
    "multipart/form-data": InferenceUploadSerializer,
    "image/*": OpenApiTypes.BINARY,
    "application/octet-stream": OpenApiTypes.BINARY,
}


@extend_schema_serializer(component_name="HfBox")
class HfBoxSerializer(serializers.Serializer):
    xmin = serializers.IntegerField()
    ymin = serializers.IntegerField()
    xmax = serializers.IntegerField()
    ymax = serializers.IntegerField()


@extend_schema_serializer(component_name="HfDetection")
class HfDetectionSerializer(serializers.Serializer):
    label = serializers.CharField()
    score = serializers.FloatField()
    box = HfBoxSerializer()


@extend_schema_serializer(component_name="QuoteImage")
class QuoteImageSerializer(serializers.Serializer):
    format = serializers.CharField(help_text="JPEG, PNG, WEBP or GIF.")
    bytes = serializers.IntegerField()
    sha256 = serializers.CharField()
    width = serializers.IntegerField(help_text="After EXIF orientation.")
    height = serializers.IntegerField()
    original_width = serializers.IntegerField()
    original_height = serializers.IntegerField()


@extend_schema_serializer(component_name="QuoteResize")
class QuoteResizeSerializer(serializers.Serializer):
    width = serializers.IntegerField(allow_null=True)
    height = serializers.IntegerField(allow_null=True)
    rule = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="The processor's resize keys, e.g. shortest_edge and longest_edge.",
    )
    from_checkpoint = serializers.BooleanField(
        help_text="false: the checkpoint's config was not on the web machine; the resize "
        "rule its repository publishes was assumed (800/1333 for a checkpoint Vitrine does "
        "not know)."
    )


@extend_schema_serializer(component_name="SpendCap")
class SpendCapSerializer(serializers.Serializer):
    cap = serializers.CharField(help_text="The API key's monthly cap, USD.")
    spent = serializers.CharField(help_text="Spent with this key this month, USD.")
    within = serializers.BooleanField(help_text="false: a real call would answer 402.")


@extend_schema_serializer(component_name="Quote")
class QuoteSerializer(serializers.Serializer):
    """What a call with dry_run=true answers: the image's size, the size the model resizes
    it to, the price in force and the exact cost; nothing runs or is charged."""

    # playground/quote.py builds it (the docstring above is the schema's description).

    object = serializers.CharField(help_text="Always quote.")
    model = serializers.CharField()
    model_revision = serializers.CharField(allow_null=True)
    route = serializers.CharField()
    image = QuoteImageSerializer()
    resize = QuoteResizeSerializer(
        allow_null=True, help_text="The size the model's processor gives; null on a provider route."
    )
    threshold = serializers.FloatField()
    price_version = PriceVersionSerializer()
    cost = serializers.CharField(help_text="USD, exact decimal string.")
    would_be_cost = serializers.CharField()
    byok = serializers.BooleanField()
    balance = serializers.CharField()
    covered_by = serializers.ChoiceField(
        choices=[("byok", "byok"), ("wallet", "wallet")],
        allow_null=True,
        help_text="byok, wallet or null (a real call would answer 402)",
    )
    covered = serializers.BooleanField()
    spend_cap = SpendCapSerializer(
        allow_null=True, help_text="null: the API key has no monthly cap."
    )
    charged = serializers.CharField(help_text="Always 0.")


def _headers(names: dict[str, tuple[str, type]], statuses: list[int]) -> list[OpenApiParameter]:
    """Response headers (drf-spectacular declares them as parameters with ``response``)."""
    return [
        OpenApiParameter(
            name, type_, OpenApiParameter.HEADER, description=description, response=statuses
        )
        for name, (description, type_) in names.items()
    ]


RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": ("Calls allowed in the window (the tightest bucket).", int),
    "RateLimit-Remaining": ("Calls left in the window.", int),
    "RateLimit-Reset": ("Seconds until the window resets.", int),
}
COST_HEADERS = {
    "X-Vitrine-Job-Id": ("The job's id.", str),
    "X-Vitrine-Cost": ("USD charged for the job (exact decimal string).", str),
    "X-Vitrine-Byok": ("true when your own provider key paid.", str),
    "X-Vitrine-Balance": ("The wallet after the job, USD.", str),
    "X-Vitrine-Weights": ("untrained: random placeholder weights computed the boxes.", str),
    "Idempotent-Replayed": (
        "true when an earlier call with this Idempotency-Key made the job: its answer, "
        "nothing charged by this call (X-Vitrine-Cost is the job's).",
        str,
    ),
}
RETRY_AFTER = {"Retry-After": ("Seconds to wait before trying again.", int)}


def error(description: str) -> OpenApiResponse:
    return OpenApiResponse(errors.ErrorSerializer, description=description)


def errors_for(*statuses: int) -> dict[int, OpenApiResponse]:
    return {status: ERRORS[status] for status in statuses}


ERRORS = {
    400: error("Bad request: missing or invalid image, parameter or JSON."),
    401: error("No API key, or an invalid one."),
    402: error("The wallet cannot cover the job (or the key's spend cap is reached)."),
    403: error("The key may not call this."),
    404: error("No such model, route or job."),
    405: error("Method not allowed."),
    406: error(NOT_JSON),
    409: error("The model is not callable now, or the job is not cancellable."),
    410: error("The model is retired."),
    413: error("The body or image is too large."),
    415: error("The image format is not supported."),
    422: error("The idempotency key was used for another request, or the job failed."),
    429: error("Too many calls; Retry-After says when to try again."),
    500: error("The job failed on our side (nothing charged)."),
    502: error("The provider of a BYOK route failed to run the model (nothing charged)."),
    503: error(
        "A service, the model or the provider is unavailable, or no worker took the job in "
        "time (nothing charged); see Retry-After."
    ),
}
INFERENCE_ERRORS = errors_for(400, 401, 402, 403, 404, 405, 406, 409, 410, 413, 415, 422, 429)
INFERENCE_ERRORS.update(errors_for(500, 502, 503))

# How a receiver checks a delivery (playground/webhooks.py signs it): the dashboard's
# "Webhooks" section links here.
WEBHOOK_DESCRIPTION = (
    "http(s) URL the finished job is POSTed to: the job resource, as `GET /v1/jobs/{job_id}` "
    "shows it (less its `webhook` object), signed. The `Vitrine-Signature` header is "
    "`t=<unix seconds>,v1=<hex>`: `<hex>` is the HMAC-SHA256, keyed with your account's "
    "webhook secret (on your dashboard), of the bytes `<t>.<raw body>`; for 24 hours after a "
    "rotation it carries one `v1` per valid secret. To check a delivery, recompute the HMAC "
    "over the raw body as received (before any JSON parsing), compare it in constant time "
    "with each `v1` (accept when any matches), and refuse a `t` more than 300 s from your "
    "clock (a replay). Delivery is at least once: `Vitrine-Webhook-Id` (the job id) names "
    "a redelivery; `Vitrine-Event` is `job.finished`. Answer any 2xx quickly; anything else "
    "is retried with backoff."
)
THRESHOLD_SCHEMA = {"type": "number", "format": "double", "minimum": 0, "maximum": 1}
JOB_ID = OpenApiParameter(
    "job_id",
    OpenApiTypes.UUID,
    OpenApiParameter.PATH,
    description="The job's id, as its answers give it (any case).",
)

PARAMETERS = {
    "route": OpenApiParameter("route", str, description="Price route slug (default: ours)."),
    "threshold": OpenApiParameter(
        "threshold",
        THRESHOLD_SCHEMA,
        description="Minimum score, 0..1 (0.5), for image and multipart bodies; "
        "a JSON body sets parameters.threshold instead.",
    ),
    "dry_run": OpenApiParameter(
        "dry_run", bool, description="true: answer a quote; nothing runs or is charged."
    ),
    "webhook": OpenApiParameter("webhook", str, description=WEBHOOK_DESCRIPTION),
    "box_format": OpenApiParameter(
        "box_format",
        str,
        enum=["int", "float"],
        description="int: integer pixels (default); float: the model's coordinates.",
    ),
    "Prefer": OpenApiParameter(
        "Prefer", str, OpenApiParameter.HEADER, description="respond-async: answer 202 at once."
    ),
    "Idempotency-Key": OpenApiParameter(
        "Idempotency-Key",
        str,
        OpenApiParameter.HEADER,
        description="Retry safely: the same key and request within 24 h answer with the "
        "first call's job, charged once (422 for another request).",
    ),
}


def parameters(*names: str) -> list[OpenApiParameter]:
    return [PARAMETERS[name] for name in names]


def job_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(JobSerializer, description=description)


def success_response(*, hf_list: bool) -> OpenApiResponse:
    """200: the finished job (the bare Hugging Face list on /v1/inference, the job resource
    on /v1/detections), or the quote with dry_run=true."""
    body = HfDetectionSerializer(many=True) if hf_list else JobSerializer
    return OpenApiResponse(
        PolymorphicProxySerializer(
            component_name="InferenceResult" if hf_list else "DetectionResult",
            serializers=[body, QuoteSerializer],
            resource_type_field_name=None,
            many=False,
        ),
        description="The finished job's detections (a quote with dry_run=true; the X-Vitrine "
        "cost headers are not sent on a quote).",
    )


# Every status an authenticated call can answer: each is counted against the key's limits,
# and answers RateLimit-* (and, for a deprecated or retired model, its lifecycle headers).
COUNTED = [200, 202, 400, 402, 403, 404, 409, 410, 413, 415, 422, 429, 500, 502, 503]


def inference_headers() -> list[OpenApiParameter]:
    """The headers an inference call answers with, by status."""
    return [
        *_headers(COST_HEADERS, [200, 202]),
        *_headers({"Location": ("The job's URL, to poll.", str)}, [202]),
        *_headers(
            {"Preference-Applied": ("respond-async when Prefer: respond-async was honoured.", str)},
            [202],
        ),
        *_headers(
            {name: (text, str) for name, text in LIFECYCLE_HEADERS.items()},
            [status for status in COUNTED if status != 404],
        ),
        *_headers(RATE_LIMIT_HEADERS, COUNTED),
        *_headers(RETRY_AFTER, [429, 503]),
    ]


def list_headers() -> list[OpenApiParameter]:
    """The headers ``/v1/jobs`` answers with."""
    return [*_headers(RATE_LIMIT_HEADERS, [200, 400, 429]), *_headers(RETRY_AFTER, [429])]


def job_headers() -> list[OpenApiParameter]:
    """The headers ``/v1/jobs/<id>`` answers with."""
    return [
        *_headers(COST_HEADERS, [200]),
        *_headers(RATE_LIMIT_HEADERS, [200, 400, 403, 404, 409, 429, 503]),
        *_headers(RETRY_AFTER, [429]),
    ]


# The request bodies whose every field the schema lists (playground/options.py refuses any
# other with 400 unknown_parameter): closed in the schema too, so a generated client or a
# schema checker knows an extra field is refused (schemathesis's ST202 in session 46's
# probe: the schema allowed what the server refused).
CLOSED_REQUEST_COMPONENTS = ("InferenceRequest", "InferenceParameters", "InferenceUpload")


def close_request_bodies(result, generator, request, public):
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"])."""
    schemas = result.get("components", {}).get("schemas", {})
    for name in CLOSED_REQUEST_COMPONENTS:
        if name in schemas:
            schemas[name]["additionalProperties"] = False
    return result
