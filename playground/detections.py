"""``POST /v1/detections/<org>/<name>``: Vitrine's own flavour of the inference call.

The same pipeline as ``/v1/inference`` (playground/api.py: authenticate, validate, quote
and reserve, create the job, wait or not, settle, answer); only the success body differs.
``/v1/inference`` answers Hugging Face's bare list on 200 (so ``InferenceClient`` and old
clients keep working, cost in ``X-Vitrine-*`` headers); this route answers the job
resource on 200 as on 202 (one serializer, playground/serializers.py): job id, model and
revision, price version, cost, balance, the detections, and, with ``box_format=float``,
the model's float boxes.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema

from catalog import errors
from playground import api
from playground.serializers import JobSerializer


class DetectionCreateApi(api.InferenceCreateApi):
    vitrine_flavour = True

    @extend_schema(
        operation_id="detections_create",
        summary="Detect objects in an image (the job resource in every answer)",
        tags=["inference"],
        request={"application/json": api.InferenceCreateApi.InputSerializer, "image/*": bytes},
        parameters=[
            OpenApiParameter("route", str, description="Price route slug (default: ours)."),
            OpenApiParameter("threshold", float, description="Minimum score, 0..1 (0.5)."),
            OpenApiParameter(
                "box_format",
                str,
                enum=["int", "float"],
                description="int: integer pixels (default); float: the model's coordinates.",
            ),
            OpenApiParameter(
                "dry_run", bool, description="true: answer a quote; nothing runs or is charged."
            ),
            OpenApiParameter(
                "webhook", str, description="http(s) URL the finished job is POSTed to, signed."
            ),
            OpenApiParameter("Prefer", str, OpenApiParameter.HEADER, description="respond-async"),
        ],
        responses={
            200: OpenApiResponse(JobSerializer, description="The finished job (or a quote)."),
            202: OpenApiResponse(JobSerializer, description="The job, still queued or running."),
            400: errors.ErrorSerializer,
            401: errors.ErrorSerializer,
            402: errors.ErrorSerializer,
            403: errors.ErrorSerializer,
            404: errors.ErrorSerializer,
            409: errors.ErrorSerializer,
            410: errors.ErrorSerializer,
            413: errors.ErrorSerializer,
            415: errors.ErrorSerializer,
            429: errors.ErrorSerializer,
            503: errors.ErrorSerializer,
        },
    )
    def post(self, request, model_id: str):
        return super().post(request, model_id)


_detection_create_sync = DetectionCreateApi.as_view()


@csrf_exempt
async def detection_create(request: HttpRequest, model_id: str) -> HttpResponse:
    return await api._create_and_wait(request, model_id, _detection_create_sync)


detection_create.cls = DetectionCreateApi
detection_create.initkwargs = {}
