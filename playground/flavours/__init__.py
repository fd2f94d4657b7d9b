"""The API's flavours: one pipeline, three wire formats.

- ``vitrine``: ``/v1/...``, errors ``{"error": {"message", "type", "code", "param"}}``.
- ``hf``: the Hugging Face task API (``/hf/models/<org>/<name>``, and ``/v1/inference/...``
  when the caller is a Hugging Face client), errors ``{"error": "<message>"}`` (plus
  ``estimated_time`` on a 503), as Hugging Face's Inference API answers them.
- ``cloudflare``: Workers AI (``/client/v4/accounts/<id>/ai/run/@cf/<org>/<name>``), every
  answer in Cloudflare's envelope ``{"result", "success", "errors": [{"code", "message"}],
  "messages"}``.

Every error, whichever layer raises it (a body-limit middleware, DRF's authentication, a
service, a failed job, an unexpected exception), is one ``ApplicationError`` rendered by
``error_response`` in the flavour of the request. Vitrine's machine code travels in the
``X-Vitrine-Error-Code`` header on the foreign flavours, whose bodies keep their exact shape.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.http import JsonResponse

from catalog import errors

VITRINE = "vitrine"
HF = "hf"
CLOUDFLARE = "cloudflare"

HF_PREFIX = "/hf/"
CLOUDFLARE_PREFIX = "/client/v4/"
V1_INFERENCE_PREFIX = "/v1/inference/"
ERROR_CODE_HEADER = "X-Vitrine-Error-Code"
# Hugging Face's own headers: a call carrying them wants the Hugging Face flavour.
HF_HEADERS = ("x-wait-for-model", "x-use-cache")

DATABASE_UNAVAILABLE = (
    "Vitrine's database did not answer in time. Retry the call in a few seconds; an "
    "Idempotency-Key makes the retry safe to pay for once."
)
DATABASE_RETRY_AFTER_SECONDS = 2
INTERNAL_ERROR = (
    "An internal error occurred; nothing was charged. Retry the call; report the "
    "X-Request-Id if it keeps failing."
)

# Cloudflare's own numeric codes where one fits; otherwise the HTTP status.
CLOUDFLARE_CODES = {401: 10000, 403: 9109, 404: 7003, 429: 971}
CLOUDFLARE_MODEL_NOT_FOUND = 5007


def is_hf_client(headers: Mapping[str, str]) -> bool:
    """``huggingface_hub`` (User-Agent ``... hf_hub/<version> ...``) or a call using HF's
    cache/wait headers."""
    agent = headers.get("user-agent", "") or headers.get("User-Agent", "")
    lowered = {name.lower() for name in headers}
    return "hf_hub/" in agent or any(name in lowered for name in HF_HEADERS)


def flavour_for(path: str, headers: Mapping[str, str]) -> str:
    if path.startswith(HF_PREFIX):
        return HF
    if path.startswith(CLOUDFLARE_PREFIX):
        return CLOUDFLARE
    if (path == "/v1" or path.startswith(V1_INFERENCE_PREFIX)) and is_hf_client(headers):
        return HF
    return VITRINE


def in_scope(path: str) -> bool:
    """Paths whose errors are JSON in some flavour (the API, not the HTML site)."""
    return path == "/v1" or path.startswith(("/v1/", HF_PREFIX, CLOUDFLARE_PREFIX))


def cloudflare_code(error: errors.ApplicationError) -> int:
    if error.code == "model_not_found":
        return CLOUDFLARE_MODEL_NOT_FOUND
    return CLOUDFLARE_CODES.get(error.status, error.status)


def error_body(flavour: str, error: errors.ApplicationError) -> dict:
    if flavour == HF:
        body: dict = {"error": error.message}
        if "estimated_time" in error.extra:
            body["estimated_time"] = error.extra["estimated_time"]
        return body
    if flavour == CLOUDFLARE:
        return {
            "result": None,
            "success": False,
            "errors": [{"code": cloudflare_code(error), "message": error.message}],
            "messages": [],
        }
    return error.as_dict()


def error_headers(flavour: str, error: errors.ApplicationError) -> dict[str, str]:
    headers = dict(error.headers)
    if flavour != VITRINE:
        headers[ERROR_CODE_HEADER] = error.code
    if flavour == CLOUDFLARE:
        # Cloudflare's SDK (Stainless) obeys this: no automatic retry of a 4xx we mean.
        retry = error.status == 429 or error.status >= 500
        headers["x-should-retry"] = "true" if retry else "false"
    return headers


def error_response(flavour: str, error: errors.ApplicationError) -> JsonResponse:
    return JsonResponse(
        error_body(flavour, error), status=error.status, headers=error_headers(flavour, error)
    )


def database_unavailable() -> errors.ApplicationError:
    """The 503 every flavour answers while the database cannot be reached (down, restarting,
    or the web process's connection pool exhausted for its whole wait): a moment's fault,
    worth a retry, not a bug."""
    return errors.ApplicationError(
        DATABASE_UNAVAILABLE,
        code="database_unavailable",
        status=503,
        type="service_unavailable",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def internal_error() -> errors.ApplicationError:
    """The 500 every flavour answers for a bug: retryable, no internals."""
    return errors.ApplicationError(
        INTERNAL_ERROR, code="internal_error", status=500, type=errors.SERVER_ERROR
    )
