"""Hot-path SQL on PostgreSQL: prepared statements, and model instances built from one row.

A few statements run on every API call (a charge's reservation and settlement, a job's
claim). On two cores the ORM's Python around each one (compiling the query, building the
instances) costs more than the round trip, so those statements are written once as SQL,
prepared per connection, and their rows are turned back into the same model instances the
ORM would have built (``JoinedRow``). Each caller keeps an ORM path for SQLite, and a test
runs both on PostgreSQL and requires the same rows and instances.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from decimal import Decimal

import orjson
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import JSONField, Model
from django.db.models.functions import Now

_prepared_cursor_class = None


def prepared_row(sql: str, params: list, *, all_rows: bool = False):
    """Run ``sql`` as a prepared statement and return its first row (None when it has none;
    with ``all_rows``, the list of every row: ``prepared_rows``).

    Django's cursors bind parameters on the client (the query travels as text, and the
    server parses and plans it on every call); these statements run on every call, so they
    are parsed and planned once per connection instead (psycopg's server-side binding with
    ``prepare=True``; Django's own cursors never prepare, so the connection's threshold is
    raised only to let this one cursor do it). What Django's cursor wrapper gives is kept
    (database errors become ``django.db`` errors, a broken atomic block refuses it, it is
    logged in ``connection.queries`` when queries are logged, and an execute wrapper sees
    it, through the wrapper itself), without the wrapper's per-call layers when no execute
    wrapper is installed: ~0.04-0.08 ms of client CPU per charge (two statements). Every
    parameter must be typed in ``sql`` (``%s::uuid``): a prepared statement's parameter
    types are fixed when it is parsed. A pooler in transaction mode must keep prepared
    statements per server connection (PgBouncer >= 1.21 with ``max_prepared_statements``),
    or connect directly.
    """
    db = connections[DEFAULT_DB_ALIAS]  # once: each ``connection.x`` is a thread-local lookup
    pg = _prepared_connection(db)
    started = time.monotonic()
    if db.execute_wrappers:  # something watches the queries: through Django's cursor wrapper
        with db.make_cursor(_prepared_cursor_class(pg)) as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall() if all_rows else cursor.fetchone()
    else:  # what that wrapper does around a query, without its per-call layers
        db.validate_no_broken_transaction()
        with db.wrap_database_errors, _prepared_cursor_class(pg) as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall() if all_rows else cursor.fetchone()
    _log_query(db, sql, params, started)
    return rows


def prepared_pipeline(statements: list[tuple[str, list]]) -> list:
    """Each statement's first row (or None), the statements prepared as ``prepared_row``
    prepares them and sent together, one round trip for all (psycopg's pipeline mode).

    Outside a transaction they run as one implicit transaction, committed after the last
    (the protocol's Sync): a later statement sees what an earlier one wrote and what it
    reads is what commits; when one fails, none of them is committed and its error is
    raised (as a ``django.db`` error). Inside a caller's transaction they are part of it.
    """
    db = connections[DEFAULT_DB_ALIAS]
    pg = _prepared_connection(db)
    started = time.monotonic()
    with db.wrap_database_errors:
        cursors = [_prepared_cursor_class(pg) for _ in statements]
        with pg.pipeline():
            for cursor, (sql, params) in zip(cursors, statements, strict=True):
                cursor.execute(sql, params)
        try:
            rows = [cursor.fetchone() for cursor in cursors]
        finally:
            for cursor in cursors:
                cursor.close()
    for sql, params in statements:
        _log_query(db, sql, params, started)
    return rows


def _prepared_connection(db):
    """``db``'s psycopg connection, checked and connected, set to prepare what is asked to."""
    global _prepared_cursor_class
    if _prepared_cursor_class is None:
        import psycopg

        class PreparedCursor(psycopg.Cursor):
            def execute(self, query, params=None, *, prepare=None, binary=None):
                return super().execute(query, params, prepare=True, binary=binary)

        _prepared_cursor_class = PreparedCursor
    # What Django's own cursor() does first: a kept connection's health check (once per
    # request or task, CONN_HEALTH_CHECKS), so a database restart costs a reconnect here
    # too, not an error on the first statement after it.
    db.close_if_health_check_failed()
    db.ensure_connection()
    pg = db.connection
    if pg.prepare_threshold is None:  # Django's default: psycopg then never prepares
        pg.prepare_threshold = 2**31 - 1  # only prepare=True prepares
    return pg


def _log_query(db, sql: str, params: list, started: float) -> None:
    if db.queries_logged:
        db.queries_log.append(
            {
                "sql": db.ops.compose_sql(sql, params),
                "time": f"{time.monotonic() - started:.3f}",
            }
        )


# Joined into a write's FROM clause (``FROM {UNFLUSHED_COMMIT}``), this lets the statement's
# own transaction commit without waiting for its WAL fsync: set_config(..., true) holds for
# that transaction only, never for the session. For writes that a later synchronous commit
# makes durable with it (WAL is flushed in order) and whose loss in a crash is harmless.
# Never inside a caller's transaction (``connection.in_atomic_block``): there it would reach
# that transaction's own commit.
UNFLUSHED_COMMIT = "(SELECT set_config('synchronous_commit', 'off', true)) AS unflushed_commit"


def prepared_rows(sql: str, params: list) -> list[tuple]:
    """``prepared_row``, every row."""
    return prepared_row(sql, params, all_rows=True)


# JSON columns on the hot paths (a job's result: ~20 kB of detections, written by every
# finish and read back by every answer) are encoded and decoded by orjson instead of the
# json module Django uses: the same JSON text and the same Python values (both write the
# shortest float that reads back exactly and read floats correctly rounded), in about a
# tenth of the time (a 95-detection result: json.dumps 0.36 ms, json.loads 0.20 ms here).
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS  # int keys become strings, as json.dumps makes them


def _orjson_dumps(value) -> bytes:
    return orjson.dumps(value, option=_ORJSON_OPTIONS)


def db_value(field, value):
    """``field.get_db_prep_save(value)``, a plain JSONField's value encoded by orjson."""
    if isinstance(field, JSONField) and field.encoder is None and value is not None:
        from psycopg.types.json import Jsonb

        return Jsonb(value, dumps=_orjson_dumps)
    return field.get_db_prep_save(value, connection)


def _json_from_db(value, expression, connection):
    """JSONField.from_db_value for a field without a decoder, decoding with orjson."""
    if value is None:
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:  # as Django: a value that is not JSON is returned as is
        return value


def _fast_converters(field, functions: list) -> list:
    if isinstance(field, JSONField) and field.decoder is None:
        return [_json_from_db if f == field.from_db_value else f for f in functions]
    return functions


# A row as PostgreSQL's driver returned it, carried to another process (a finished job's
# answer, from its worker to the waiting web process: playground.events) and read back as
# the same Python values: JSON with each value's type beside it. The driver's types on
# these rows (JSON columns arrive as text); anything else is refused, never guessed.
_ROW_TYPES = {str: "s", int: "i", float: "f", bool: "b", type(None): "n"}
_ROW_ENCODE = {uuid.UUID: ("u", str), datetime: ("t", datetime.isoformat), Decimal: ("d", str)}
_ROW_DECODE = {"u": uuid.UUID, "t": datetime.fromisoformat, "d": Decimal}


def row_encode(row) -> bytes:
    """``row`` (a tuple of str, int, float, bool, None, UUID, aware datetime, Decimal) as
    bytes that ``row_decode`` reads back equal; TypeError for any other value."""
    kinds, values = [], []
    for value in row:
        kind = _ROW_TYPES.get(type(value))
        if kind is None:
            kind, encode = _ROW_ENCODE.get(type(value), (None, None))
            if kind is None or (kind == "t" and value.tzinfo is None):
                raise TypeError(f"a row value of type {type(value).__name__} cannot be carried")
            value = encode(value)
        kinds.append(kind)
        values.append(value)
    return orjson.dumps({"k": "".join(kinds), "r": values})


def row_decode(data: bytes) -> tuple:
    """The row ``row_encode`` wrote; ValueError when ``data`` is not one."""
    try:
        carried = orjson.loads(data)
        kinds, values = carried["k"], carried["r"]
        if len(kinds) != len(values):
            raise ValueError("kinds and values differ in length")
        return tuple(
            _ROW_DECODE[kind](value) if kind in _ROW_DECODE else value
            for kind, value in zip(kinds, values, strict=True)
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ArithmeticError) as exc:
        raise ValueError(f"not a carried row: {exc}") from None


_INSERT_SQL: dict[tuple[type[Model], tuple[str, ...]], str] = {}


class _DatabaseClock(Now):
    """``DB_NOW``: a field's value that ``prepared_insert`` writes as the database's clock
    (and the ORM's ``save`` too, as the ``Now()`` it is, without reading it back)."""

    def __repr__(self) -> str:
        return "DB_NOW"


# A DateTimeField given this is written as the statement's time on the database's clock
# (``statement_timestamp()``) and read back into the instance: the same clock on every
# machine, where each machine's own may be off (a job's queue wait, from the web's clock to
# a worker's, read 0 or hours on a skewed one; session 45).
DB_NOW = _DatabaseClock()


def prepared_insert(instance: Model) -> Model:
    """Insert a new ``instance`` as ``instance.save(force_insert=True)`` does, as one
    prepared statement: each field's ``pre_save`` (``auto_now_add``...) and database value,
    every column named, nothing read back but the fields given ``DB_NOW`` (the database's
    clock). For a model whose primary key is set in Python
    (a UUID default) and none of whose columns the database computes; no ``pre_save`` or
    ``post_save`` signal is sent, so only for models no receiver listens to. The columns'
    own types type the parameters, as in the ORM's INSERT (a text too long for its column
    is an error, not cut)."""
    model = type(instance)
    fields = model._meta.local_concrete_fields
    clocked = tuple(f.attname for f in fields if getattr(instance, f.attname, None) is DB_NOW)
    sql = _INSERT_SQL.get((model, clocked))
    if sql is None:
        if any(field.db_returning for field in fields):
            raise TypeError(f"{model.__name__} has columns the database computes")
        quote = connection.ops.quote_name
        columns = ", ".join(quote(field.column) for field in fields)
        placeholders = ", ".join(
            "statement_timestamp()" if field.attname in clocked else "%s" for field in fields
        )
        returned = ", ".join(quote(f.column) for f in fields if f.attname in clocked) or "1"
        sql = _INSERT_SQL[(model, clocked)] = (
            f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({placeholders})"
            f" RETURNING {returned}"
        )
    instance._prepare_related_fields_for_save(operation_name="save")
    values = [
        db_value(field, field.pre_save(instance, True))
        for field in fields
        if field.attname not in clocked
    ]
    row = prepared_row(sql, values)
    for attname, value in zip(clocked, row if clocked else (), strict=True):
        setattr(instance, attname, value)
    instance._state.adding = False
    instance._state.db = connection.alias
    return instance


class JoinedRow:
    """The columns of several models in one SELECT, and those models built back from a row.

    ``JoinedRow((Job, "j"), (ModelCard, "c"))`` gives ``select_list`` ("j"."id", ...,
    "c"."id", ...) for a query that names those aliases, and ``build(row)`` the instances,
    with each field's database converters applied as the ORM applies them (a JSON column
    arrives as text and is decoded by its field). A model whose primary key is NULL in the
    row (the far side of a LEFT JOIN) comes back as None.
    """

    def __init__(self, *parts: tuple[type[Model], str]) -> None:
        self.parts = parts
        self._cached_plan = None

    @property
    def width(self) -> int:
        """How many columns ``select_list`` names."""
        return sum(len(model._meta.concrete_fields) for model, _ in self.parts)

    @property
    def select_list(self) -> str:
        quote = connection.ops.quote_name
        return ", ".join(
            f"{alias}.{quote(field.column)}"
            for model, alias in self.parts
            for field in model._meta.concrete_fields
        )

    def _plan(self) -> list:
        if self._cached_plan is None:
            plan = []
            for model, alias in self.parts:
                fields = model._meta.concrete_fields
                converters = []
                for field in fields:
                    col = field.get_col(alias)
                    functions = connection.ops.get_db_converters(col) + col.get_db_converters(
                        connection
                    )
                    converters.append((col, _fast_converters(field, functions)))
                pk_index = fields.index(model._meta.pk)
                plan.append((model, [f.attname for f in fields], converters, pk_index))
            self._cached_plan = plan
        return self._cached_plan

    def build(self, row) -> list[Model | None]:
        instances, start = [], 0
        for model, attnames, converters, pk_index in self._plan():
            values = list(row[start : start + len(attnames)])
            start += len(attnames)
            if values[pk_index] is None:
                instances.append(None)
                continue
            for i, (col, functions) in enumerate(converters):
                for convert in functions:
                    values[i] = convert(values[i], col, connection)
            instances.append(model.from_db(connection.alias, attnames, values))
        return instances
