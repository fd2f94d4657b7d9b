"""The inference HTTP API: an image in, boxes out, paid from the wallet.

``POST /v1/inference/<org>/<name>`` takes raw image bytes, a multipart ``image`` field, or
Hugging Face's JSON body ``{"inputs": <base64>, "parameters": {"threshold": 0.5}}``. The
job's cost is reserved before anything is queued (402 when the wallet cannot cover it);
the call then waits for the result (up to ``VITRINE_SYNC_WAIT`` seconds) and answers the
Hugging Face shape, or answers 202 with the job resource at once with
``Prefer: respond-async`` or when the wait runs out. ``GET /v1/jobs/<id>`` polls it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.parsers import BaseParser, FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.auth import ApiKeyAuthentication
from billing.models import Charge
from billing.services.charges import charge_reserve, user_has_byok
from billing.services.ledger import wallet_for
from catalog import errors
from catalog.models import ModelCard, PriceRoute
from playground import services
from playground.models import Job, JobStatus
from playground.runtime import ImageError
from playground.storage import STORAGE_DOWN, StorageUnavailable, upload_discard

DEFAULT_THRESHOLD = 0.5
POLL_INTERVAL = 0.1

MISSING_IMAGE = (
    "Send an image: raw bytes, a multipart 'image' field, or JSON {\"inputs\": <base64>}."
)
BAD_BASE64 = "'inputs' is not valid base64 image data."
logger = logging.getLogger(__name__)
BAD_THRESHOLD = "'threshold' must be a number between 0 and 1."
TOO_LARGE = "The upload is {size} bytes; the limit is {limit} bytes."
NOT_AVAILABLE = "{model} is {status}; it cannot be called yet."
RETIRED = "{model} was retired on {date}; use {replacement}."
NO_ROUTE = "{model} has no callable route named '{route}'."
PROVIDER_ROUTE = (
    "The {route} route runs on {provider} with your own key: store it on your dashboard "
    "(BYOK), or use Vitrine's own route '{own}'."
)
JOB_NOT_FOUND = "No job {job_id} for this API key's account."
NOT_CANCELLABLE = "Job {job_id} is {status}; only a queued job can be cancelled."

# The HTTP status a failed job answers with, by its error code: retryable failures are 503.
FAILURE_STATUS = {
    "weights_not_installed": 503,
    "attempts_exhausted": 503,
    "timeout": 503,
    "provider_unreachable": 503,
    "provider_error": 502,
    "provider_auth_failed": 502,
}
IMAGE_ERROR_STATUS = {"image_too_large": 413, "unsupported_format": 415}


JOB_RESOURCE_DOC = (
    "The job: id, object 'detection_job', model, route, status (queued, running, succeeded, "
    "failed, cancelled), created/started/finished, attempts, image {sha256, width, height, "
    "original_width, original_height}, threshold, detections (null until succeeded), floor, "
    "timings, error {code, message}, cost, would_be_cost, byok, charge_status, balance, url."
)


class ImageBytesParser(BaseParser):
    """Any other content type: the body is the image itself."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream.read() if stream is not None else b""


def _threshold(raw) -> float:
    if raw is None or raw == "":
        return DEFAULT_THRESHOLD
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise errors.ApplicationError(BAD_THRESHOLD, code="invalid_threshold", param="threshold")
    return value


def read_image_input(request) -> tuple[bytes, float]:
    data = request.data
    if isinstance(data, bytes):
        image, threshold = data, _threshold(request.query_params.get("threshold"))
    elif "image" in request.FILES:
        image = request.FILES["image"].read()
        threshold = _threshold(data.get("threshold") or request.query_params.get("threshold"))
    else:
        inputs = data.get("inputs") if hasattr(data, "get") else None
        parameters = data.get("parameters") if hasattr(data, "get") else None
        parameters = parameters if isinstance(parameters, dict) else {}
        threshold = _threshold(parameters.get("threshold"))
        if not isinstance(inputs, str) or not inputs:
            raise errors.ApplicationError(MISSING_IMAGE, code="missing_image", param="inputs")
        if inputs.startswith("data:") and "," in inputs:
            inputs = inputs.split(",", 1)[1]  # a data: URL, as browsers make them
        try:
            image = base64.b64decode(inputs, validate=True)
        except (binascii.Error, ValueError):
            raise errors.ApplicationError(
                BAD_BASE64, code="invalid_base64", param="inputs"
            ) from None
    if not image:
        raise errors.ApplicationError(MISSING_IMAGE, code="missing_image")
    limit = settings.VITRINE_MAX_UPLOAD_BYTES
    if len(image) > limit:
        raise errors.ApplicationError(
            TOO_LARGE.format(size=len(image), limit=limit), code="image_too_large", status=413
        )
    return image, threshold


