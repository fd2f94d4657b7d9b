"""The Hugging Face task API, drop-in: ``POST /hf/models/<org>/<name>``.

Works unchanged with ``huggingface_hub.InferenceClient`` given the model's URL, either as
``model=`` or as its OpenAI-style alias ``base_url=`` (the client posts to that URL as it
is)::

    InferenceClient(model="https://vitrine.example/hf/models/facebook/detr-resnet-50",
                    token="vt_...").object_detection("photo.jpg", threshold=0.7)

``POST /v1/inference/<org>/<name>`` answers in this flavour too when the caller is a
Hugging Face client (User-Agent ``hf_hub/...``) or sends ``x-wait-for-model`` /
``x-use-cache``, so clients already pointed there keep working; unless the call also uses
anything of Vitrine's own (``?webhook=``, ``?dry_run=``, ``?box_format=``, a ``Prefer``
header, a multipart body): that call is Vitrine's (``flavours.wants_hf``).

The body is the image (raw bytes, up to ``VITRINE_MAX_UPLOAD_BYTES``) or
``{"inputs": <base64>, "parameters": {"threshold": t}}`` (the same image size limit); a
multipart form (``curl -F``) is a 415 saying so (multipart is Vitrine's, on ``/v1/``). The
answer is exactly Hugging Face's: ``[{"label", "score", "box": {xmin, ymin, xmax, ymax}}]``
with integer pixels, and errors are ``{"error": "<message>"}``. It never answers 202:

- ``x-wait-for-model: false`` (default): when the model is cold or the queue is long (the
  estimate is over ``VITRINE_HF_WAIT``), 503 ``{"error", "estimated_time"}`` +
  ``Retry-After`` at once, nothing queued or charged; otherwise it waits up to
  ``VITRINE_HF_WAIT`` seconds, then cancels the still-queued job (nothing charged) and
  answers the same 503.
- ``x-wait-for-model: true``: no early 503; waits up to ``VITRINE_HF_WAIT_FOR_MODEL``.
- ``x-use-cache: true`` (default): an identical call (same account, model revision,
  route, image sha256 and threshold) within ``VITRINE_HF_CACHE_TTL`` answers with the
  stored result, running and charging nothing (``X-Vitrine-Cache: hit``, ``X-Vitrine-Cost:
  0``); one still running is waited for rather than run twice. ``false`` runs anew.
- Hugging Face's legacy body ``"options": {"wait_for_model", "use_cache"}`` (booleans) do
  what the two headers do. Any other query parameter (known: ``threshold``, ``route``),
  body field or ``parameters`` key is a 400 ``unknown_parameter`` naming it.
- ``Idempotency-Key`` as on every paid call (``playground.idempotency``).
- A deprecated model's answers carry ``Deprecation``, ``Sunset`` and ``Link`` (the same
  route for the replacement); a retired one is 410 ``{"error": "... use <replacement>."}``
  (``catalog/lifecycle.py``, the one check of every flavour).
Cost headers: ``X-Vitrine-Job-Id``, ``X-Vitrine-Cost``, ``X-Vitrine-Balance``.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from catalog import errors
from catalog.lifecycle import lifecycle_apply
from playground import api, idempotency, limits, pipeline, services
from playground.failures import ACCOUNT_CLOSED_CODE, SERVICE_UNAVAILABLE, job_failure
from playground.flavours import HF, error_response, given_up, waiting
from playground.flavours.common import (
    FlavourApi,
    answer_waited,
    refuse_unknown_options,
    run_view,
)
from playground.models import Job, JobStatus
from playground.runtime import ImageError, inspect_image
from playground.runtime.fit import check_model_fit, processor_config, rule_from_config
from playground.serializers import BOX_KEYS

MODEL_LOADING = (
    "Model {model} is currently loading or busy; retry in about {seconds} s, or send "
    "x-wait-for-model: true to wait for it."
)
# The same 503 for a call that sent x-wait-for-model: true and met VITRINE_HF_WAIT_FOR_MODEL.
MODEL_LOADING_WAITED = (
    "Model {model} did not answer within this call's wait for it; retry in about {seconds} s."
)
STILL_RUNNING = (
    "The job is still running; retry the call (with the same Idempotency-Key, or with "
    "x-use-cache: true) to get its result without paying again."
)
BAD_BOOLEAN = "The {header} header must be 'true' or 'false'."
QUERY = {"threshold", "route"}
FIELDS = {"inputs", "parameters", "options"}
# Hugging Face's legacy body options, the same switches as its x-* headers.
NESTED = {"parameters": {"threshold"}, "options": {"wait_for_model", "use_cache"}}
CACHE_HEADER = "X-Vitrine-Cache"


def _bool_header(request, name: str, default: bool) -> bool:
    raw = request.headers.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise errors.ApplicationError(
        BAD_BOOLEAN.format(header=name), code="invalid_header", param=name
    )


def _bool_option(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    raise errors.ApplicationError(
        f"'{name}' must be true or false.", code="invalid_value", param=name
    )


def image_check(*, card, route, image: bytes) -> None:
    """The image checks of ``services.job_create`` (decode, the model's resize), as the
    same 4xx (``pipeline.IMAGE_ERROR_STATUS``), without storing anything."""
    try:
        decoded = inspect_image(image, max_pixels=settings.VITRINE_MAX_IMAGE_PIXELS)
        if route.is_own:
            rule = rule_from_config(processor_config(services.card_spec(card)))
            check_model_fit(*decoded.oriented_size, rule)
    except ImageError as exc:
        raise errors.ApplicationError(
            str(exc), code=exc.code, status=pipeline.IMAGE_ERROR_STATUS.get(exc.code, 400)
        ) from None


def loading_error(
    model_id: str, estimate: float, *, waited_for_model: bool = False
) -> errors.ApplicationError:
    seconds = waiting.retry_after(estimate)
    text = MODEL_LOADING_WAITED if waited_for_model else MODEL_LOADING
    return errors.ApplicationError(
        text.format(model=model_id, seconds=seconds),
        code="model_loading",
        status=503,
        type=SERVICE_UNAVAILABLE,
        extra={"estimated_time": estimate},
        headers={"Retry-After": seconds},
    )


class HfInferenceApi(FlavourApi):
    flavour = HF

    @extend_schema(exclude=True)  # a foreign wire format: documented in the README
    def post(self, request, model_id: str):
        # A trailing slash is no other model. Given the request, a deprecated model's
        # answers (errors, 503s and the 410 included) carry Deprecation/Sunset/Link.
        card = api._callable_card(model_id.strip("/"), request)
        limits.api_call_check(request, card)
        route = api._route(card, request.query_params.get("route"), user=request.user)
        key = idempotency.key_from(request)
        refuse_unknown_options(request, query=QUERY, fields=FIELDS, nested=NESTED)
        legacy = request.data.get("options") if isinstance(request.data, dict) else None
        legacy = legacy if isinstance(legacy, dict) else {}
        wait_for_model = _bool_header(request, "x-wait-for-model", False)
        use_cache = _bool_header(request, "x-use-cache", True)
        if "wait_for_model" in legacy:
            wait_for_model = _bool_option("options.wait_for_model", legacy["wait_for_model"])
        if "use_cache" in legacy:
            use_cache = _bool_option("options.use_cache", legacy["use_cache"])
        image, threshold = api.read_image_input(request, flavour=HF)
        bound = settings.VITRINE_HF_WAIT_FOR_MODEL if wait_for_model else settings.VITRINE_HF_WAIT
        # hf_answer's 503 at the bound does not tell a call that waited to wait.
        request._request.vitrine_waited_for_model = wait_for_model

        def admit() -> None:
            if wait_for_model:
                return
            estimate = waiting.estimate_seconds(card=card)
            if estimate > bound:
                # Bad input is the caller's to fix now, not after a retry: check the image
                # (as the job's creation would) before answering the retryable 503.
                image_check(card=card, route=route, image=image)
                raise loading_error(card.model_id, estimate)

        submitted = pipeline.job_submit(
            request=request,
            card=card,
            route=route,
            image=image,
            threshold=threshold,
            flavour=HF,
            idempotency_key=key,
            cache_print=pipeline.cache_fingerprint(
                card=card, route=route, sha256=pipeline.image_sha256(image), threshold=threshold
            ),
            use_cache=use_cache,
            admit=admit,
            answer_waits=True,  # hf_inference answers once the job ended (api.awaited_row)
        )
        response = Response(status=202)  # never sent: hf_inference awaits the job
        response.vitrine_wait = (submitted, bound, threshold)
        return pipeline.replay_mark(response, submitted)


_hf_sync = HfInferenceApi.as_view()


def detections(job: Job, threshold: float) -> list[dict]:
    """Hugging Face's shape: integer pixels (truncated, as transformers' pipeline does)."""
    return [
        {
            "label": d["label"],
            "score": d["score"],
            "box": {k: int(d["box"][k]) for k in BOX_KEYS},
        }
        for d in job.result or []
        if d["score"] >= threshold
    ]


def hf_answer(
    request, submitted: pipeline.Submitted, threshold: float, outcome: str, job: Job | None
):
    """The answer about the job the call waited for: from ``job`` (the row as its finished
    signal carried it), or from the row read now when None."""
    job = job if job is not None else api.awaited_row(submitted.job)
    resource = api.job_resource(job, request=request, threshold=threshold)
    headers = api._cost_headers(resource)
    headers[CACHE_HEADER] = "hit" if submitted.cached else "miss"
    if submitted.cached:
        headers["X-Vitrine-Cost"] = "0"  # this call ran and charged nothing
    if job.status == JobStatus.SUCCEEDED:
        return JsonResponse(detections(job, threshold), safe=False, headers=headers)
    closed = job.status == JobStatus.CANCELLED and job.error_code == ACCOUNT_CLOSED_CODE
    if (outcome == waiting.CANCELLED or job.status == JobStatus.CANCELLED) and not closed:
        # Cancelled at a wait's bound (this call's or a duplicate's): retryable.
        error = loading_error(
            job.card.model_id,
            waiting.estimate_seconds(card=job.card),
            waited_for_model=getattr(request, "vitrine_waited_for_model", False),
        )
    elif job.status == JobStatus.FAILED or closed:
        status, error_type, message = job_failure(job.error_code, job.error_message)
        error = errors.ApplicationError(
            message, code=job.error_code or "job_failed", status=status, type=error_type
        )
        if status == 503:
            error.headers["Retry-After"] = str(pipeline.RETRY_AFTER_SECONDS)
    else:  # still running past the task's time limit (a lost worker)
        estimate = waiting.estimate_seconds(card=job.card)
        error = errors.ApplicationError(
            STILL_RUNNING,
            code="job_still_running",
            status=503,
            type=SERVICE_UNAVAILABLE,
            extra={"estimated_time": estimate},
            headers={"Retry-After": waiting.retry_after(estimate)},
        )
    response = error_response(HF, error)
    for name, value in headers.items():
        response.setdefault(name, value)
    return response


@csrf_exempt
async def hf_inference(request: HttpRequest, model_id: str) -> HttpResponse:
    """Run the DRF view (auth, validation, the job), then await the job (no thread held)."""
    response = await run_view(_hf_sync, request, model_id=model_id)
    pending = getattr(response, "vitrine_wait", None)
    if pending is None:
        return lifecycle_apply(request, response)
    submitted, bound, threshold = pending
    outcome, carried = await waiting.job_wait(submitted.job.pk, bound=bound)
    if outcome == waiting.GIVEN_UP:  # the database away: nothing to read, nothing charged
        final = error_response(HF, given_up(submitted.job.pk))
    else:
        final = await answer_waited(hf_answer, request, submitted, threshold, outcome, carried)
    return lifecycle_apply(request, limits.copy_rate_limit_headers(response, final))
