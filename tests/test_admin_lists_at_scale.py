"""The admin's lists of the tables written on every call (jobs, charges, ledger
transactions) at a year of data: each shows the last 7 days by default ("Created": the last
24 hours, 7 days, 30 days, or all time), newest first, read on PostgreSQL through a BRIN
index on ``created_at`` (playground/0020, billing/0017) instead of every row sorted (2.5-3.6
s per view at 1.5 million jobs and charges). The page is read from the table alone and its
related rows after it (a join before the sort joined every row), and nothing counts the
whole table besides the window. A search looks at all time unless a window is picked.

Plans are checked on a year of rows made by the database (30,000 per table): on a handful
the planner reads the table (or any index) whole, whatever the list asks."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from PIL import Image

from billing.models import Charge, LedgerTransaction
from billing.services.charges import charge_post, charge_reserve
from playground import services
from playground.models import Job
from tests import factories
from tests.schema import migrate_to, migrate_to_latest, table_indexes

on_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="the planner's plan")

LISTS = {
    Job: "/admin/playground/job/",
    Charge: "/admin/billing/charge/",
    LedgerTransaction: "/admin/billing/ledgertransaction/",
}
BRIN = {
    Job: "job_created_brin",
    Charge: "charge_created_brin",
    LedgerTransaction: "ledgertxn_created_brin",
}
# How old each seeded call is, in hours: inside the last day, the week, the month, the year.
AGES = [1, 3 * 24, 20 * 24, 200 * 24]


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def call(*, card, route, user, hours_ago: float) -> dict:
    """One paid call as the hot path writes it (a job, its charge and the charge's two
    ledger transactions), dated ``hours_ago``: its rows by model."""
    job = services.job_create(card=card, image_bytes=png(), owner=user)
    job_id = uuid.uuid4()
    charge_reserve(job_id=job_id, user=user, card=card, route=route)
    charge = charge_post(job_id=job_id)
    txns = list(LedgerTransaction.objects.filter(idempotency_key__contains=str(job_id)))
    assert len(txns) == 2
    when = timezone.now() - timedelta(hours=hours_ago)
    Job.objects.filter(pk=job.pk).update(created_at=when)
    Charge.objects.filter(pk=charge.pk).update(created_at=when)
    LedgerTransaction.objects.filter(pk__in=[t.pk for t in txns]).update(created_at=when)
    return {Job: [job.pk], Charge: [charge.pk], LedgerTransaction: [t.pk for t in txns]}


@pytest.fixture
def calls(db):
    """A call of each age in AGES (newest first), each by its own user on its own card."""
    made = []
    for hours in AGES:
        user = factories.funded(factories.user(), "10")
        route = factories.route(price=Decimal("0.0002"))
        made.append(call(card=route.card, route=route, user=user, hours_ago=hours))
    return made


def listed(client, model, **params) -> list:
    """The primary keys the list shows, in its order (one page: the tests' rows fit)."""
    response = client.get(LISTS[model], params)
    assert response.status_code == 200
    return [row.pk for row in response.context["cl"].result_list]


def seeded(calls, model, hours: float | None) -> list:
    """The seeded rows of ``model`` at most ``hours`` old (all: None), newest first."""
    return [
        pk
        for age, rows in zip(AGES, calls, strict=True)
        if hours is None or age <= hours
        for pk in rows[model]
    ]


@pytest.mark.parametrize("model", LISTS, ids=lambda m: m.__name__)
@pytest.mark.django_db
def test_each_list_shows_the_last_7_days_newest_first_and_every_window_on_request(
    admin_client, calls, model
):
    for params, hours in [({}, 7 * 24), ({"created": "24h"}, 24), ({"created": "7d"}, 7 * 24),
                          ({"created": "30d"}, 30 * 24), ({"created": "all"}, None)]:  # fmt: skip
        shown = listed(admin_client, model, **params)
        ours = [pk for pk in shown if pk in set(seeded(calls, model, None))]
        expected = seeded(calls, model, hours)
        # A charge's two transactions share their time: their order is the tie-breaker's.
        assert sorted(map(str, ours)) == sorted(map(str, expected)), params
        assert [pk for pk in ours if pk in expected] == ours
        dates = list(model.objects.filter(pk__in=shown).values_list("pk", "created_at"))
        by_pk = dict(dates)
        times = [by_pk[pk] for pk in shown]
        assert times == sorted(times, reverse=True), params  # newest first


@pytest.mark.parametrize("model", LISTS, ids=lambda m: m.__name__)
@pytest.mark.django_db
def test_the_window_is_offered_with_all_time_and_the_default_is_shown_as_chosen(
    admin_client, calls, model
):
    def created_choices(**params):
        response = admin_client.get(LISTS[model], params)
        (spec,) = [
            f
            for f in response.context["cl"].filter_specs
            if getattr(f, "parameter_name", None) == "created"
        ]
        return [
            (c["display"], c["selected"], c["query_string"])
            for c in spec.choices(response.context["cl"])
        ]

    default = created_choices()
    assert [(display, selected) for display, selected, _ in default] == [
        ("Last 24 hours", False), ("Last 7 days", True), ("Last 30 days", False),
        ("All time", False),
    ]  # fmt: skip
    assert default[-1][2] == "?created=all"
    assert [selected for _, selected, _ in created_choices(created="all")] == [
        False, False, False, True,
    ]  # fmt: skip
    # An unknown window is the default one, not an error page or every row.
    assert listed(admin_client, model, created="1y") == listed(admin_client, model)


@pytest.mark.django_db
def test_a_search_looks_at_all_time_unless_a_window_is_picked(admin_client, calls):
    """A job id or an idempotency key pasted from a log line names a row of any age."""
    oldest = calls[-1]
    job_id = oldest[Job][0]
    assert listed(admin_client, Job, q=str(job_id)) == [job_id]
    assert listed(admin_client, Job, q=str(job_id), created="7d") == []
    charge = Charge.objects.get(pk=oldest[Charge][0])
    assert listed(admin_client, Charge, q=str(charge.job_id)) == [charge.pk]
    assert listed(admin_client, Charge, q=charge.user.username) == [charge.pk]  # not a key
    assert listed(admin_client, Charge, q=charge.user.username, created="30d") == []
    txn = LedgerTransaction.objects.get(pk=oldest[LedgerTransaction][0])
    assert listed(admin_client, LedgerTransaction, q=txn.idempotency_key) == [txn.pk]


@pytest.mark.django_db
def test_the_other_filters_apply_within_the_window(admin_client, calls):
    Charge.objects.filter(pk__in=[calls[1][Charge][0], calls[3][Charge][0]]).update(
        status=Charge.Status.VOIDED
    )
    voided = {"status__exact": Charge.Status.VOIDED}
    assert listed(admin_client, Charge, **voided) == [calls[1][Charge][0]]
    assert listed(admin_client, Charge, **voided, created="all") == [
        calls[1][Charge][0],
        calls[3][Charge][0],
    ]
    Job.objects.filter(pk=calls[3][Job][0]).update(status="failed", result=None)
    assert listed(admin_client, Job, status__exact="failed") == []
    assert listed(admin_client, Job, status__exact="failed", created="all") == [calls[3][Job][0]]


@pytest.mark.parametrize("model", LISTS, ids=lambda m: m.__name__)
@pytest.mark.django_db
def test_the_page_is_read_alone_counted_in_its_window_and_its_related_rows_after_it(
    admin_client, calls, model
):
    """A join in the list's query joined every row of the window (of the table, for all
    time) before the sort; "N total" counted the whole table besides the window."""
    table = model._meta.db_table

    def queries(**params) -> list[str]:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(LISTS[model], params).status_code == 200
        return [q["sql"] for q in ctx.captured_queries]

    sql = queries()
    pages = [s for s in sql if s.startswith(f'SELECT "{table}"."id"') and "ORDER BY" in s]
    assert len(pages) == 1, sql
    assert "JOIN" not in pages[0], pages[0]
    counts = [s for s in sql if s.startswith("SELECT COUNT(*)") and f'FROM "{table}"' in s]
    assert len(counts) == 1 and '"created_at" >=' in counts[0], counts
    # The related rows are read once per relation, however many rows the page has.
    more = factories.funded(factories.user(), "10")
    route = factories.route(price=Decimal("0.0001"))
    for _ in range(3):
        call(card=route.card, route=route, user=more, hours_ago=2)
    assert len(queries()) == len(sql)


def a_year_of(model, template_pk, rows: int) -> None:
    """``rows`` copies of a row, dated over the last year in the order they are written
    (as the hot path appends them), each with its own keys; then ANALYZE, so the planner
    sees a table with a year in it."""
    table = model._meta.db_table
    columns, values = [], []
    for field in model._meta.concrete_fields:
        column = connection.ops.quote_name(field.column)
        columns.append(column)
        if field.primary_key or field.column == "job_id":
            values.append("gen_random_uuid()")
        elif field.column == "idempotency_key":
            values.append("'a-year:' || i")
        elif field.column == "created_at":
            values.append(f"now() - interval '365 days' * (1 - i / {rows}.0) - interval '1 day'")
        else:
            values.append(f"t.{column}")
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{table}" ({", ".join(columns)}) SELECT {", ".join(values)} '
            f'FROM "{table}" t, generate_series(1, {rows}) i WHERE t."id" = %s',
            [template_pk],
        )
        cursor.execute(f'ANALYZE "{table}"')


