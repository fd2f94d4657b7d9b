"""Cloudflare Workers AI, drop-in.

``POST /client/v4/accounts/<account_id>/ai/run/@cf/<org>/<name>``.

Works unchanged with the official ``cloudflare`` SDK pointed at Vitrine::

    Cloudflare(api_token="vt_...", base_url="https://vitrine.example/client/v4").ai.run(
        "@cf/facebook/detr-resnet-50", account_id="any", image=list(photo_bytes))

The SDK percent-encodes the model's slashes (``@cf%2Ffacebook%2Fdetr-resnet-50``); the
server decodes the path before routing, so both spellings reach this view.

- Auth: ``Authorization: Bearer <Vitrine API key>``. The account id in the path is accepted
  and ignored: a Vitrine key already names its account, so any value works (keep your
  ``CLOUDFLARE_ACCOUNT_ID``).
- Body: the image as raw bytes (up to ``VITRINE_MAX_UPLOAD_BYTES``), or JSON
  ``{"image": [0-255, ...]}`` as seed 001's schema says (bounded by the JSON body limit:
  about 7 MB of image; send bigger images raw); a multipart form (``curl -F``) is a 415
  saying so (multipart is Vitrine's, on ``/v1/``). Optional ``?threshold=`` (default 0.5).
  Any other query parameter or body field is a 400 ``unknown_parameter`` naming it.
- Answer: ``{"result": [{"score", "label", "box": {xmin, ymin, xmax, ymax}}], "success":
  true, "errors": [], "messages": []}``; every error in the same envelope with
  ``success: false`` and ``errors: [{"code", "message"}]`` (Cloudflare's numeric codes where
  one fits, else the HTTP status; Vitrine's code in ``X-Vitrine-Error-Code``).
- A deprecated model's answers carry ``Deprecation``, ``Sunset`` and ``Link`` (this route
  for the replacement, ``@cf/<org>/<name>``); a retired one is 410 in the envelope, its
  message naming the replacement.
- Never 202: waits up to ``VITRINE_HF_WAIT`` seconds like the Hugging Face flavour, then
  503 (the queued job cancelled, nothing charged) + ``Retry-After``.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from catalog import errors
from catalog.lifecycle import lifecycle_apply
from playground import api, idempotency, limits, pipeline
from playground.failures import ACCOUNT_CLOSED_CODE, SERVICE_UNAVAILABLE, job_failure
from playground.flavours import CLOUDFLARE, error_response, given_up, waiting
from playground.flavours.common import (
    FlavourApi,
    answer_waited,
    refuse_unknown_options,
    run_view,
)
from playground.flavours.hf import detections
from playground.models import Job, JobStatus

MODEL_PREFIX = "@cf/"
NO_SUCH_MODEL = "No such model {name}: Vitrine's models are named @cf/<org>/<name>."
BAD_IMAGE_ARRAY = (
    "'image' must be an array of integers from 0 to 255 (the image's bytes), or send the "
    "image as the raw request body."
)
NOT_READY = "The model did not answer in time; nothing was charged. Retry in {seconds} s."
STILL_RUNNING = (
    "The job is still running; retry with the same Idempotency-Key to get its result "
    "without paying again."
)


def _image_and_threshold(request) -> tuple[bytes, float]:
    data = request.data
    if isinstance(data, bytes):
        return api.read_image_input(request, flavour=CLOUDFLARE)
    if isinstance(data, dict) and "image" not in data:  # no body, or JSON without an image
        raise errors.ApplicationError(
            api.MISSING_IMAGE_CLOUDFLARE, code="missing_image", param="image"
        )
    image = data.get("image") if isinstance(data, dict) else None
    if not isinstance(image, list) or not image:
        raise errors.ApplicationError(BAD_IMAGE_ARRAY, code="invalid_image_array", param="image")
    try:
        raw = bytes(image)  # C-speed check: every item an int in 0..255
    except (TypeError, ValueError):
        raise errors.ApplicationError(
            BAD_IMAGE_ARRAY, code="invalid_image_array", param="image"
        ) from None
    return raw, api.caller_threshold(request)


class CloudflareRunApi(FlavourApi):
    flavour = CLOUDFLARE

    @extend_schema(exclude=True)  # a foreign wire format: documented in the README
    def post(self, request, account_id: str, model_name: str):
        if not model_name.startswith(MODEL_PREFIX):
            raise errors.ApplicationError(
                NO_SUCH_MODEL.format(name=model_name),
                code="model_not_found",
                status=404,
                type=errors.NOT_FOUND_ERROR,
            )

        def successor_path(replacement) -> str:
            # The replacement on this same route and account: what the SDK would call.
            name = MODEL_PREFIX + replacement.model_id
            return reverse("cloudflare-run", kwargs={"account_id": account_id, "model_name": name})

        card = api._callable_card(
            model_name[len(MODEL_PREFIX) :].strip("/"), request, successor_path=successor_path
        )
        limits.api_call_check(request, card)
        route = api._route(card, request.query_params.get("route"), user=request.user)
        key = idempotency.key_from(request)
        refuse_unknown_options(request, query={"threshold", "route"}, fields={"image"})
        image, threshold = _image_and_threshold(request)
        submitted = pipeline.job_submit(
            request=request,
            card=card,
            route=route,
            image=image,
            threshold=threshold,
            flavour=CLOUDFLARE,
            idempotency_key=key,
            answer_waits=True,  # cloudflare_run answers once the job ended (api.awaited_row)
        )
        response = Response(status=202)  # never sent: cloudflare_run awaits the job
        response.vitrine_wait = (submitted, settings.VITRINE_HF_WAIT, threshold)
        return pipeline.replay_mark(response, submitted)


_cloudflare_sync = CloudflareRunApi.as_view()


def cloudflare_answer(
    request, submitted: pipeline.Submitted, threshold: float, outcome: str, job: Job | None
):
    """The answer about the job the call waited for: from ``job`` (the row as its finished
    signal carried it), or from the row read now when None."""
    job = job if job is not None else api.awaited_row(submitted.job)
    resource = api.job_resource(job, request=request, threshold=threshold)
    headers = api._cost_headers(resource)
    if job.status == JobStatus.SUCCEEDED:
        body = {
            "result": detections(job, threshold),
            "success": True,
            "errors": [],
            "messages": [],
        }
        return JsonResponse(body, headers=headers)
    closed = job.status == JobStatus.CANCELLED and job.error_code == ACCOUNT_CLOSED_CODE
    if (outcome == waiting.CANCELLED or job.status == JobStatus.CANCELLED) and not closed:
        # Cancelled at a wait's bound (this call's or a duplicate's): retryable.
        seconds = waiting.retry_after(waiting.estimate_seconds(card=job.card))
        error = errors.ApplicationError(
            NOT_READY.format(seconds=seconds),
            code="model_loading",
            status=503,
            type=SERVICE_UNAVAILABLE,
            headers={"Retry-After": seconds},
        )
    elif job.status == JobStatus.FAILED or closed:
        status, error_type, message = job_failure(job.error_code, job.error_message)
        error = errors.ApplicationError(
            message, code=job.error_code or "job_failed", status=status, type=error_type
        )
        if status == 503:
            error.headers["Retry-After"] = str(pipeline.RETRY_AFTER_SECONDS)
    else:
        error = errors.ApplicationError(
            STILL_RUNNING,
            code="job_still_running",
            status=503,
            type=SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(pipeline.RETRY_AFTER_SECONDS)},
        )
    response = error_response(CLOUDFLARE, error)
    for name, value in headers.items():
        response.setdefault(name, value)
    return response


@csrf_exempt
async def cloudflare_run(request: HttpRequest, account_id: str, model_name: str) -> HttpResponse:
    response = await run_view(
        _cloudflare_sync, request, account_id=account_id, model_name=model_name
    )
    pending = getattr(response, "vitrine_wait", None)
    if pending is None:
        return lifecycle_apply(request, response)
    submitted, bound, threshold = pending
    outcome, carried = await waiting.job_wait(submitted.job.pk, bound=bound)
    if outcome == waiting.GIVEN_UP:  # the database away: nothing to read, nothing charged
        final = error_response(CLOUDFLARE, given_up(submitted.job.pk))
    else:
        final = await answer_waited(
            cloudflare_answer, request, submitted, threshold, outcome, carried
        )
    return lifecycle_apply(request, limits.copy_rate_limit_headers(response, final))
