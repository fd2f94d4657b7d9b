"""Reads of accounts' money that span rows: balances the ledger does not cache."""

from __future__ import annotations

from decimal import Decimal

from django.db import connection
from django.db.models import QuerySet, Sum

from billing.models import AccountKind, LedgerAccount, LedgerEntry


def entries_total(entries: QuerySet[LedgerEntry]) -> Decimal:
    """The exact sum of some entries' amounts."""
    if connection.vendor == "sqlite":
        # SQLite's SUM() of decimals is a float sum: add them up exactly in Python.
        return sum(entries.values_list("amount", flat=True), Decimal(0))
    return entries.aggregate(total=Sum("amount"))["total"] or Decimal(0)


def account_balance(account: LedgerAccount) -> Decimal:
    """What an account holds: a wallet caches it, any other account's is summed.

    System accounts and holds keep no cached balance so that no charge has to update a
    shared row, or a row its user's other charges wait for (``billing.models``); reading
    one costs an indexed sum instead.
    """
    if account.is_cached:
        return Decimal(account.balance)
    return entries_total(LedgerEntry.objects.filter(account=account))


def system_balances() -> dict[str, Decimal]:
    """Every system account's balance by kind (0 for a kind with no account yet)."""
    balances = {k.value: Decimal(0) for k in AccountKind if k != AccountKind.WALLET}
    for account in LedgerAccount.objects.filter(user__isnull=True):
        balances[account.kind] = account_balance(account)
    # Holds belong to users: their total is the sum of all the users' holds entries.
    balances[AccountKind.HOLDS] += entries_total(
        LedgerEntry.objects.filter(account__kind=AccountKind.HOLDS, account__user__isnull=False)
    )
    return balances
