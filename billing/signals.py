"""Sign-up credit: a new user's wallet receives ``VITRINE_SIGNUP_CREDIT`` once."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import transaction

from billing.services.topups import credit_grant

SIGNUP_CREDIT_REASON = "Sign-up credit"


def grant_signup_credit(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    """post_save on the user model: grant the sign-up credit when a user is created.

    Posted on commit: the grant is its own ledger transaction, so it must not exist for a
    user whose creation rolls back. The idempotency key is the user id, so running twice
    (a replayed callback, a second signal) grants once. ``robust``: a failed grant is logged
    and never turns a completed sign-up into an error page.
    """
    if not created or raw:
        return
    amount = Decimal(settings.VITRINE_SIGNUP_CREDIT)
    if amount <= 0:
        return
    user_pk = instance.pk

    def grant() -> None:
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.get(pk=user_pk)
        credit_grant(
            user=user,
            amount=amount,
            reason=SIGNUP_CREDIT_REASON,
            idempotency_key=f"signup:{user_pk}",
        )

    transaction.on_commit(grant, robust=True)
