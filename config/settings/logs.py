"""Structured logs: one line per event, JSON in production, readable in development.

structlog renders both its own loggers and the standard library's (Django, Celery, ours)
through one ``ProcessorFormatter``, so every line has ``timestamp``, ``level``, ``logger``
and ``event``, plus whatever is bound in structlog's context variables: ``request_id`` for
a web request (``catalog.observability.RequestIdMiddleware``), ``task_id``, ``job_id`` and
the job's ``request_id`` in a worker (django-structlog's Celery receiver and
``playground.tracing``).
"""

from __future__ import annotations

import sys
from typing import Any

import structlog

FORMATS = ("json", "console")


def _django_request(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Django's own lines (``django.request``: "Not Found: /x") pass the request as an extra:
    log it as "GET /x" with its request id; Django logs a 4xx after the middleware that
    bound the id for the request has returned."""
    request = event_dict.get("request")
    if request is not None and hasattr(request, "method") and hasattr(request, "path"):
        event_dict["request"] = f"{request.method} {request.path}"
        request_id = getattr(request, "request_id", None)
        if request_id:
            event_dict.setdefault("request_id", request_id)
    return event_dict


# For records from standard-library loggers: what structlog's own loggers add themselves.
_FOREIGN_PRE_CHAIN: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.ExtraAdder(),
    _django_request,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_structlog() -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.UnicodeDecoder(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def logging_config(*, fmt: str, level: str) -> dict[str, Any]:
    """Django's ``LOGGING`` for ``fmt`` (json or console): one handler on the root logger."""
    if fmt == "json":
        # The traceback as one string field: no frame locals (they can hold secrets).
        renderer: list[Any] = [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    else:
        renderer = [
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
            )
        ]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *renderer,
                ],
                "foreign_pre_chain": _FOREIGN_PRE_CHAIN,
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's default config gives these loggers handlers of their own (plain text,
            # duplicated lines); none here: they propagate to the structured root.
            "django": {"handlers": [], "level": "INFO", "propagate": True},
            # django-structlog's request_started/request_finished replace runserver's lines.
            "django.server": {"handlers": [], "level": "WARNING", "propagate": True},
            "django.db.backends": {"level": "WARNING"},
        },
    }
