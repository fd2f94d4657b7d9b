"""Move the pooled holds account's balance to each user's own holds account.

Before 0002 every reservation moved money into one system HOLDS account, a row that every
charge of every user locked and updated. Each user now has their own holds account; the
charges still reserved here get their hold moved there by one balanced TRANSFER, so
settling them later releases the user's own account. Then every system account's cached
balance becomes NULL (0004 requires it): from now on it is the sum of its entries.

Its own migration (not with 0002/0004's schema changes): PostgreSQL refuses ALTER TABLE in
a transaction that has pending deferred foreign-key checks from the rows written here.
"""

from collections import defaultdict
from decimal import Decimal

from django.db import migrations


def move_pooled_holds(apps, schema_editor):
    LedgerAccount = apps.get_model("billing", "LedgerAccount")
    LedgerTransaction = apps.get_model("billing", "LedgerTransaction")
    LedgerEntry = apps.get_model("billing", "LedgerEntry")
    Charge = apps.get_model("billing", "Charge")
    pooled = LedgerAccount.objects.filter(kind="holds", user__isnull=True).first()
    totals: dict[int, Decimal] = defaultdict(Decimal)
    # Summed in Python: SQLite's SUM() of decimals is a float sum.
    for user_id, amount in Charge.objects.filter(status="reserved", amount__gt=0).values_list(
        "user_id", "amount"
    ):
        totals[user_id] += amount
    if pooled is not None and totals:
        txn = LedgerTransaction.objects.create(
            kind="transfer",
            idempotency_key="migration:billing.0003:per-user-holds",
            memo="Pooled holds moved to each user's holds account",
        )
        moved = Decimal(0)
        for user_id, total in sorted(totals.items()):
            account, _ = LedgerAccount.objects.get_or_create(
                kind="holds", user_id=user_id, defaults={"balance": Decimal(0)}
            )
            LedgerEntry.objects.create(transaction=txn, account=account, amount=total)
            account.balance = (account.balance or Decimal(0)) + total
            account.save(update_fields=["balance"])
            moved += total
        LedgerEntry.objects.create(transaction=txn, account=pooled, amount=-moved)
    LedgerAccount.objects.filter(user__isnull=True).update(balance=None)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0002_per_user_holds"),
    ]

    operations = [
        migrations.RunPython(move_pooled_holds, migrations.RunPython.noop),
    ]
