"""The dashboard's, the usage export's, the spend cap's and the admin's reads of charges and
the ledger, held to what a year of data showed (session 42: an account with 405,000
charges among 1.5 million, 2.5 million ledger transactions)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from billing.models import Charge, LedgerTransaction
from billing.services.charges import charge_post, charge_reserve, month_start
from billing.services.keys import api_key_create
from billing.views import CREDIT_KINDS
from tests import factories

pytestmark = pytest.mark.django_db
on_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="the planner's plan")


def posted(*, user, route, key=None) -> Charge:
    job_id = uuid.uuid4()
    charge_reserve(job_id=job_id, user=user, card=route.card, route=route, api_key=key)
    return charge_post(job_id=job_id)


def plan_of(queryset) -> str:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        return queryset.explain()


@on_postgresql
def test_the_usage_export_is_summed_by_the_database_not_read_a_charge_at_a_time(
    owner_client, owner
):
    """Read a charge at a time (each with its key, model and organisation), a busy account's
    year (370,000 posted charges) took 36 s, past a pages worker's timeout."""
    factories.funded(owner, "10")
    route = factories.route(price=Decimal("0.0002"))
    key, _ = api_key_create(user=owner, name="ci")
    for _ in range(5):
        posted(user=owner, route=route, key=key)
    with CaptureQueriesContext(connection) as ctx:
        response = owner_client.get(reverse("billing:usage_csv"))
    assert response.status_code == 200
    rows = response.content.decode().splitlines()[1:]
    assert len(rows) == 1 and rows[0].endswith(",5,0.001,no,0.001"), rows
    reads = [q["sql"] for q in ctx.captured_queries if 'FROM "billing_charge"' in q["sql"]]
    assert len(reads) == 1 and "GROUP BY" in reads[0], reads
    assert '"billing_charge"."job_id"' not in reads[0]


def test_the_dashboard_reads_the_accounts_charge_totals_in_one_pass(owner_client, owner):
    """What is held, what BYOK saved and how many BYOK calls: three passes over every
    charge of the account (274 ms at 405,000 charges), now one."""
    factories.funded(owner, "10")
    route = factories.route(price=Decimal("0.0002"))
    posted(user=owner, route=route)
    charge_reserve(job_id=uuid.uuid4(), user=owner, card=route.card, route=route)
    with CaptureQueriesContext(connection) as ctx:
        response = owner_client.get(reverse("billing:dashboard"))
    assert response.status_code == 200
    totals = [
        q["sql"]
        for q in ctx.captured_queries
        if 'FROM "billing_charge"' in q["sql"] and ("SUM(" in q["sql"] or "COUNT(" in q["sql"])
    ]
    assert len(totals) == 1, totals
    assert response.context["held"] == "$0.0002"
    assert (response.context["byok_saved"], response.context["byok_calls"]) == ("$0", 0)


def test_the_credit_kinds_index_holds_what_the_dashboard_lists():
    (index,) = [i for i in LedgerTransaction._meta.indexes if i.name == "ledgertxn_credit_kinds"]
    assert sorted(dict(index.condition.children)["kind__in"]) == sorted(CREDIT_KINDS)


@on_postgresql
def test_the_wallets_credits_are_found_without_reading_the_ledger():
    """The dashboard's grants, refunds and reversals: PostgreSQL looked for those
    transactions first, by a scan of every transaction (154 ms at 2.5 million)."""
    plan = plan_of(LedgerTransaction.objects.filter(kind__in=CREDIT_KINDS))
    assert "ledgertxn_credit_kinds" in plan, plan


@on_postgresql
def test_a_capped_keys_spend_this_month_reads_this_months_charges(owner):
    """Summed by every call on a key with a monthly cap, under the key's lock: the key's
    whole history before (270 ms at 300,000 charges)."""
    key, _ = api_key_create(user=owner, name="capped")
    month = Charge.objects.filter(
        api_key=key,
        created_at__gte=month_start(timezone.now()),
        status__in=[Charge.Status.RESERVED, Charge.Status.POSTED],
    )
    plan = plan_of(month)
    assert "charge_key_created" in plan, plan
    assert "Index Cond: ((api_key_id = " in plan and "created_at >=" in plan, plan


def test_the_charge_list_costs_the_same_queries_for_any_number_of_rows(admin_client, owner):
    """A route is shown with its card and organisation: two more queries per row (204 for a
    page of 100) before they were selected with it."""
    factories.funded(owner, "10")
    route = factories.route(price=Decimal("0.0002"))
    posted(user=owner, route=route)

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get("/admin/billing/charge/").status_code == 200
        return len(ctx.captured_queries)

    one = queries()
    for other in (factories.route(price=Decimal("0.0001")), route, route):
        posted(user=owner, route=other)
    assert queries() == one


def test_a_charges_job_id_or_a_transactions_key_pasted_in_the_search_reads_its_index(
    admin_client, owner
):
    """The admin ORs its search fields (a username join, a cast of every job id to text):
    a key pasted whole is looked up in its unique index alone."""
    factories.funded(owner, "10")
    route = factories.route(price=Decimal("0.0002"))
    charge, other = posted(user=owner, route=route), posted(user=owner, route=route)

    def where_clauses(url, term):
        with CaptureQueriesContext(connection) as ctx:
            page = admin_client.get(url, {"q": term})
        table = page.context["cl"].model._meta.db_table
        sql = [q["sql"] for q in ctx.captured_queries if f'FROM "{table}"' in q["sql"]]
        return page.context["cl"].result_list, [s.split(" WHERE ", 1)[-1] for s in sql]

    found, wheres = where_clauses("/admin/billing/charge/", str(charge.job_id))
    assert list(found) == [charge] and other not in found
    assert not any("username" in w or "LIKE" in w.upper() for w in wheres), wheres
    txn = LedgerTransaction.objects.filter(idempotency_key__contains=str(charge.job_id)).first()
    found, wheres = where_clauses("/admin/billing/ledgertransaction/", txn.idempotency_key)
    assert list(found) == [txn]
    assert not any("LIKE" in w.upper() for w in wheres), wheres
    # A username is searched as before.
    found, _ = where_clauses("/admin/billing/charge/", owner.username)
    assert set(found) == {charge, other}
