"""Reading the suite database's schema, and migrating it, for the migrations' own tests."""

from __future__ import annotations

from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate_to(target: tuple[str, str]) -> None:
    """Migrate the suite's database to ``target`` (app, migration), forwards or back."""
    MigrationExecutor(connection).migrate([target])


def migrate_to_latest() -> None:
    """Migrate the suite's database forwards to every app's latest migration. A test that
    went back to before the migration it checks ends here, not at that migration: going
    back unapplied the app's later ones too, and the tests after it need them."""
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def table_indexes(table: str) -> dict[str, dict]:
    """A table's indexes and constraints by name: columns, unique, foreign key, index,
    primary key."""
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, table)
    return {
        name: {
            "columns": c["columns"],
            "unique": c["unique"],
            "foreign_key": c["foreign_key"] is not None,
            "index": c["index"],
            "primary_key": c["primary_key"],
        }
        for name, c in found.items()
    }


def index_condition(name: str) -> str | None:
    """The WHERE of a PostgreSQL index ("" when it has none; None on other databases)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [name])
        (definition,) = cursor.fetchone()
    return definition.partition(" WHERE ")[2]
