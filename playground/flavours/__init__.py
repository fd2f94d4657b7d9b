"""The API's flavours: one pipeline, three wire formats.

- ``vitrine``: ``/v1/...``, errors ``{"error": {"message", "type", "code", "param"}}``.
- ``hf``: the Hugging Face task API (``/hf/models/<org>/<name>``, and ``/v1/inference/...``
  when the call looks purely like ``huggingface_hub``'s: ``wants_hf``), errors
  ``{"error": "<message>"}`` (plus ``estimated_time`` on a 503), as Hugging Face's
  Inference API answers them.
- ``cloudflare``: Workers AI (``/client/v4/accounts/<id>/ai/run/@cf/<org>/<name>``), every
  answer in Cloudflare's envelope ``{"result", "success", "errors": [{"code", "message"}],
  "messages"}``.

Every error, whichever layer raises it (a body-limit middleware, DRF's authentication, a
service, a failed job, an unexpected exception), is one ``ApplicationError`` rendered by
``error_response`` in the flavour of the request (with the flavour's own text where the
error carries one: ``flavour_messages``, e.g. a 413 naming the ways that route takes).
Vitrine's machine code travels in the ``X-Vitrine-Error-Code`` header on the foreign
flavours, whose bodies keep their exact shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

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
# What only Vitrine's own flavour does: a call on /v1/inference using any of them is
# Vitrine's, whatever Hugging Face headers or User-Agent it also carries (the HF flavour
# would refuse them, or ignore Prefer). Idempotency-Key is every flavour's.
VITRINE_ONLY_QUERY = frozenset({"dry_run", "webhook", "box_format"})
VITRINE_ONLY_HEADERS = ("prefer",)

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


def _query_names(query: Mapping | str | bytes | None) -> set[str]:
    if not query:
        return set()
    if isinstance(query, bytes):  # an ASGI scope's query_string
        query = query.decode("latin-1")
    if isinstance(query, str):
        return {name for name, _ in parse_qsl(query, keep_blank_values=True)}
    return set(query.keys())


def uses_vitrine_features(headers: Mapping[str, str], query=None) -> bool:
    """Whether the call asks for something only Vitrine's own flavour does: a Vitrine
    query parameter (``VITRINE_ONLY_QUERY``), a ``Prefer`` header, or a multipart body
    (the Hugging Face task API takes the raw image or JSON)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    if any(name in lowered for name in VITRINE_ONLY_HEADERS):
        return True
    if lowered.get("content-type", "").strip().lower().startswith("multipart/"):
        return True
    return bool(_query_names(query) & VITRINE_ONLY_QUERY)


def wants_hf(headers: Mapping[str, str], query=None) -> bool:
    """Whether a call on ``/v1/inference`` gets the Hugging Face flavour: it looks like
    ``huggingface_hub`` (``is_hf_client``) and uses nothing of Vitrine's own
    (``uses_vitrine_features``). One Hugging Face header on a call that also asks for
    ``?webhook=`` or ``Prefer: respond-async`` must not turn it into another API."""
    return is_hf_client(headers) and not uses_vitrine_features(headers, query)


def flavour_for(path: str, headers: Mapping[str, str], query=None) -> str:
    """The flavour a request is answered in. ``query`` (the query string, or a mapping
    of it) is needed to see a Vitrine query parameter (``wants_hf``); without it only
    the headers decide."""
    if path.startswith(HF_PREFIX):
        return HF
    if path.startswith(CLOUDFLARE_PREFIX):
        return CLOUDFLARE
    if (path == "/v1" or path.startswith(V1_INFERENCE_PREFIX)) and wants_hf(headers, query):
        return HF
    return VITRINE


def in_scope(path: str) -> bool:
    """Paths whose errors are JSON in some flavour (the API, not the HTML site)."""
    return path == "/v1" or path.startswith(("/v1/", HF_PREFIX, CLOUDFLARE_PREFIX))


def cloudflare_code(error: errors.ApplicationError) -> int:
    if error.code == "model_not_found":
        return CLOUDFLARE_MODEL_NOT_FOUND
    return CLOUDFLARE_CODES.get(error.status, error.status)


def message_in(flavour: str, error: errors.ApplicationError) -> str:
    """The error's text in ``flavour``: its own for that flavour where it carries one
    (``flavour_messages``: a refusal made before any view, which says what the route
    takes), else its message."""
    return (getattr(error, "flavour_messages", None) or {}).get(flavour, error.message)


def error_body(flavour: str, error: errors.ApplicationError) -> dict:
    if flavour == HF:
        body: dict = {"error": message_in(HF, error)}
        if "estimated_time" in error.extra:
            body["estimated_time"] = error.extra["estimated_time"]
        return body
    if flavour == CLOUDFLARE:
        return {
            "result": None,
            "success": False,
            "errors": [{"code": cloudflare_code(error), "message": message_in(CLOUDFLARE, error)}],
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


GIVEN_UP = (
    "Vitrine's database did not answer in time, so this call gave up its job {job_id}: it "
    "will not run and nothing is charged. Retry the call in a few seconds."
)


def given_up(job_id) -> errors.ApplicationError:
    """``database_unavailable`` for a drop-in call that gave its job up at its wait's bound
    (``waiting.GIVEN_UP``): the job ends unbilled, so a retry pays once."""
    return errors.ApplicationError(
        GIVEN_UP.format(job_id=job_id),
        code="database_unavailable",
        status=503,
        type="service_unavailable",
        headers={
            "Retry-After": str(DATABASE_RETRY_AFTER_SECONDS),
            "X-Vitrine-Job-Id": str(job_id),
            "X-Vitrine-Cost": "0",
        },
    )


def internal_error() -> errors.ApplicationError:
    """The 500 every flavour answers for a bug: retryable, no internals."""
    return errors.ApplicationError(
        INTERNAL_ERROR, code="internal_error", status=500, type=errors.SERVER_ERROR
    )
