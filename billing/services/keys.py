"""API keys (shown once, stored hashed) and BYOK provider keys (encrypted at rest)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from billing.models import ApiKey, ProviderKey
from catalog.db import JoinedRow, prepared_row
from catalog.errors import ApplicationError

KEY_PREFIX = "vt_"
MISSING_KEY = "Missing API key: send 'Authorization: Bearer <key>'."
NOT_BEARER = (
    "The Authorization header must be 'Bearer <key>' (the scheme 'Bearer', a space, then "
    "the key from your dashboard)."
)
MALFORMED_KEY = "Malformed API key."
INVALID_KEY = "Invalid API key."
REVOKED_KEY = "This API key has been revoked."
# The key's owner is deactivated (``is_active=False``, the admin's ban): their keys stop
# working with them, as a revoked key does, and are never charged.
INACTIVE_KEY = "This API key's account is deactivated."
# A key's "last used" is kept to the minute: writing it on every call cost each inference
# call a committed (fsync'd) transaction of its own, ~3 ms of its API overhead.
LAST_USED_PRECISION = timedelta(minutes=1)
TOO_MANY_KEYS = (
    "This account has {count} active API keys, the most it may have; revoke one it no longer "
    "uses to create another."
)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(
    *, user, name: str, monthly_spend_cap=None, allowed_models=()
) -> tuple[ApiKey, str]:
    """Create a key; returns it and the plaintext, which is never stored or shown again.

    At most ``VITRINE_MAX_API_KEYS`` active keys per account (409 ``too_many_api_keys``):
    keys were unlimited, 150 a minute from one signed-in form, and the dashboard lists them
    all (3,150 keys: a 1.5 MB page, 0.6 s of a pages worker each time it is opened). The
    user row is locked first (the lock order's own row), so concurrent forms count one after
    the other."""
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=user.pk).exists()
        active = ApiKey.objects.filter(user=user, revoked_at__isnull=True).count()
        if active >= settings.VITRINE_MAX_API_KEYS:
            raise ApplicationError(
                TOO_MANY_KEYS.format(count=active), code="too_many_api_keys", status=409
            )
        while True:
            prefix = secrets.token_hex(4)
            if not ApiKey.objects.filter(prefix=prefix).exists():
                break
        plaintext = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        key = ApiKey.objects.create(
            user=user,
            name=name,
            prefix=prefix,
            secret_hash=_hash(plaintext),
            monthly_spend_cap=monthly_spend_cap,
        )
        key.allowed_models.set(allowed_models)
    return key, plaintext


def auth_error(message: str) -> ApplicationError:
    return ApplicationError(
        message,
        code="invalid_api_key",
        status=401,
        type="authentication_error",
        headers={"WWW-Authenticate": 'Bearer realm="vitrine"'},
    )


@cache
def _key_read() -> tuple[JoinedRow, str]:
    """The key-with-its-user read on PostgreSQL: its columns and its statement."""
    user_model = get_user_model()
    joined = JoinedRow((ApiKey, "k"), (user_model, "u"))
    sql = (
        f"SELECT {joined.select_list} FROM {ApiKey._meta.db_table} k "
        f"JOIN {user_model._meta.db_table} u ON u.id = k.user_id "
        "WHERE k.prefix = %s::text ORDER BY k.id LIMIT 1"
    )
    return joined, sql


def _key_by_prefix(prefix: str) -> ApiKey | None:
    """The key with this prefix and its user: every API call reads it, so on PostgreSQL it
    is a prepared statement (the ORM's joined read costs ~1 ms of Python on two cores);
    tests/billing/test_key_read_pg.py holds the two to the same instances."""
    if connection.vendor != "postgresql":
        return _key_by_prefix_orm(prefix)
    joined, sql = _key_read()
    row = prepared_row(sql, [prefix])
    if row is None:
        return None
    key, user = joined.build(row)
    ApiKey.user.field.set_cached_value(key, user)
    return key


def _key_by_prefix_orm(prefix: str) -> ApiKey | None:
    return ApiKey.objects.select_related("user").filter(prefix=prefix).first()


def api_key_authenticate(raw: str | None) -> ApiKey:
    """The active key for a presented secret, or a 401 error; records its last use.

    A key is active when it is not revoked and its owner is active: the user came with the
    key in the same statement (``_key_by_prefix``), so the check costs no query."""
    if not raw:
        raise auth_error(MISSING_KEY)
    if not raw.startswith(KEY_PREFIX) or raw.count("_") < 2:
        raise auth_error(MALFORMED_KEY)
    prefix = raw[len(KEY_PREFIX) :].split("_", 1)[0]
    key = _key_by_prefix(prefix)
    # compare_digest on the hash even for an unknown prefix keeps timing uniform.
    expected = key.secret_hash if key else _hash("")
    if not hmac.compare_digest(expected, _hash(raw)) or key is None:
        raise auth_error(INVALID_KEY)
    if key.revoked_at is not None:
        raise auth_error(REVOKED_KEY)
    if not key.user.is_active:
        raise auth_error(INACTIVE_KEY)
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_PRECISION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


def api_key_revoke(*, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def _fernet():
    from cryptography.fernet import Fernet

    secret = settings.BYOK_ENCRYPTION_KEY
    # Any string works as the setting: it is stretched to Fernet's 32-byte key.
    key = base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())
    return Fernet(key)


def provider_key_save(*, user, provider: str, secret: str) -> ProviderKey:
    secret = secret.strip()
    if len(secret) < 8:
        raise ApplicationError("That provider key is too short.", code="invalid_provider_key")
    token = _fernet().encrypt(secret.encode()).decode()
    key, _ = ProviderKey.objects.update_or_create(
        user=user, provider=provider, defaults={"ciphertext": token, "last4": secret[-4:]}
    )
    return key


def provider_key_reveal(*, key: ProviderKey) -> str:
    """The plaintext, for the worker that calls the provider; never for display."""
    return _fernet().decrypt(key.ciphertext.encode()).decode()
