"""The account's webhook signing secret: created on first use, shown on the dashboard,
rotated there. Encrypted at rest with the BYOK key (it must be readable to sign).

A rotation keeps the secret it replaced for ``PREVIOUS_SECRET_GRACE`` (24 hours, as
Stripe does): every delivery in that window is signed with both, so a receiver still
checking the old secret while it is redeployed with the new one rejects nothing."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.models import WebhookSecret
from billing.services.keys import _fernet

SECRET_PREFIX = "whsec_"
PREVIOUS_SECRET_GRACE = timedelta(hours=24)


def _new_ciphertext() -> str:
    plaintext = SECRET_PREFIX + secrets.token_urlsafe(32)
    return _fernet().encrypt(plaintext.encode()).decode()


def _decrypt(ciphertext: str) -> str:
    return _fernet().decrypt(ciphertext.encode()).decode()


def _row(*, user) -> WebhookSecret:
    row = WebhookSecret.objects.filter(user=user).first()
    if row is None:
        try:
            with transaction.atomic():
                row = WebhookSecret.objects.create(user=user, ciphertext=_new_ciphertext())
        except IntegrityError:  # made by a concurrent call: that one is the secret
            row = WebhookSecret.objects.get(user=user)
    return row


def webhook_secret_get(*, user) -> str:
    """The user's signing secret (plaintext), made on first use."""
    return _decrypt(_row(user=user).ciphertext)


def webhook_signing_secrets(*, user, at: datetime | None = None) -> tuple[str, str | None]:
    """The secrets a delivery is signed with now (or ``at``): the current one, and the one
    it replaced while that is within ``PREVIOUS_SECRET_GRACE`` of the rotation (else None)."""
    row = _row(user=user)
    previous = _decrypt(row.previous_ciphertext) if row.previous_valid_until(at=at) else None
    return _decrypt(row.ciphertext), previous


def webhook_secret_rotate(*, user, now: datetime | None = None) -> WebhookSecret:
    """Replace the secret: webhooks signed from now on use the new one, and also the one it
    replaced until ``previous_expires_at`` (now + 24 hours). A rotation within that window
    keeps only the secret it replaced (the one before is dropped). Returns the row."""
    now = now or timezone.now()
    with transaction.atomic():
        # Locked: of two rotations at once, the second keeps the first one's new secret as
        # its previous, as two rotations in a row do (unlocked, both would keep the same old
        # one and the first one's new secret would be gone).
        row, created = WebhookSecret.objects.select_for_update().get_or_create(
            user=user, defaults={"ciphertext": _new_ciphertext(), "rotated_at": now}
        )
        if created:  # nothing was signed before: no previous secret to keep
            return row
        row.previous_ciphertext = row.ciphertext
        row.previous_expires_at = now + PREVIOUS_SECRET_GRACE
        row.ciphertext = _new_ciphertext()
        row.rotated_at = now
        row.save(
            update_fields=["previous_ciphertext", "previous_expires_at", "ciphertext", "rotated_at"]
        )
    return row