def _callable_card(model_id: str) -> ModelCard:
    card = (
        ModelCard.objects.published().by_model_id(model_id).select_related("organisation").first()
    )
    if card is None:
        raise errors.model_not_found(model_id)
    if card.status == ModelCard.Status.RETIRED:
        replacement = card.replacement.model_id if card.replacement else "another model"
        raise errors.ApplicationError(
            RETIRED.format(model=model_id, date=card.sunset_date, replacement=replacement),
            code="model_retired",
            status=410,
        )
    if card.status == ModelCard.Status.COMING_SOON:
        raise errors.ApplicationError(
            NOT_AVAILABLE.format(model=model_id, status=card.get_status_display().lower()),
            code="model_not_available",
            status=409,
        )
    return card


def _route(card: ModelCard, slug: str | None, *, user) -> PriceRoute:
    routes = list(card.routes.filter(is_active=True))
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


def job_resource(job: Job, *, request, threshold: float | None = None) -> dict:
    charge = Charge.objects.filter(job_id=job.pk).first()
    threshold = (
        job.parameters.get("threshold", DEFAULT_THRESHOLD) if threshold is None else threshold
    )
    detections = None
    if job.result is not None:
        detections = [d for d in job.result if d["score"] >= threshold]
    return {
        "id": str(job.pk),
        "object": "detection_job",
        "model": job.card.model_id,
        "route": job.route.slug if job.route else None,
        "status": job.status,
        "created": int(job.created_at.timestamp()),
        "started": int(job.started_at.timestamp()) if job.started_at else None,
        "finished": int(job.finished_at.timestamp()) if job.finished_at else None,
        "attempts": job.attempts,
        "image": {
            "sha256": job.image_sha256,
            "width": job.width,
            "height": job.height,
            "original_width": job.original_width,
            "original_height": job.original_height,
        },
        "threshold": threshold,
        "detections": detections,
        "floor": settings.VITRINE_DETECTION_FLOOR,
        "timings": job.timings,
        "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
        # What the wallet pays: held while running, charged on success, nothing once voided.
        "cost": _money(charge.amount) if charge and charge.status != Charge.Status.VOIDED else "0",
        "would_be_cost": _money(charge.would_be_amount) if charge else "0",
        "byok": charge.byok if charge else False,
        "charge_status": charge.status if charge else None,
        "balance": _money(wallet_for(job.owner).balance) if job.owner_id else None,
        "url": request.build_absolute_uri(reverse("playground_api:job-detail", args=[job.pk])),
    }


def _cost_headers(resource: dict) -> dict[str, str]:
    headers = {"X-Vitrine-Job-Id": resource["id"], "X-Vitrine-Cost": resource["cost"]}
    headers["X-Vitrine-Byok"] = "true" if resource["byok"] else "false"
    if resource["balance"] is not None:
        headers["X-Vitrine-Balance"] = resource["balance"]
    return headers


