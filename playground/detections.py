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
from drf_spectacular.utils import extend_schema

from playground import api, openapi


class DetectionCreateApi(api.InferenceCreateApi):
    vitrine_flavour = True

    @extend_schema(
        operation_id="detections_create",
        summary="Detect objects in an image (the job resource in every answer)",
        tags=["inference"],
        request=openapi.REQUEST_BODIES,
        parameters=openapi.parameters(
            "route", "threshold", "box_format", "dry_run", "webhook", "Prefer", "Idempotency-Key"
        )
        + openapi.inference_headers(),
        responses={
            200: openapi.success_response(hf_list=False),
            202: openapi.job_response("The job, still queued or running."),
            **openapi.INFERENCE_ERRORS,
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
