"""Money with many users paying at once, on PostgreSQL: no deadlock, no lost cent.

16 threads each charge their own wallet and 16 more share one wallet, every thread on its
own database connection, all on one price route (the shared rows the old design locked):
reserve, then post (or void every third job, as a failed job does). Afterwards the ledger
balances and every wallet is exact to the last decimal place.

A correctness test, not a benchmark: it asserts no speed (``bench/bench_charges.py``
measures charges per second). SQLite serialises every writer, so it is skipped there.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection

from billing.models import AccountKind, Charge, LedgerAccount, LedgerEntry
from billing.selectors import account_balance
from billing.services.charges import charge_post, charge_reserve, charge_void
from billing.services.ledger import holds_for, system_account, wallet_for
from billing.services.topups import credit_grant
from tests import factories

D = Decimal
PRICE = D("0.0000075")  # a price with all its decimal places in use
FUNDS = D("1")
OWN_CLIENTS = 16
SHARED_CLIENTS = 16
JOBS_PER_CLIENT = 24
pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row-lock races need PostgreSQL"),
]


def deadlocks_so_far() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def posts(n: int) -> bool:
    """Job n of a client succeeds unless it is every third one (then it is voided)."""
    return n % 3 != 2


@pytest.fixture
def no_signup_credit(settings):
    # Users are committed here, so the sign-up grant would run: keep wallets exact.
    settings.VITRINE_SIGNUP_CREDIT = "0"


def test_many_users_and_one_shared_wallet_charge_at_once(
    transactional_db, no_signup_credit, django_user_model
):
    route = factories.route(slug="vitrine", is_own=True, price=PRICE)
    own = [
        django_user_model.objects.create_user(f"own-{n}", f"own-{n}@example.com", "pw-own-12")
        for n in range(OWN_CLIENTS)
    ]
    shared = django_user_model.objects.create_user("shared", "shared@example.com", "pw-shared-1")
    for user in [*own, shared]:
        credit_grant(user=user, amount=FUNDS, reason="test funds")
    clients = [(user, f"own-{n}") for n, user in enumerate(own)]
    clients += [(shared, f"shared-{n}") for n in range(SHARED_CLIENTS)]
    deadlocks_before = deadlocks_so_far()

    outcomes: Counter = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(clients))

    def client(user, name: str) -> None:
        try:
            connection.ensure_connection()  # connect before the start line, not after it
            barrier.wait()
            for n in range(JOBS_PER_CLIENT):
                # Deterministic job ids: a failure names the very job.
                job_id = uuid.uuid5(uuid.NAMESPACE_OID, f"{name}/{n}")
                try:
                    charge_reserve(job_id=job_id, user=user, card=route.card, route=route)
                    (charge_post if posts(n) else charge_void)(job_id=job_id)
                    outcome = "posted" if posts(n) else "voided"
                except BaseException as exc:  # a deadlock, or anything else: the test fails
                    outcome = type(exc).__name__
                    with lock:
                        errors.append(exc)
                with lock:
                    outcomes[outcome] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=c) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    posted_each = sum(1 for n in range(JOBS_PER_CLIENT) if posts(n))
    jobs = len(clients) * JOBS_PER_CLIENT
    posted = len(clients) * posted_each
    print(f"\n{len(clients)} clients, {jobs} jobs: {dict(outcomes)}")
    assert errors == []
    assert outcomes == {"posted": posted, "voided": jobs - posted}
    # PostgreSQL's own count: no transaction of this database was chosen as a deadlock victim.
    assert deadlocks_so_far() == deadlocks_before

    # The ledger balances: in total, and transaction by transaction.
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(amount), 0) FROM billing_ledgerentry")
        assert cursor.fetchone()[0] == 0
        cursor.execute(
            "SELECT transaction_id FROM billing_ledgerentry"
            " GROUP BY transaction_id HAVING sum(amount) <> 0 OR count(*) < 2"
        )
        assert cursor.fetchall() == []
    # Every wallet's cached balance is the sum of its entries; the holds cache none.
    for account in LedgerAccount.objects.filter(user__isnull=False):
        entries = LedgerEntry.objects.filter(account=account).values_list("amount", flat=True)
        if account.kind == AccountKind.WALLET:
            assert account.balance == sum(entries, D(0)), account
        else:
            assert account.balance is None, account
    # And exactly what the jobs cost: posted jobs paid, voided ones gave the hold back.
    for user in own:
        assert wallet_for(user).balance == FUNDS - posted_each * PRICE
        assert account_balance(holds_for(user)) == 0
    assert wallet_for(shared).balance == FUNDS - SHARED_CLIENTS * posted_each * PRICE
    assert account_balance(holds_for(shared)) == 0
    assert Charge.objects.filter(status="reserved").count() == 0
    assert Charge.objects.filter(status="posted").count() == posted
    revenue = system_account(AccountKind.INFERENCE_REVENUE)
    assert revenue.balance is None  # derived, not a row every charge updated
    assert account_balance(revenue) == posted * PRICE
