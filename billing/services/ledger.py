"""The double-entry ledger: the only code that moves money.

Each movement is one ``LedgerTransaction`` whose entries sum to zero, posted under an
idempotency key. Account rows are locked with ``SELECT ... FOR UPDATE`` in primary-key
order (so two transactions touching the same accounts cannot deadlock) and their cached
balances are updated in the same database transaction; the wallet's CHECK constraint
refuses a negative balance even if this code were wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Round

from billing.models import MONEY, AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction
from catalog.errors import ApplicationError
from catalog.pricing import format_usd, round_usd

INSUFFICIENT_CREDITS = (
    "Your wallet holds {balance}; this call costs {cost}. Top up credit to continue."
)
UNBALANCED = "A ledger transaction must sum to zero; got {total}."


class InsufficientCredits(ApplicationError):
    def __init__(self, *, balance: Decimal, cost: Decimal):
        super().__init__(
            INSUFFICIENT_CREDITS.format(balance=format_usd(balance), cost=format_usd(cost)),
            code="insufficient_credits",
            status=402,
            type="insufficient_credits",
            extra={"balance": f"{balance.normalize():f}", "cost": f"{cost.normalize():f}"},
        )


@dataclass(frozen=True)
class Posting:
    transaction: LedgerTransaction
    created: bool


def system_account(kind: str) -> LedgerAccount:
    account, _ = LedgerAccount.objects.get_or_create(kind=kind, user=None)
    return account


def wallet_for(user) -> LedgerAccount:
    account, _ = LedgerAccount.objects.get_or_create(kind=AccountKind.WALLET, user=user)
    return account


def ledger_post(
    *,
    kind: str,
    idempotency_key: str,
    entries: list[tuple[LedgerAccount, Decimal]],
    memo: str = "",
    created_by=None,
    reverses: LedgerTransaction | None = None,
) -> Posting:
    """Post one balanced transaction, once per key.

    Raises InsufficientCredits (and posts nothing) if a wallet would go below zero.
    """
    entries = [(account, round_usd(Decimal(amount))) for account, amount in entries]
    entries = [(account, amount) for account, amount in entries if amount != 0]
    total = sum((amount for _, amount in entries), Decimal(0))
    if total != 0:
        raise ValueError(UNBALANCED.format(total=total))

    with transaction.atomic():
        existing = LedgerTransaction.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return Posting(existing, created=False)
        ids = sorted({account.pk for account, _ in entries})
        locked = {
            a.pk: a
            for a in LedgerAccount.objects.select_for_update().filter(pk__in=ids).order_by("pk")
        }
        # Look again now that we hold the locks: the same key may have been posted while we
        # waited for them, and must answer as a replay, not be judged against the balance
        # that posting left (a duplicate request would otherwise get a spurious 402).
        existing = LedgerTransaction.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return Posting(existing, created=False)
        deltas: dict[int, Decimal] = {}
        for account, amount in entries:
            deltas[account.pk] = deltas.get(account.pk, Decimal(0)) + amount
        for pk, delta in deltas.items():
            account = locked[pk]
            if account.kind == AccountKind.WALLET and account.balance + delta < 0:
                raise InsufficientCredits(balance=account.balance, cost=-delta)
        try:
            with transaction.atomic():
                txn = LedgerTransaction.objects.create(
                    kind=kind,
                    idempotency_key=idempotency_key,
                    memo=memo[:300],
                    created_by=created_by,
                    reverses=reverses,
                )
        except IntegrityError:
            # The same key won a race on another connection: that posting is the one.
            return Posting(LedgerTransaction.objects.get(idempotency_key=idempotency_key), False)
        LedgerEntry.objects.bulk_create(
            LedgerEntry(transaction=txn, account_id=account.pk, amount=amount)
            for account, amount in entries
        )
        for pk, delta in deltas.items():
            # Relative update (never a stale absolute value), rounded to the ledger's places:
            # SQLite keeps decimals as binary floats, so 5 - 4.9 - 0.1 would land a hair below
            # zero there and trip the CHECK. On PostgreSQL (numeric) the ROUND is a no-op.
            LedgerAccount.objects.filter(pk=pk).update(
                balance=Round(F("balance") + delta, MONEY["decimal_places"])
            )
    return Posting(txn, created=True)


def ledger_reverse(*, original: LedgerTransaction, memo: str, created_by=None) -> Posting:
    """Undo a transaction with its mirror image; the original stays as it was."""
    entries = [
        (entry.account, -entry.amount) for entry in original.entries.select_related("account")
    ]
    return ledger_post(
        kind=LedgerTransaction.Kind.REVERSAL,
        idempotency_key=f"reversal:{original.pk}",
        entries=entries,
        memo=memo,
        created_by=created_by,
        reverses=original,
    )
