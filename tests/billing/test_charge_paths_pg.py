"""On PostgreSQL the PL/pgSQL functions and the ORM path charge exactly alike.

charge_reserve/charge_post/charge_void run a PL/pgSQL function (one round trip) on
PostgreSQL and the ORM elsewhere. The same scenario (paid, repeated, refused, free,
capped, allow-listed and unpriced calls, posts, voids and their replays, a user's first
charge) is run through each path, on its own users and cards, and everything a user or
an operator could see must be identical: each call's answer or error (status, code,
message, extra), the charges, the reserve/post/void ledger transactions with their
entries, keys, kinds and memos, and every balance. Run both inside a test transaction (a
job's creation or completion: the function joins it) and in autocommit (the function is
its own transaction).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.models import AccountKind, Charge, LedgerAccount, LedgerEntry, LedgerTransaction
from billing.selectors import account_balance
from billing.services import charges
from billing.services.charges import charge_post, charge_reserve, charge_void
from billing.services.keys import api_key_create, provider_key_save
from billing.services.topups import credit_grant
from catalog.errors import ApplicationError
from catalog.models import PriceRoute
from tests import factories

D = Decimal
pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the functions exist on PostgreSQL only"
)
SYSTEM_KINDS = (AccountKind.INFERENCE_REVENUE, AccountKind.PROVIDER_PAYABLE, AccountKind.GRANTS)


def run_scenario(tag: str) -> dict:
    """Build this run's users, cards and keys (names carry ``tag``), run the calls, and
    return everything observable with ids and the tag replaced by labels."""
    jobs: dict[str, uuid.UUID] = {}

    def job(label: str) -> uuid.UUID:
        return jobs.setdefault(label, uuid.uuid4())

    organisation = factories.organisation(name=f"Org {tag}", slug=f"org-{tag}")
    own = factories.route(
        card=factories.card(slug=f"own-{tag}", organisation=organisation),
        slug="vitrine",
        is_own=True,
        price=D("0.0002"),
    )
    provider = factories.route(
        card=factories.card(slug=f"prov-{tag}", organisation=organisation),
        slug="cloudflare",
        provider="Cloudflare Workers AI",
        is_own=False,
        byok_available=True,
        price=D("0.0000075"),
    )
    unpriced = PriceRoute.objects.create(
        card=factories.card(slug=f"unpriced-{tag}", organisation=organisation),
        slug="vitrine",
        provider="Vitrine",
        is_own=True,
        price=D("0.0001"),
    )  # no price history: 409
    payer = factories.user(username=f"payer-{tag}")
    credit_grant(user=payer, amount=D("1"), reason="funds")
    broke = factories.user(username=f"broke-{tag}")  # no account yet: the first charge
    byok = factories.user(username=f"byok-{tag}")
    provider_key_save(user=byok, provider="cloudflare", secret="cf-secret-token-1234")
    capped, _ = api_key_create(user=payer, name="capped", monthly_spend_cap=D("0.0004"))
    narrow, _ = api_key_create(user=payer, name="narrow", allowed_models=[provider.card])
    open_key, _ = api_key_create(user=payer, name="open")

    answers = []

    def call(label: str, fn, **kwargs):
        try:
            charge = fn(**kwargs)
        except ApplicationError as exc:
            answers.append((label, "error", exc.as_dict(), exc.status))
            return
        answers.append((label, "ok", summary(charge)))

    def reserve(label, user, route, **kwargs):
        call(
            label,
            charge_reserve,
            job_id=job(label.split("/")[0]),
            user=user,
            card=route.card,
            route=route,
            **kwargs,
        )

    reserve("j1", payer, own, units=3)
    reserve("j1/again", payer, own, units=5)  # the same job: the same charge, nothing moved
    call("j1/post", charge_post, job_id=job("j1"))
    call("j1/post-again", charge_post, job_id=job("j1"))
    call("j1/void-after-post", charge_void, job_id=job("j1"))
    reserve("j2", payer, provider, units=4)
    call("j2/void", charge_void, job_id=job("j2"))
    call("j2/post-after-void", charge_post, job_id=job("j2"))
    reserve("j3", broke, own)  # accounts created, then 402
    credit_grant(user=broke, amount=D("0.0003"), reason="a little")
    reserve("j4", broke, own)
    reserve("j5", broke, own)  # 0.0001 left: 402 with balance and cost
    reserve("j5b", broke, provider, units=13)  # 0.0000975 fits
    call("j5b/post", charge_post, job_id=job("j5b"))
    reserve("j6", byok, provider, units=1000)  # BYOK: free, no ledger movement
    reserve("j6/again", byok, provider)
    call("j6/post", charge_post, job_id=job("j6"))
    reserve("j7", payer, own, api_key=capped)
    reserve("j8", payer, own, api_key=capped)
    reserve("j9", payer, own, api_key=capped)  # cap reached
    call("j7/void", charge_void, job_id=job("j7"))  # gives its share of the cap back
    reserve("j9/retry", payer, own, api_key=capped)
    call("j9/post", charge_post, job_id=job("j9"))
    reserve("j10", payer, own, api_key=narrow)  # 403
    reserve("j11", payer, provider, api_key=narrow)
    reserve("j12", payer, own, api_key=open_key)
    reserve("j13", payer, unpriced)  # 409
    call("unknown/post", charge_post, job_id=job("unknown"))
    call("unknown/void", charge_void, job_id=job("unknown"))

    users = {payer.pk: "payer", broke.pk: "broke", byok.pk: "byok"}
    labels = {str(job_id): label for label, job_id in jobs.items()}

    def clean(text: str) -> str:
        for job_id, label in labels.items():
            text = text.replace(job_id, label)
        return text.replace(tag, "TAG")

    def account_label(account_id: int):
        account = LedgerAccount.objects.get(pk=account_id)
        return (users.get(account.user_id), account.kind)

    charges_seen = [
        summary(c) for c in Charge.objects.filter(user__in=users).order_by("created_at", "id")
    ]
    transactions = []
    for txn in LedgerTransaction.objects.filter(
        entries__account__user__in=users, kind__in=["reserve", "post", "void"]
    ).distinct():
        entries = [
            (account_label(e.account_id), e.amount)
            for e in LedgerEntry.objects.filter(transaction=txn).order_by("id")
        ]
        transactions.append((txn.kind, clean(txn.idempotency_key), clean(txn.memo), entries))
    balances = {
        # The wallet's cached balance, the holds' sum of entries (both paths cache
        # exactly the same: the raw column is compared too).
        (name, kind): (
            account_balance(LedgerAccount.objects.get(user_id=pk, kind=kind)),
            LedgerAccount.objects.get(user_id=pk, kind=kind).balance,
        )
        for pk, name in users.items()
        for kind in (AccountKind.WALLET, AccountKind.HOLDS)
        if LedgerAccount.objects.filter(user_id=pk, kind=kind).exists()
    }
    summary_labels = {"jobs": labels, "users": users}
    return {
        "answers": [_clean_deep(a, clean, summary_labels) for a in answers],
        "charges": [_clean_deep(c, clean, summary_labels) for c in charges_seen],
        "transactions": sorted(transactions),
        "balances": balances,
    }


def summary(charge: Charge | None):
    if charge is None:
        return None
    return {
        "job": str(charge.job_id),
        "user": charge.user_id,
        "api_key": charge.api_key.name if charge.api_key_id else None,
        "card": charge.card.slug,
        "route": charge.route.slug,
        "price_version": (charge.price_version.route.card.slug, charge.price_version.price),
        "unit_price": charge.unit_price,
        "units": charge.units,
        "amount": charge.amount,
        "would_be_amount": charge.would_be_amount,
        "byok": charge.byok,
        "status": charge.status,
        "settled": charge.settled_at is not None,
        "saved": not charge._state.adding,
    }


def _clean_deep(value, clean, labels):
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        out = {k: _clean_deep(v, clean, labels) for k, v in value.items()}
        if "user" in out and isinstance(out["user"], int):
            out["user"] = labels["users"].get(out["user"])
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(_clean_deep(v, clean, labels) for v in value)
    return value


def system_balances() -> dict[str, Decimal]:
    return {
        kind: account_balance(a)
        for kind in SYSTEM_KINDS
        for a in LedgerAccount.objects.filter(user__isnull=True, kind=kind)
    }


def both_paths(monkeypatch) -> tuple[dict, dict]:
    """(functions, ORM): each scenario's observations and its system balances' changes."""
    results = []
    # The functions first: on a fresh database their first post finds no revenue account
    # yet and hands that case to the ORM path (the fallback is exercised too).
    for tag, use_sql in (("tagsql", True), ("tagorm", False)):
        monkeypatch.setattr(charges, "_use_sql_functions", lambda use_sql=use_sql: use_sql)
        before = system_balances()
        seen = run_scenario(tag)
        after = system_balances()
        seen["system_changes"] = {k: v - before.get(k, 0) for k, v in after.items()}
        results.append(seen)
    return results[0], results[1]


def assert_same(sql: dict, orm: dict) -> None:
    for part in ("answers", "charges", "transactions", "balances", "system_changes"):
        assert sql[part] == orm[part], part
    # The scenario did what it says: errors of every kind, money moved, free calls.
    codes = [a[2]["error"]["code"] for a in sql["answers"] if a[1] == "error"]
    assert codes == [
        "insufficient_credits",
        "insufficient_credits",
        "spend_cap_reached",
        "model_not_allowed",
        "no_price",
    ]
    assert sql["answers"][-2:] == [("unknown/post", "ok", None), ("unknown/void", "ok", None)]
    assert {c["status"] for c in sql["charges"]} == {"reserved", "posted", "voided"}
    assert sql["balances"][("broke", AccountKind.WALLET)] == (D("0.0000025"), D("0.0000025"))


@pytest.mark.django_db
def test_inside_a_transaction_both_paths_leave_identical_ledgers(monkeypatch):
    assert_same(*both_paths(monkeypatch))


@pytest.mark.django_db(transaction=True)
def test_in_autocommit_both_paths_leave_identical_ledgers(monkeypatch, settings):
    settings.VITRINE_SIGNUP_CREDIT = "0"
    assert connection.get_autocommit()
    assert_same(*both_paths(monkeypatch))


@pytest.mark.django_db(transaction=True)
def test_the_hot_path_is_one_statement_each(settings):
    """An API call's reservation and the worker's post: one round trip each, no
    BEGIN/COMMIT around it in autocommit, no savepoint inside a transaction."""
    settings.VITRINE_SIGNUP_CREDIT = "0"
    route = factories.route(price=D("0.0002"))
    user = factories.user()
    credit_grant(user=user, amount=D("1"), reason="funds")
    key, _ = api_key_create(user=user, name="plain")
    # The first charge creates the revenue account (the ORM fallback); then the hot path.
    first = charge_reserve(job_id=uuid.uuid4(), user=user, card=route.card, route=route)
    charge_post(job_id=first.job_id)
    job_id = uuid.uuid4()
    with CaptureQueriesContext(connection) as queries:
        charge = charge_reserve(job_id=job_id, user=user, card=route.card, route=route, api_key=key)
    assert len(queries) == 1, [q["sql"] for q in queries]
    assert "vitrine_charge_reserve" in queries[0]["sql"]
    with CaptureQueriesContext(connection) as queries:
        posted = charge_post(job_id=job_id)
    assert len(queries) == 1, [q["sql"] for q in queries]
    assert (charge.amount, posted.status) == (D("0.0002"), "posted")
    assert LedgerAccount.objects.get(user=user, kind=AccountKind.WALLET).balance == D("0.9996")


def test_the_functions_return_the_charges_columns_in_model_order():
    assert tuple(f.attname for f in Charge._meta.concrete_fields) == charges.CHARGE_FIELDS
