"""A job's result compressed with LZ4 on PostgreSQL (where the server has it).

Every finish writes a result (a ~20 kB detections list for a busy image) and every answer
reads it back. Past ~2 kB PostgreSQL compresses a value; its default, pglz, took 0.34 ms to
store such a list against LZ4's 0.05 ms (2,000 inserts on the Xeon of session 16), a
third of a millisecond of every call's finish. PostgreSQL >= 14 built with LZ4 (Debian's
and most packages) offers it as a column's compression; without it the column keeps its
default. Only values written afterwards are compressed with LZ4; older ones read as before.
"""

from django.db import migrations

TABLE_COLUMNS = (("playground_job", "result"),)


def _lz4_available(schema_editor) -> bool:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression'"
            " AND 'lz4' = ANY(enumvals)"
        )
        return cursor.fetchone() is not None


def _set(schema_editor, method: str) -> None:
    if schema_editor.connection.vendor != "postgresql" or not _lz4_available(schema_editor):
        return
    for table, column in TABLE_COLUMNS:
        schema_editor.execute(
            f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}", params=None
        )


def to_lz4(apps, schema_editor):
    _set(schema_editor, "lz4")


def to_default(apps, schema_editor):
    _set(schema_editor, "default")


class Migration(migrations.Migration):
    dependencies = [("playground", "0011_runtime_precision_int8")]

    operations = [migrations.RunPython(to_lz4, to_default, elidable=False)]
