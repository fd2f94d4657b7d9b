"""Migration operations shared by the apps' migrations."""

from __future__ import annotations

from django.db import migrations


class OnPostgreSQL(migrations.SeparateDatabaseAndState):
    """``operations`` for the state and on other databases; ``sql`` on PostgreSQL.

    For index changes on the hot tables (jobs, the ledger), where Django's own operations
    would take locks that stop writes while they run: building an index without
    CONCURRENTLY, or dropping and re-adding a foreign key (which validates every row) when
    only the field's index changes. The migration using it sets ``atomic = False`` when
    ``sql`` holds CONCURRENTLY; its tests migrate it both ways on both databases.
    """

    def __init__(self, operations, sql, reverse_sql):
        super().__init__(state_operations=operations, database_operations=operations)
        self.sql = migrations.RunSQL(sql, reverse_sql)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return self.sql.database_forwards(app_label, schema_editor, from_state, to_state)
        return super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return self.sql.database_backwards(app_label, schema_editor, from_state, to_state)
        return super().database_backwards(app_label, schema_editor, from_state, to_state)
