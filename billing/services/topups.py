"""Credit in: top-ups (the 5% fee is charged here, never per call), grants and refunds."""

from __future__ import annotations

import uuid
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from billing.models import AccountKind, LedgerTransaction, TopUp
from billing.services.ledger import Posting, ledger_post, system_account, wallet_for
from catalog.errors import ApplicationError
from catalog.pricing import TOP_UP_FEE_RATE, format_usd

TOP_UP_TOO_SMALL = "The smallest top-up is {minimum}."
TOP_UP_TOO_LARGE = "The largest top-up is {maximum}."
WHOLE_CENTS = "Top-ups are in whole cents, e.g. 10 or 12.50."
ACCOUNT_CLOSED = "This account has been closed: no payment can be started for it."
CENT = Decimal("0.01")


def top_up_quote(credit: Decimal) -> tuple[Decimal, Decimal]:
    """(fee, total) for receiving ``credit``: the fee is 5%, rounded half up to the cent,
    so what the card pays is whole cents and equals what the ledger records."""
    fee = (credit * TOP_UP_FEE_RATE).quantize(CENT, rounding=ROUND_HALF_UP)
    return fee, credit + fee


@transaction.atomic
def top_up_create(*, user, credit: Decimal, provider: str) -> TopUp:
    credit = Decimal(credit)
    minimum = Decimal(settings.VITRINE_MIN_TOP_UP)
    maximum = Decimal(settings.VITRINE_MAX_TOP_UP)
    # The bounds first: they compare any amount, however many digits it has, whereas
    # quantize() raises InvalidOperation past the context's 28 digits (1e30).
    if credit < minimum:
        raise ApplicationError(
            TOP_UP_TOO_SMALL.format(minimum=format_usd(minimum)), code="top_up_too_small"
        )
    if credit > maximum:
        raise ApplicationError(
            TOP_UP_TOO_LARGE.format(maximum=format_usd(maximum)), code="top_up_too_large"
        )
    if credit != credit.quantize(CENT):
        raise ApplicationError(WHOLE_CENTS, code="top_up_not_whole_cents")
    fee, total = top_up_quote(credit)
    with transaction.atomic():
        # Ordered against the account's close on the user row (billing/services/accounts.py
        # locks it too): a payment started just before is seen by the close's check (it
        # refuses while one is open), and none starts for a closed account, whose credit
        # would be lost (a request that loaded the user before the close; probe D).
        users = get_user_model().objects.select_for_update()
        if not users.filter(pk=user.pk, is_active=True).exists():
            raise ApplicationError(ACCOUNT_CLOSED, code="account_closed", status=409)
        return TopUp.objects.create(
            user=user, credit=credit, fee=fee, total=total, provider=provider
        )


def top_up_complete(*, top_up: TopUp) -> Posting:
    """Credit the wallet once the payment is confirmed; idempotent on the top-up."""
    with transaction.atomic():
        top_up = TopUp.objects.select_for_update().get(pk=top_up.pk)
        posting = ledger_post(
            kind=LedgerTransaction.Kind.TOP_UP,
            idempotency_key=f"top_up:{top_up.pk}",
            entries=[
                (system_account(AccountKind.PAYMENT_CLEARING), -top_up.total),
                (wallet_for(top_up.user), top_up.credit),
                (system_account(AccountKind.FEE_REVENUE), top_up.fee),
            ],
            memo=f"{top_up.provider} top-up",
        )
        if top_up.status != TopUp.Status.COMPLETED:
            top_up.status = TopUp.Status.COMPLETED
            top_up.completed_at = timezone.now()
            top_up.transaction = posting.transaction
            top_up.save(update_fields=["status", "completed_at", "transaction"])
    return posting


def credit_grant(
    *, user, amount: Decimal, reason: str, operator=None, idempotency_key: str | None = None
) -> Posting:
    """Operator or sign-up credit: from the grants account into the wallet."""
    return ledger_post(
        kind=LedgerTransaction.Kind.GRANT,
        idempotency_key=idempotency_key or f"grant:{uuid.uuid4()}",
        entries=[(system_account(AccountKind.GRANTS), -amount), (wallet_for(user), amount)],
        memo=reason,
        created_by=operator,
    )


def credit_refund(*, user, amount: Decimal, reason: str, operator=None) -> Posting:
    """Money back to the payer: out of the wallet (never below zero) into payment clearing."""
    return ledger_post(
        kind=LedgerTransaction.Kind.REFUND,
        idempotency_key=f"refund:{uuid.uuid4()}",
        entries=[
            (wallet_for(user), -amount),
            (system_account(AccountKind.PAYMENT_CLEARING), amount),
        ],
        memo=reason,
        created_by=operator,
    )
