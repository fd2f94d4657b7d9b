"""The double-entry ledger: the only code that moves money.

Each movement is one ``LedgerTransaction`` whose entries sum to zero, posted under an
idempotency key.

Locking, for many users paying at once:

- Only a user's wallet caches a balance, so only wallets are locked:
  ``SELECT ... FOR NO KEY UPDATE`` in primary-key order, in one statement, then one UPDATE.
  Two transactions touching the same wallets queue in the same order and cannot deadlock;
  transactions of different users share no locked row at all.
- Every other account (a user's holds; revenue, payable, fees, clearing, grants) is never
  locked or updated: an entry into it is an INSERT, whose foreign-key check takes only
  ``FOR KEY SHARE`` on the account row, a lock that any number of transactions hold
  together. Its balance is the sum of its entries (``billing.selectors.account_balance``).
  This is the hot-account problem: a cached system balance would make every charge of
  every user wait for one row, and a cached holds balance made a user's settlements wait
  for their reservations (``billing.models``).
- ``NO KEY UPDATE`` rather than ``UPDATE``: the balance is not a key, and the weaker lock
  does not conflict with the ``KEY SHARE`` that inserting an entry takes on its account.
- The order everywhere: the caller's own row first (the charge, the top-up, the API key),
  then the wallets in primary-key order. Nothing locks a wallet and then another row.

The wallet's CHECK constraint refuses a negative balance even if this code were wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Round

from billing.models import (
    MONEY,
    USER_ACCOUNT_KINDS,
    AccountKind,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
)
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
    """A shared account; its balance is not cached (NULL): see the module's docstring."""
    if kind in USER_ACCOUNT_KINDS:
        raise ValueError(f"{kind} accounts belong to a user; use user_accounts().")
    account, _ = LedgerAccount.objects.get_or_create(
        kind=kind, user=None, defaults={"balance": None}
    )
    return account


def _user_account(kind: str, user_id: int) -> LedgerAccount:
    # get_or_create: a concurrent first charge of the same user may create it too; the
    # unique (user, kind) constraint makes one of them win, the other reads it. Only a
    # wallet caches its balance (NULL otherwise: see billing.models).
    account, _ = LedgerAccount.objects.get_or_create(
        kind=kind,
        user_id=user_id,
        defaults={"balance": Decimal(0) if kind == AccountKind.WALLET else None},
    )
    return account


def wallet_for(user) -> LedgerAccount:
    return _user_account(AccountKind.WALLET, user.pk)


def holds_for(user) -> LedgerAccount:
    """The user's own holds: what their reserved charges hold back from the wallet.

    Its balance is not cached: ``billing.selectors.account_balance`` sums its entries.
    """
    return _user_account(AccountKind.HOLDS, user.pk)


def ledger_accounts(user, *system_kinds: str) -> dict[str, LedgerAccount]:
    """The user's wallet and holds and the named system accounts, by kind, in one query
    once they all exist (created on first use). Not locked: ``ledger_post`` locks them.

    ``user`` may be a user or its primary key. One query, not one per account: this runs
    on every charge, and every round trip to the database counts against charges/s.
    """
    user_id = getattr(user, "pk", user)
    found = {
        a.kind: a
        for a in LedgerAccount.objects.filter(
            Q(user_id=user_id) | Q(user__isnull=True, kind__in=system_kinds)
        )
    }
    for kind in USER_ACCOUNT_KINDS:
        if kind not in found:
            found[kind] = _user_account(kind, user_id)
    for kind in system_kinds:
        if kind not in found:
            found[kind] = system_account(kind)
    return found


def user_accounts(user) -> tuple[LedgerAccount, LedgerAccount]:
    """The user's (wallet, holds), created on first use; one query once both exist."""
    found = ledger_accounts(user)
    return found[AccountKind.WALLET], found[AccountKind.HOLDS]


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

    deltas: dict[int, Decimal] = {}
    for account, amount in entries:
        if account.is_cached:
            deltas[account.pk] = deltas.get(account.pk, Decimal(0)) + amount

    # No savepoint when called inside a transaction (charges are): a savepoint is two more
    # round trips, and nothing here needs one. A refusal (402) leaves the block normally,
    # having only read, and is raised after it, so the caller's transaction stays usable.
    refused: InsufficientCredits | None = None
    with transaction.atomic(savepoint=False):
        locked: dict[int, LedgerAccount] = {}
        if deltas:
            # The wallets only (the accounts that cache a balance). One statement, rows
            # locked in pk order (PostgreSQL locks them as the sorted rows come out): the
            # one lock order that keeps concurrent postings deadlock-free.
            locked = {
                a.pk: a
                for a in LedgerAccount.objects.select_for_update(no_key=True)
                .filter(pk__in=sorted(deltas))
                .order_by("pk")
            }
        # Looked up once we hold the locks: the same key may have been posted while we
        # waited for them, and must answer as a replay, not be judged against the balance
        # that posting left (a duplicate request would otherwise get a spurious 402).
        existing = LedgerTransaction.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return Posting(existing, created=False)
        for pk, delta in deltas.items():
            account = locked[pk]
            if account.kind == AccountKind.WALLET and account.balance + delta < 0:
                refused = InsufficientCredits(balance=account.balance, cost=-delta)
        if refused is None:
            posting = _write(
                kind=kind,
                idempotency_key=idempotency_key,
                entries=entries,
                deltas=deltas,
                locked=bool(locked),
                memo=memo,
                created_by=created_by,
                reverses=reverses,
            )
    if refused is not None:
        raise refused
    return posting


def _write(
    *,
    kind: str,
    idempotency_key: str,
    entries: list[tuple[LedgerAccount, Decimal]],
    deltas: dict[int, Decimal],
    locked: bool,
    memo: str,
    created_by,
    reverses: LedgerTransaction | None,
) -> Posting:
    """Insert the transaction and its entries, then update the locked accounts' caches."""
    new = LedgerTransaction(
        kind=kind,
        idempotency_key=idempotency_key,
        memo=memo[:300],
        created_by=created_by,
        reverses=reverses,
    )
    if locked:
        # Every posting of one key moves the same user's accounts, so a concurrent posting
        # of this key waited for our locks and then found it: no savepoint (a round trip
        # each way) is needed around the insert.
        new.save(force_insert=True)
    else:
        try:
            with transaction.atomic():
                new.save(force_insert=True)
        except IntegrityError:
            # The same key won a race on another connection: that posting is the one.
            existing = LedgerTransaction.objects.get(idempotency_key=idempotency_key)
            return Posting(existing, created=False)
    LedgerEntry.objects.bulk_create(
        LedgerEntry(transaction=new, account_id=account.pk, amount=amount)
        for account, amount in entries
    )
    if deltas:
        # One UPDATE for all the locked accounts. Relative (never a stale absolute value),
        # rounded to the ledger's places: SQLite keeps decimals as binary floats, so
        # 5 - 4.9 - 0.1 would land a hair below zero there and trip the CHECK. On
        # PostgreSQL (numeric) the ROUND is a no-op.
        change = Case(
            *(When(pk=pk, then=Value(delta)) for pk, delta in deltas.items()),
            output_field=LedgerAccount._meta.get_field("balance"),
        )
        LedgerAccount.objects.filter(pk__in=list(deltas)).update(
            balance=Round(F("balance") + change, MONEY["decimal_places"])
        )
    return Posting(new, created=True)


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
