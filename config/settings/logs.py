"""Structured logs: one line per event, JSON in production, readable in development.

structlog renders both its own loggers and the standard library's (Django, Celery, ours)
through one ``ProcessorFormatter``, so every line has ``timestamp``, ``level``, ``logger``
and ``event``, plus whatever is bound in structlog's context variables: ``request_id`` for
a web request (``catalog.observability.RequestIdMiddleware``), ``task_id``, ``job_id`` and
the job's ``request_id`` in a worker (django-structlog's Celery receiver and
``playground.tracing``).

No secret is written in a query string's clothes: a caller may put an API key in a URL
(``GET /v1/jobs?api_key=vt_...``, refused with 401) or a webhook URL with its token in a
call's query, and every line that carries a request's path (django-structlog's
``request_started``/``request_finished``, uvicorn's and gunicorn's access lines, runserver's)
would keep it. ``redact_text`` replaces such values with ``[redacted]``, keeping the names.
"""

from __future__ import annotations

import logging
import logging.config
import re
import sys
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import quote, unquote_plus

import structlog

FORMATS = ("json", "console")

# --- secrets in query strings --------------------------------------------------------------
REDACTED = "[redacted]"
# Query parameter names whose value is a secret (compared lowercased)...
SECRET_NAMES = frozenset(
    {"key", "token", "secret", "password", "passwd", "pwd", "signature", "sig", "auth"}
    | {"api_key", "apikey", "api-key", "access_token", "refresh_token", "id_token"}
    | {"auth_token", "authorization", "client_secret", "jwt", "session", "sessionid"}
)
# ... or whose name contains one of these (x-amz-signature, hub.verify_token, db_password)...
SECRET_NAME_PARTS = ("token", "secret", "passw", "signature", "apikey", "api_key", "credential")
# ... or ends like a key (private_key, stripe-key).
SECRET_NAME_ENDS = ("_key", "-key", ".key")
# A Vitrine API key (billing/services/keys.py: vt_<8 hex>_<token_urlsafe>), whatever its name.
VITRINE_KEY = re.compile(r"vt_[0-9a-f]{8}_[A-Za-z0-9_-]+")
# A query string in free text: from "?" to the first character no request line carries.
_QUERY = re.compile(r"\?([^\s\"'<>]+)")
# Characters a redacted URL keeps as they are when it is written back as a value.
_READABLE = ":/?=[]@!$'()*,;"
# Loggers whose lines are request lines (their args carry the path and query).
REQUEST_LINE_LOGGERS = ("uvicorn.access", "gunicorn.access", "django.server")


def is_secret_name(name: str) -> bool:
    name = name.strip().lower()
    return (
        name in SECRET_NAMES
        or any(part in name for part in SECRET_NAME_PARTS)
        or name.endswith(SECRET_NAME_ENDS)
    )


def redact_query(query: str) -> str:
    """``api_key=vt_x&page=2`` -> ``api_key=[redacted]&page=2``: a secret's value goes, its
    name stays; so does a value that is a Vitrine key, and a secret inside a URL given as a
    value (``webhook=https://hook.example/?token=...``, encoded or not)."""
    parts = []
    for part in query.split("&"):
        name, sep, value = part.partition("=")
        if sep and is_secret_name(unquote_plus(name)):
            part = f"{name}={REDACTED}"
        elif sep and value:
            plain = unquote_plus(value)
            if VITRINE_KEY.search(plain):
                part = f"{name}={REDACTED}"
            elif "?" in plain or "=" in plain:
                inner = redact_text(plain) if "?" in plain else redact_query(plain)
                if inner != plain:  # readable, and its own & cannot end the outer value
                    part = f"{name}={quote(inner, safe=_READABLE)}"
        parts.append(part)
    return "&".join(parts)


def redact_text(text: str) -> str:
    """``text`` with every query string's secrets (``redact_query``) and every Vitrine key
    redacted: a request line, a URL, a log message."""
    if "?" in text:
        text = _QUERY.sub(lambda match: "?" + redact_query(match.group(1)), text)
    if "vt_" in text:
        text = VITRINE_KEY.sub(REDACTED, text)
    return text


def redact_secrets(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: ``redact_text`` on every string in the line (``request``,
    ``event`` and any other)."""
    for name, value in event_dict.items():
        if isinstance(value, str) and ("?" in value or "vt_" in value):
            event_dict[name] = redact_text(value)
    return event_dict


class RedactRequestLine(logging.Filter):
    """On an access logger (uvicorn's, gunicorn's, runserver's): redact the record's args,
    where each of them formats its request line from (uvicorn: a tuple with the path and
    query; gunicorn: a dict of atoms, ``q`` the bare query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(redact_text(a) if isinstance(a, str) else a for a in args)
        elif isinstance(args, MutableMapping):
            for name, value in list(args.items()):
                if isinstance(value, str):
                    args[name] = redact_query(value) if name == "q" else redact_text(value)
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        return True


def install_request_line_filters() -> None:
    """Put ``RedactRequestLine`` on the access loggers, once each. A filter on the logger,
    not on a handler: the servers give these loggers handlers of their own (uvicorn's
    stdout, gunicorn's access log file), which the dict config below does not replace."""
    for name in REQUEST_LINE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactRequestLine) for f in logger.filters):
            logger.addFilter(RedactRequestLine())


def configure_logging(config: dict[str, Any]) -> None:
    """``LOGGING_CONFIG``: Django's dictConfig of ``LOGGING``, then the access loggers'
    filters (Django sets logging up when the ASGI/WSGI app is loaded: after uvicorn or
    gunicorn configured their loggers, whose handlers this leaves alone)."""
    logging.config.dictConfig(config)
    install_request_line_filters()
    # Python's warnings as log lines (``py.warnings``), not bare text on stderr: a worker
    # started as root warns before Celery's own logging set-up would capture it.
    logging.captureWarnings(True)


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


def _drop_color_message(
    logger: Any, method_name: str, event_dict: dict[str, Any]
) -> dict[str, Any]:
    """uvicorn passes each line again with terminal colours as an extra (``color_message``):
    the line is ``event`` already."""
    event_dict.pop("color_message", None)
    return event_dict


# For records from standard-library loggers: what structlog's own loggers add themselves.
_FOREIGN_PRE_CHAIN: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.ExtraAdder(),
    _drop_color_message,
    _django_request,
    redact_secrets,
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
            redact_secrets,  # before any handler (or Sentry's logging hook) sees the line
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


def server_logging_config(*, fmt: str, level: str) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict`` (``config/gunicorn.conf.py``): its own lines, the
    master's (start-up, each worker booted, a worker that failed to boot, its traceback
    included) and each worker's before Django configures logging, through the app's
    formatter, so a pool writes only lines of ``fmt``. The error and access loggers keep a
    handler each (stderr, stdout) and do not propagate: uvicorn's gunicorn worker copies
    those handlers onto uvicorn's own loggers."""
    config = logging_config(fmt=fmt, level=level)
    stream = {"class": "logging.StreamHandler", "formatter": "structured"}
    config["handlers"] = {
        "console": {**stream, "stream": "ext://sys.stderr"},
        "access": {**stream, "stream": "ext://sys.stdout"},
    }
    config["loggers"] = {
        "gunicorn.error": {"handlers": ["console"], "level": level, "propagate": False},
        "gunicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    }
    return config