class InferenceCreateApi(APIView):
    authentication_classes = [ApiKeyAuthentication]
    parser_classes = [JSONParser, MultiPartParser, FormParser, ImageBytesParser]

    class InputSerializer(serializers.Serializer):
        inputs = serializers.CharField(help_text="Base64 image (or send raw bytes instead).")
        parameters = serializers.DictField(required=False, help_text='{"threshold": 0.5}')

    @extend_schema(
        operation_id="inference_create",
        summary="Detect objects in an image",
        tags=["inference"],
        request={"application/json": InputSerializer, "image/*": bytes},
        parameters=[
            OpenApiParameter("route", str, description="Price route slug (default: ours)."),
            OpenApiParameter("Prefer", str, OpenApiParameter.HEADER, description="respond-async"),
        ],
        responses={
            200: OpenApiResponse(description="[{label, score, box: {xmin, ymin, xmax, ymax}}]"),
            202: OpenApiResponse(description=JOB_RESOURCE_DOC),
            400: errors.ErrorSerializer,
            401: errors.ErrorSerializer,
            402: errors.ErrorSerializer,
            404: errors.ErrorSerializer,
            409: errors.ErrorSerializer,
            413: errors.ErrorSerializer,
            415: errors.ErrorSerializer,
            503: errors.ErrorSerializer,
        },
    )
    def post(self, request, model_id: str):
        api_key = request.auth
        card = _callable_card(model_id)
        route = _route(card, request.query_params.get("route"), user=request.user)
        image, threshold = read_image_input(request)
        job = None
        try:
            with transaction.atomic():
                job = services.job_create(
                    card=card,
                    route=route,
                    image_bytes=image,
                    parameters={"threshold": threshold},
                    owner=request.user,
                )
                # Reserved before the commit that enqueues the job: no money, no work.
                charge = charge_reserve(
                    job_id=job.pk, user=request.user, card=card, route=route, api_key=api_key
                )
                Job.objects.filter(pk=job.pk).update(cost_ref=str(charge.pk))
        except ImageError as exc:
            raise errors.ApplicationError(
                str(exc), code=exc.code, status=IMAGE_ERROR_STATUS.get(exc.code, 400)
            ) from None
        except StorageUnavailable:
            logger.exception("the upload storage failed")
            raise errors.ApplicationError(
                STORAGE_DOWN, code="storage_unavailable", status=503
            ) from None
        except errors.ApplicationError:
            if job is not None:  # the row rolled back: the stored upload goes too
                upload_discard(job.image_name)
            raise
        return self._respond(request, job, threshold)

    def _respond(self, request, job: Job, threshold: float) -> Response:
        wait = (
            0
            if "respond-async" in request.headers.get("Prefer", "")
            else settings.VITRINE_SYNC_WAIT
        )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            status = Job.objects.filter(pk=job.pk).values_list("status", flat=True).first()
            if status in Job.FINAL:
                break
            time.sleep(POLL_INTERVAL)
        job = Job.objects.select_related("card__organisation", "route", "owner").get(pk=job.pk)
        resource = job_resource(job, request=request, threshold=threshold)
        headers = _cost_headers(resource)
        if job.status == JobStatus.SUCCEEDED:
            return Response(resource["detections"], headers=headers)
        if job.status in Job.FINAL:
            status = FAILURE_STATUS.get(job.error_code, 500)
            raise errors.ApplicationError(
                job.error_message or "The job failed.",
                code=job.error_code or "job_failed",
                status=status,
                type="service_unavailable" if status == 503 else errors.SERVER_ERROR,
                extra={"job": resource["id"], "cost": resource["cost"]},
                headers=headers,
            )
        headers["Location"] = resource["url"]
        return Response(resource, status=202, headers=headers)


class JobDetailApi(APIView):
    authentication_classes = [ApiKeyAuthentication]

    def _job(self, request, job_id) -> Job:
        job = (
            Job.objects.select_related("card__organisation", "route", "owner")
            .filter(pk=job_id, owner=request.user)
            .first()
        )
        if job is None:
            raise errors.ApplicationError(
                JOB_NOT_FOUND.format(job_id=job_id), code="job_not_found", status=404,
                type=errors.NOT_FOUND_ERROR,
            )  # fmt: skip
        return job

    @extend_schema(
        operation_id="jobs_retrieve",
        summary="A detection job",
        tags=["inference"],
        parameters=[OpenApiParameter("threshold", float, description="Re-filter the boxes.")],
        responses={
            200: OpenApiResponse(description=JOB_RESOURCE_DOC),
            401: errors.ErrorSerializer,
            404: errors.ErrorSerializer,
        },
    )
    def get(self, request, job_id):
        threshold = request.query_params.get("threshold")
        job = self._job(request, job_id)
        resource = job_resource(
            job, request=request, threshold=_threshold(threshold) if threshold else None
        )
        return Response(resource, headers=_cost_headers(resource))

    @extend_schema(
        operation_id="jobs_cancel",
        summary="Cancel a queued job",
        tags=["inference"],
        request=None,
        responses={
            200: OpenApiResponse(description=JOB_RESOURCE_DOC),
            404: errors.ErrorSerializer,
            409: errors.ErrorSerializer,
        },
    )
    def delete(self, request, job_id):
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
