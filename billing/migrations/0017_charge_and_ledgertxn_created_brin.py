"""BRIN indexes on ``created_at`` for the admin's charge and ledger transaction lists.

Both lists show the newest rows first, by default those of the last 7 days (their
"Created" filter, billing/admin.py; "All time" is one click away). Without an index on
``created_at`` each view read and sorted every row: 3.6 s at 1.5 million charges, 1.5 s
at 2.5 million transactions. A B-tree would take an entry for every charge (and another
when it settles: not a HOT update) and for both transactions of every call, on the hot
path. A BRIN index keeps one summary (the least and the greatest ``created_at``) per 32
pages of the table: a row written into a range still being filled (the table's end:
both tables are appended to in time order) or into a range whose summary already covers
its ``created_at`` writes nothing to it, and a finished range is summarized once, by
autovacuum (``autosummarize``). ``created_at`` never changes, so it makes no update less
HOT either. Reading "the last 7 days" reads the ranges whose summary reaches into the
week, not the year.

PostgreSQL only (SQLite has no BRIN), so not in the models' ``Meta.indexes``: SQLite
rebuilds a table for most changes, re-creating every index Meta declares, and a BRIN index
there would fail the next migration of either table. Built CONCURRENTLY (charges go on
meanwhile; a build that failed half-way leaves an invalid index, dropped first when the
migration runs again). Not atomic, for CONCURRENTLY. Rolling back is
``migrate billing 0016``.
"""

from django.db import migrations

from catalog.migration_ops import OnPostgreSQL

NEW = {
    "charge_created_brin": "billing_charge",
    "ledgertxn_created_brin": "billing_ledgertransaction",
}


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("billing", "0016_apikey_allowed_models_protected"),
    ]

    operations = [
        OnPostgreSQL(
            [],  # nothing in the state, nothing elsewhere
            sql=[
                *(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"' for name in NEW),
                *(
                    f'CREATE INDEX CONCURRENTLY "{name}" ON "{table}" USING brin'
                    ' ("created_at") WITH (pages_per_range = 32, autosummarize = on)'
                    for name, table in NEW.items()
                ),
            ],
            reverse_sql=[f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"' for name in NEW],
        ),
    ]
