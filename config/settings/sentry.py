"""Error reports to Sentry, only when ``SENTRY_DSN`` is set; nothing is initialised otherwise.

Django and Celery integrations: unhandled view and task exceptions, and ``logger.error``/
``logger.exception`` lines (sentry's default logging integration), become events. Each
event is tagged with the ``request_id`` and ``job_id`` bound in structlog's context where
it happened, so an event leads to the log lines and the job of the same request. A secret in
the request's query string (``?api_key=vt_...``) is redacted as in the logs.
"""

from __future__ import annotations

from typing import Any

import structlog

from config.settings.logs import redact_query, redact_text

TAGGED = ("request_id", "job_id", "task_id")


def _redacted(value: Any) -> Any:
    """``value`` with every string ``redact_text``-ed, however deep: a request's URL and
    query string, and the reprs of local variables (``<WSGIRequest: GET '/x?api_key=...'>``)
    in a traceback's frames. send_default_pii=False keeps headers' secrets out, not these."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            name: redact_query(item)
            if name == "query_string" and isinstance(item, str)
            else _redacted(item)
            for name, item in value.items()
        }
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    return value


def redact_transaction(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """``before_send_transaction``: a performance trace carries the request too."""
    return _redacted(event)


def tag_with_context(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """``before_send``: runs in the thread (and context) that captured the event."""
    event = _redacted(event)
    context = structlog.contextvars.get_contextvars()
    tags = event.setdefault("tags", {})
    for name in TAGGED:
        if context.get(name) and name not in tags:
            tags[name] = str(context[name])
    return event


def sentry_init(
    *, dsn: str, environment: str, release: str | None, traces_sample_rate: float
) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        environment=environment,
        release=release,
        traces_sample_rate=traces_sample_rate,
        # No user emails, IPs, cookies or request bodies (images, API keys) leave for Sentry.
        send_default_pii=False,
        before_send=tag_with_context,
        before_send_transaction=redact_transaction,
    )
