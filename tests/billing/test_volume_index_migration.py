"""billing/0015: the key's index on charges becomes the key's and month's, and the ledger's
credit kinds get an index of their own. Migrated back and forth on the suite's own
database (SQLite through Django's operations, PostgreSQL through the migration's own
CONCURRENTLY statements), the tables end with the same indexes either way."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.schema import index_condition, migrate_to, migrate_to_latest, table_indexes

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("billing", "0014_webhook_secret_previous_db_default")


def indexed(table: str) -> dict[str, tuple]:
    return {
        name: (tuple(c["columns"]), c["unique"], c["foreign_key"])
        for name, c in table_indexes(table).items()
        if not c["primary_key"]
    }


def test_the_key_and_credit_kinds_indexes_migrate_both_ways():
    charge, txn = indexed("billing_charge"), indexed("billing_ledgertransaction")
    on_key = sorted(v for v in charge.values() if v[0][0] == "api_key_id")
    assert on_key == [(("api_key_id",), False, True), (("api_key_id", "created_at"), False, False)]
    assert charge["charge_key_created"] == (("api_key_id", "created_at"), False, False)
    assert txn["ledgertxn_credit_kinds"] == (("created_at",), False, False)
    if connection.vendor == "postgresql":
        assert index_condition("ledgertxn_credit_kinds") == (
            "((kind)::text = ANY ((ARRAY['grant'::character varying, 'refund'::character "
            "varying, 'reversal'::character varying])::text[]))"
        )
    try:
        migrate_to(BEFORE)
        before = indexed("billing_charge")
        assert "charge_key_created" not in before
        assert "ledgertxn_credit_kinds" not in indexed("billing_ledgertransaction")
        assert (("api_key_id",), False, False) in before.values()  # the key's own index
    finally:
        migrate_to_latest()
    assert (indexed("billing_charge"), indexed("billing_ledgertransaction")) == (charge, txn)
