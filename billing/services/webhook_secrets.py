"""The account's webhook signing secret: created on first use, shown on the dashboard,
rotated there. Encrypted at rest with the BYOK key (it must be readable to sign)."""

from __future__ import annotations

import secrets

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.models import WebhookSecret
from billing.services.keys import _fernet

SECRET_PREFIX = "whsec_"


def _new_ciphertext() -> str:
    plaintext = SECRET_PREFIX + secrets.token_urlsafe(32)
    return _fernet().encrypt(plaintext.encode()).decode()


def webhook_secret_get(*, user) -> str:
    """The user's signing secret (plaintext), made on first use."""
    row = WebhookSecret.objects.filter(user=user).first()
    if row is None:
        try:
            with transaction.atomic():
                row = WebhookSecret.objects.create(user=user, ciphertext=_new_ciphertext())
        except IntegrityError:  # made by a concurrent call: that one is the secret
            row = WebhookSecret.objects.get(user=user)
    return _fernet().decrypt(row.ciphertext.encode()).decode()


def webhook_secret_rotate(*, user) -> str:
    """Replace the secret; webhooks signed from now on use the new one. Returns it."""
    WebhookSecret.objects.update_or_create(
        user=user, defaults={"ciphertext": _new_ciphertext(), "rotated_at": timezone.now()}
    )
    return webhook_secret_get(user=user)
