"""Two ledger reads whose cost grew with the whole history (a year of data, session 42).

- ``charge_key_created`` (api_key_id, created_at) replaces the key's plain index: a call
  on a key with a monthly spend cap sums the key's charges of this month, under the key's
  lock, and with the key's index alone PostgreSQL read every charge the key ever made
  (270 ms per call for a key with 300,000 charges; its other calls queued behind it). The
  same entries (created_at never changes), in the order the month's sum reads them.
- ``ledgertxn_credit_kinds``: the dashboard lists a wallet's entries whose transaction is
  a grant, a refund or a reversal (``billing/views.py`` ``CREDIT_KINDS``). For a busy
  account PostgreSQL found those transactions first, and with no index on ``kind`` that
  was a scan of every transaction of every user: 154 ms per dashboard view with 2.5
  million transactions. The index holds only those kinds (operators' adjustments,
  sign-up credit): a charge's two transactions (reserve, post or void) add nothing to it.

On PostgreSQL built CONCURRENTLY (charges go on meanwhile; a build that failed half-way
leaves an invalid index, dropped first when the migration runs again), the key's old
index dropped so, and the foreign key kept as it is (Django's own operations would drop
and re-add it, validating every charge under a lock that stops charges). Not atomic, for
CONCURRENTLY. Elsewhere (SQLite) as Django writes them.
"""

import django.db.models.deletion
from django.db import migrations, models

from catalog.migration_ops import OnPostgreSQL

NEW = {
    "charge_key_created": '"billing_charge" ("api_key_id", "created_at")',
    "ledgertxn_credit_kinds": '"billing_ledgertransaction" ("created_at")'
    " WHERE \"kind\" IN ('grant', 'refund', 'reversal')",
}
OLD = "billing_charge_api_key_id_2ef07048"  # Django's name for the key's index (0001)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("billing", "0014_webhook_secret_previous_db_default"),
    ]

    operations = [
        OnPostgreSQL(
            [
                migrations.AlterField(
                    model_name="charge",
                    name="api_key",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        to="billing.apikey",
                    ),
                ),
                migrations.AddIndex(
                    model_name="charge",
                    index=models.Index(fields=["api_key", "created_at"], name="charge_key_created"),
                ),
                migrations.AddIndex(
                    model_name="ledgertransaction",
                    index=models.Index(
                        condition=models.Q(("kind__in", ["grant", "refund", "reversal"])),
                        fields=["created_at"],
                        name="ledgertxn_credit_kinds",
                    ),
                ),
            ],
            sql=[
                *(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"' for name in NEW),
                *(f'CREATE INDEX CONCURRENTLY "{name}" ON {on}' for name, on in NEW.items()),
                f'DROP INDEX CONCURRENTLY IF EXISTS "{OLD}"',
            ],
            reverse_sql=[
                f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{OLD}" ON "billing_charge" ("api_key_id")',
                *(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"' for name in NEW),
            ],
        ),
    ]
