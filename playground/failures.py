"""What a failed job tells the caller: an HTTP status, an error type and a caller-facing text.

The job row keeps the worker's own message for operators (a traceback summary, the path
where weights were looked for, how to install them); the API and the try page answer with
the texts here instead, so no server path, class name or operator instruction reaches a
caller. Every code a job can fail with has a deliberate entry; an unknown code is a 500
with a generic text. Image codes keep the stored message: the decoder's texts are written
for the caller (``playground/runtime/images.py``, ``fit.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from catalog import errors

SERVICE_UNAVAILABLE = "service_unavailable"

MODEL_UNAVAILABLE = "This model is temporarily unavailable; nothing was charged. Retry later."
INFERENCE_FAILED = (
    "The model failed while running on this image; nothing was charged. Retry later, and "
    "report the job id if it keeps failing."
)
WORKER_LOST = "The job's worker stopped several times; nothing was charged. Retry later."
TIMED_OUT = "The job ran out of time; nothing was charged. Retry later."
STORAGE_UNAVAILABLE = (
    "The upload store could not be read on every attempt; nothing was charged. Retry later."
)
IMAGE_LOST = "The upload was lost before a worker read it; nothing was charged. Send it again."
PROVIDER_KEY_INVALID = (
    "Your stored provider key is not in the form the provider needs (Cloudflare: "
    "<account id>:<API token>); update it on your dashboard. Nothing was charged."
)
PROVIDER_AUTH_FAILED = (
    "The provider refused your stored key; check or replace it on your dashboard. "
    "Nothing was charged."
)
PROVIDER_FAILED = "The provider failed to run the model; nothing was charged. Retry later."
# A queued job its account's deletion cancelled (billing/services/accounts.py): the call
# that waited for it is told so, not "busy, retry" (its retry would only meet a 401).
ACCOUNT_CLOSED_CODE = "account_closed"


def closed_username(user_id: int) -> str:
    """The username a closed account is left with (billing/services/accounts.py): what
    tells it from one an operator only suspended (unticked "active"), whose jobs accepted
    before still run, are charged and are delivered."""
    return f"deleted-{user_id}"


def account_is_closed(user) -> bool:
    return not user.is_active and user.get_username() == closed_username(user.pk)


ACCOUNT_CLOSED = "The account was closed before this job ran: nothing was run or charged."
PROVIDER_UNREACHABLE = "The provider could not be reached; nothing was charged. Retry later."
PROVIDER_UNAVAILABLE = (
    "This provider route cannot run the job (no stored key for it, or the provider is no "
    "longer supported); nothing was charged."
)
UNTRAINED_REFUSED = (
    "This model is not available for paid calls on this server (its weights are untrained "
    "placeholders); nothing was charged."
)
QUEUE_UNAVAILABLE = "The job queue is unreachable; nothing was charged. Retry shortly."
QUEUE_TIMEOUT = "No worker took the job in time; nothing was charged. Retry later."
JOB_CANCELLED = "The job was cancelled before it ran; nothing was charged."
JOB_FAILED = "The job failed; nothing was charged. Retry later."
CALL_GIVEN_UP = (
    "The call that made this job was answered 503 while Vitrine's database was away, and "
    "the job was given up: it did not run and nothing was charged. Send the call again."
)


@dataclass(frozen=True)
class Failure:
    status: int
    message: str | None  # None: the stored message is already written for the caller
    type: str | None = None  # None: from the status (catalog.errors.error_type_for)


FAILURES: dict[str, Failure] = {
    # Bad input found by the worker (normally refused before queueing): the caller's to fix.
    "corrupt_image": Failure(400, None),
    "unsupported_format": Failure(415, None),
    "image_too_large": Failure(413, None),
    "image_too_small": Failure(400, None),
    "image_aspect_unsupported": Failure(400, None),
    # The user's own provider key (BYOK) is unusable: theirs to fix on the dashboard.
    "provider_key_invalid": Failure(400, PROVIDER_KEY_INVALID),
    "provider_auth_failed": Failure(400, PROVIDER_AUTH_FAILED),
    # Ours or the provider's, retryable later.
    "weights_not_installed": Failure(503, MODEL_UNAVAILABLE, SERVICE_UNAVAILABLE),
    "model_load_failed": Failure(503, MODEL_UNAVAILABLE, SERVICE_UNAVAILABLE),
    "untrained_weights": Failure(503, UNTRAINED_REFUSED, SERVICE_UNAVAILABLE),
    "attempts_exhausted": Failure(503, WORKER_LOST, SERVICE_UNAVAILABLE),
    "timeout": Failure(503, TIMED_OUT, SERVICE_UNAVAILABLE),
    "queue_unavailable": Failure(503, QUEUE_UNAVAILABLE, SERVICE_UNAVAILABLE),
    "queue_timeout": Failure(503, QUEUE_TIMEOUT, SERVICE_UNAVAILABLE),
    "image_missing": Failure(503, IMAGE_LOST, SERVICE_UNAVAILABLE),
    "storage_unavailable": Failure(503, STORAGE_UNAVAILABLE, SERVICE_UNAVAILABLE),
    "provider_unreachable": Failure(503, PROVIDER_UNREACHABLE, SERVICE_UNAVAILABLE),
    "provider_unavailable": Failure(503, PROVIDER_UNAVAILABLE, SERVICE_UNAVAILABLE),
    "provider_error": Failure(502, PROVIDER_FAILED),
    # A drop-in call answered 503 with the database away gave its job up (events.FATE).
    "call_given_up": Failure(503, CALL_GIVEN_UP, SERVICE_UNAVAILABLE),
    ACCOUNT_CLOSED_CODE: Failure(401, ACCOUNT_CLOSED, "authentication_error"),
    # A bug or a model that breaks on some input: the operator's to fix, from the logs.
    "inference_error": Failure(500, INFERENCE_FAILED),
}
UNKNOWN_FAILURE = Failure(500, JOB_FAILED)
CANCELLED = Failure(409, JOB_CANCELLED)


def job_failure(code: str, stored_message: str = "") -> tuple[int, str, str]:
    """(HTTP status, error type, caller-facing message) of a job that failed with ``code``."""
    failure = FAILURES.get(code, UNKNOWN_FAILURE)
    message = failure.message or stored_message or JOB_FAILED
    return failure.status, failure.type or errors.error_type_for(failure.status), message


def public_error(code: str, stored_message: str = "") -> dict[str, str] | None:
    """The ``error`` object of a job resource: the code and the caller-facing message."""
    if not code:
        return None
    return {"code": code, "message": job_failure(code, stored_message)[2]}