def plan(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())


@on_postgresql
@pytest.mark.parametrize("model", LISTS, ids=lambda m: m.__name__)
@pytest.mark.django_db
def test_the_window_is_read_through_the_brin_index_not_the_whole_table_sorted(
    admin_client, calls, model
):
    """With a year of rows (30,000, in the order they were written), the planner's own
    choice: the week's ranges of the BRIN index, its rows sorted; not every row sorted."""
    a_year_of(model, calls[0][model][0], 30_000)
    table = model._meta.db_table
    with CaptureQueriesContext(connection) as ctx:
        assert admin_client.get(LISTS[model]).status_code == 200
    reads = [
        q["sql"]
        for q in ctx.captured_queries
        if f'FROM "{table}"' in q["sql"] and '"created_at" >=' in q["sql"]
    ]
    assert len(reads) == 2, reads  # the page and its count
    for sql in reads:
        shown = plan(sql)
        assert f"Bitmap Index Scan on {BRIN[model]}" in shown, shown
        assert "Index Cond: (created_at >=" in shown, shown
        assert f"Seq Scan on {table}" not in shown, shown
    all_time = admin_client.get(LISTS[model], {"created": "all"}).context["cl"]
    assert all_time.result_count > 30_000  # and still every row, on request


@on_postgresql
@pytest.mark.django_db
def test_the_brin_indexes_take_no_entry_per_row():
    """BRIN, a summary per 32 pages kept by autovacuum: not a B-tree (an entry per row
    version on the hot path), and not declared to Django (SQLite has no BRIN)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(%s)",
            [list(BRIN.values())],
        )
        found = dict(cursor.fetchall())
    for model, name in BRIN.items():
        assert found[name] == (
            f"CREATE INDEX {name} ON public.{model._meta.db_table} USING brin (created_at) "
            "WITH (pages_per_range='32', autosummarize='on')"
        )


@pytest.mark.django_db(transaction=True)
def test_the_brin_migrations_run_both_ways():
    """On PostgreSQL the indexes are built (CONCURRENTLY) and dropped; elsewhere nothing
    changes either way."""

    def indexes() -> dict[str, dict]:
        return {model: table_indexes(model._meta.db_table) for model in BRIN}

    after = indexes()
    for model, name in BRIN.items():
        assert (name in after[model]) == (connection.vendor == "postgresql")
    try:
        migrate_to(("playground", "0019_idempotency_record_cached"))
        migrate_to(("billing", "0016_apikey_allowed_models_protected"))
        before = indexes()
        assert not any(name in before[model] for model, name in BRIN.items())
        assert {m: set(i) | {BRIN[m]} for m, i in before.items()} == {
            m: set(i) | {BRIN[m]} for m, i in after.items()
        }
    finally:
        migrate_to_latest()
    assert indexes() == after
