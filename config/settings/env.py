"""Small typed readers for environment variables.

Each raises ImproperlyConfigured with the variable's name and the bad value, so a
misconfigured deployment fails at start-up with a sentence instead of a stack trace
later (healthchecks' ``hc/settings.py`` does the same).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None, *, environ: Mapping[str, str] | None = None):
    environ = os.environ if environ is None else environ
    value = environ.get(name)
    return default if value is None else value.strip()


def env_bool(name: str, default: bool, *, environ: Mapping[str, str] | None = None) -> bool:
    raw = env_str(name, environ=environ)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name} must be one of 1/0, true/false, yes/no, on/off; got {raw!r}"
    )


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    raw = env_str(name, environ=environ)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer; got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}; got {value}")
    return value


def env_list(
    name: str, default: list[str], *, environ: Mapping[str, str] | None = None
) -> list[str]:
    raw = env_str(name, environ=environ)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_database(name: str, default: str, *, environ: Mapping[str, str] | None = None) -> dict:
    """Parse a database URL (``postgres://``, ``sqlite:///``) into Django's DATABASES entry."""
    import dj_database_url

    raw = env_str(name, environ=environ) or default
    hint = "a database URL such as postgres://user@host:5432/name or sqlite:////abs/path.sqlite3"
    if "://" not in raw:
        raise ImproperlyConfigured(f"{name} must be {hint}; got {raw!r}")
    try:
        parsed = dj_database_url.parse(raw, conn_max_age=60, conn_health_checks=True)
    except Exception as exc:  # the library raises ValueError subclasses and KeyError
        raise ImproperlyConfigured(f"{name} must be {hint}; got {raw!r} ({exc})") from None
    if not parsed.get("NAME"):
        raise ImproperlyConfigured(f"{name} names no database; got {raw!r}")
    return parsed


def env_broker_url(name: str, default: str, *, environ: Mapping[str, str] | None = None) -> str:
    raw = env_str(name, environ=environ) or default
    allowed = ("redis://", "rediss://", "redis+socket://", "amqp://", "amqps://")
    if not raw.startswith(allowed):
        raise ImproperlyConfigured(
            f"{name} must be a Redis or AMQP URL ({', '.join(allowed)}); got {raw!r}. "
            "The filesystem and SQLAlchemy transports are refused: they lose messages "
            "when a worker is killed."
        )
    return raw


def env_decimal(name: str, default: str, *, environ: Mapping[str, str] | None = None):
    from decimal import Decimal, InvalidOperation

    raw = env_str(name, environ=environ) or default
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ImproperlyConfigured(
            f"{name} must be a decimal amount such as 5.00; got {raw!r}"
        ) from None
    if not value.is_finite() or value < 0:
        raise ImproperlyConfigured(f"{name} must be a non-negative amount; got {raw!r}")
    return value


def redis_client_url(url: str) -> str:
    """A URL redis-py's ``from_url`` takes: kombu's ``redis+socket://path`` becomes
    ``unix://path``; other Redis URLs pass through."""
    if url.startswith("redis+socket://"):
        return "unix://" + url.removeprefix("redis+socket://")
    return url


S3_ADDRESSING_STYLES = ("auto", "path", "virtual")


def s3_storage_options(*, environ: Mapping[str, str] | None = None) -> dict:
    """The STORAGES entry for uploads in an S3-compatible bucket (django-storages).

    ``VITRINE_S3_BUCKET`` (required), ``VITRINE_S3_ENDPOINT_URL`` (empty: AWS),
    ``VITRINE_S3_REGION``, ``VITRINE_S3_PREFIX`` (a key prefix), ``VITRINE_S3_ADDRESSING_STYLE``
    (``path`` by default with an endpoint URL, as MinIO/SeaweedFS/Ceph need; ``auto`` on AWS).
    Credentials are boto3's own: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or an
    instance role. Objects are private and no pre-signed URL is ever handed out: the web
    process streams an upload to its owner itself.
    """
    from botocore.config import Config

    bucket = env_str("VITRINE_S3_BUCKET", environ=environ)
    if not bucket:
        raise ImproperlyConfigured("VITRINE_STORAGE=s3 needs VITRINE_S3_BUCKET.")
    endpoint = env_str("VITRINE_S3_ENDPOINT_URL", environ=environ) or None
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise ImproperlyConfigured(
            f"VITRINE_S3_ENDPOINT_URL must be an http(s) URL; got {endpoint!r}"
        )
    style = (env_str("VITRINE_S3_ADDRESSING_STYLE", environ=environ) or "").lower() or (
        "path" if endpoint else "auto"
    )
    if style not in S3_ADDRESSING_STYLES:
        raise ImproperlyConfigured(
            f"VITRINE_S3_ADDRESSING_STYLE must be one of {', '.join(S3_ADDRESSING_STYLES)}; "
            f"got {style!r}"
        )
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint,
            "region_name": env_str("VITRINE_S3_REGION", environ=environ) or None,
            "location": (env_str("VITRINE_S3_PREFIX", environ=environ) or "").strip("/"),
            # boto3's own variable names; unset: boto3's chain (an instance role, ~/.aws).
            "access_key": env_str("AWS_ACCESS_KEY_ID", environ=environ) or None,
            "secret_key": env_str("AWS_SECRET_ACCESS_KEY", environ=environ) or None,
            "default_acl": None,  # the bucket's own policy: private
            "querystring_auth": False,
            # Names are random UUIDs: skip the existence check (one request) before a save.
            "file_overwrite": True,
            # A storage outage fails a job in seconds rather than hanging a worker for minutes.
            "client_config": Config(
                s3={"addressing_style": style},
                connect_timeout=env_int(
                    "VITRINE_S3_CONNECT_TIMEOUT", 5, minimum=1, environ=environ
                ),
                read_timeout=env_int("VITRINE_S3_READ_TIMEOUT", 30, minimum=1, environ=environ),
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        },
    }
