"""Error reports to Sentry, only when ``SENTRY_DSN`` is set; nothing is initialised otherwise.

Django and Celery integrations: unhandled view and task exceptions, and ``logger.error``/
``logger.exception`` lines (sentry's default logging integration), become events. Each
event is tagged with the ``request_id`` and ``job_id`` bound in structlog's context where
it happened, so an event leads to the log lines and the job of the same request.
"""

from __future__ import annotations

from typing import Any

import structlog

TAGGED = ("request_id", "job_id", "task_id")


def tag_with_context(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """``before_send``: runs in the thread (and context) that captured the event."""
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
    )
