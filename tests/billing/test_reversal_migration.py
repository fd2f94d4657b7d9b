"""billing/0010: a reversal is unique where there is one. Migrated back and forth on the
suite's own database (SQLite through Django's operations, PostgreSQL through the
migration's two statements), the table ends with the same constraints either way."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

TABLE = "billing_ledgertransaction"
BEFORE = ("billing", "0009_charge_settle_in_finish")
AFTER = ("billing", "0010_reversal_index_where_set")


def on_reverses_id() -> dict[str, dict]:
    """The table's constraints and indexes over reverses_id alone, by name."""
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, TABLE)
    return {
        name: {"unique": c["unique"], "foreign_key": c["foreign_key"] is not None}
        for name, c in found.items()
        if c["columns"] == ["reverses_id"]
    }


def partial_condition(name: str) -> str | None:
    """The WHERE of a PostgreSQL index (None where the vendor does not say)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [name])
        (definition,) = cursor.fetchone()
    return definition.partition(" WHERE ")[2]


def migrate_to(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([target])


def test_the_reversal_index_holds_only_reversals_and_migrates_both_ways():
    after = on_reverses_id()
    assert after["ledgertxn_reversed_once"] == {"unique": True, "foreign_key": False}
    uniques = [name for name, c in after.items() if c["unique"]]
    assert uniques == ["ledgertxn_reversed_once"]  # the whole-table one is gone
    assert [c for c in after.values() if c["foreign_key"]]  # the foreign key stays
    if connection.vendor == "postgresql":
        assert partial_condition("ledgertxn_reversed_once") == "(reverses_id IS NOT NULL)"
    try:
        migrate_to(BEFORE)
        before = on_reverses_id()
        assert "ledgertxn_reversed_once" not in before
        assert [c["unique"] for c in before.values() if not c["foreign_key"]] == [True]
    finally:
        migrate_to(AFTER)
    assert on_reverses_id() == after
