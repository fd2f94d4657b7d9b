"""A ledger transaction's reversal is unique where there is one, not over every row.

``LedgerTransaction.reverses`` was a one-to-one field: a unique index over every
transaction, though only reversals set it, so each charge's two transactions (reserve,
post) each added a NULL entry to it. It is now a foreign key without an index of its own
and a partial unique index, ``ledgertxn_reversed_once`` (reverses_id IS NOT NULL): the
same rule (a transaction is reversed at most once) and the same lookups, with no entry per
charge. Measured on PostgreSQL with ``bench_charges.py`` (16 clients, paired runs): about
150 bytes less WAL per charge (~3,800 -> ~3,650).

On PostgreSQL the new index is built CONCURRENTLY (charges go on meanwhile; a build that
failed half-way leaves an invalid index, dropped first when the migration runs again),
then the old unique constraint is dropped. Django's own operations would also drop and
re-add the foreign key (the field's class changes), which validates every row of the
ledger under a lock that stops charges while it runs. Elsewhere (SQLite, whose tables are
rebuilt for any such change) they run as Django writes them. Not atomic, for CONCURRENTLY.
"""

import django.db.models.deletion
from django.db import migrations, models

from catalog.migration_ops import OnPostgreSQL

TABLE = "billing_ledgertransaction"
OLD = "billing_ledgertransaction_reverses_id_key"  # PostgreSQL's name for 0001's UNIQUE
NEW = "ledgertxn_reversed_once"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("billing", "0009_charge_settle_in_finish"),
    ]

    operations = [
        OnPostgreSQL(
            [
                migrations.AlterField(
                    model_name="ledgertransaction",
                    name="reverses",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="reversed_by",
                        to="billing.ledgertransaction",
                    ),
                ),
                migrations.AddConstraint(
                    model_name="ledgertransaction",
                    constraint=models.UniqueConstraint(
                        condition=models.Q(("reverses__isnull", False)),
                        fields=("reverses",),
                        name=NEW,
                    ),
                ),
            ],
            sql=[
                f'DROP INDEX CONCURRENTLY IF EXISTS "{NEW}"',
                f'CREATE UNIQUE INDEX CONCURRENTLY "{NEW}" ON "{TABLE}" ("reverses_id")'
                ' WHERE "reverses_id" IS NOT NULL',
                f'ALTER TABLE "{TABLE}" DROP CONSTRAINT IF EXISTS "{OLD}"',
            ],
            reverse_sql=[
                f'ALTER TABLE "{TABLE}" ADD CONSTRAINT "{OLD}" UNIQUE ("reverses_id")',
                f'DROP INDEX "{NEW}"',
            ],
        ),
    ]
