"""billing/0010: a reversal is unique where there is one. Migrated back and forth on the
suite's own database (SQLite through Django's operations, PostgreSQL through the
migration's own statements), the table ends with the same constraints either way."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.schema import index_condition, migrate_to, migrate_to_latest, table_indexes

pytestmark = pytest.mark.django_db(transaction=True)

TABLE = "billing_ledgertransaction"
BEFORE = ("billing", "0009_charge_settle_in_finish")
AFTER = ("billing", "0010_reversal_index_where_set")


def on_reverses_id() -> dict[str, dict]:
    return {n: c for n, c in table_indexes(TABLE).items() if c["columns"] == ["reverses_id"]}


def test_the_reversal_index_holds_only_reversals_and_migrates_both_ways():
    after = on_reverses_id()
    assert after["ledgertxn_reversed_once"]["unique"]
    uniques = [name for name, c in after.items() if c["unique"]]
    assert uniques == ["ledgertxn_reversed_once"]  # the whole-table one is gone
    assert [c for c in after.values() if c["foreign_key"]]  # the foreign key stays
    if connection.vendor == "postgresql":
        assert index_condition("ledgertxn_reversed_once") == "(reverses_id IS NOT NULL)"
    try:
        migrate_to(BEFORE)
        before = on_reverses_id()
        assert "ledgertxn_reversed_once" not in before
        assert [c["unique"] for c in before.values() if not c["foreign_key"]] == [True]
    finally:
        migrate_to_latest()
    assert on_reverses_id() == after
