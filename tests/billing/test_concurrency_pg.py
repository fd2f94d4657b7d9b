"""Race safety on PostgreSQL: real threads, each on its own database connection.

SQLite serialises every writer, so these prove nothing there and are skipped; CI runs the
suite on PostgreSQL. Each test lines its threads up on a barrier and watches
``pg_stat_activity`` from another connection to show that attempts really did wait on each
other's row locks, rather than happening to run one after another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.test import Client
from django.urls import reverse

from billing.models import AccountKind, Charge, LedgerTransaction
from billing.selectors import account_balance
from billing.services.charges import charge_post, charge_reserve, charge_void
from billing.services.keys import api_key_create, provider_key_save
from billing.services.ledger import InsufficientCredits, holds_for, system_account, wallet_for
from billing.services.topups import credit_grant, top_up_create
from catalog.errors import ApplicationError
from tests import factories

D = Decimal
PRICE = D("0.0002")
pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row-lock races need PostgreSQL"),
]


@dataclass
class Race:
    """What a batch of concurrent attempts did."""

    outcomes: Counter = field(default_factory=Counter)
    errors: list[BaseException] = field(default_factory=list)
    results: list = field(default_factory=list)
    peak_in_flight: int = 0
    peak_lock_waiters: int = 0
    seconds: float = 0.0


def pool_size(wanted: int) -> int:
    """Threads to use without exhausting PostgreSQL's connections (other runs share it)."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        limit = int(cursor.fetchone()[0])
        cursor.execute("SELECT count(*) FROM pg_stat_activity")
        used = int(cursor.fetchone()[0])
    return max(4, min(wanted, (limit - used) // 2))


def race(attempts: list[Callable[[], object]], *, threads: int) -> Race:
    """Run ``attempts`` on ``threads`` threads at once, each thread on its own connection."""
    result = Race()
    lock = threading.Lock()
    queue = list(reversed(attempts))
    in_flight = 0
    barrier = threading.Barrier(threads + 1)
    done = threading.Event()

    def worker() -> None:
        nonlocal in_flight
        try:
            connection.ensure_connection()  # connect before the start line, not after it
            barrier.wait()
            while True:
                with lock:
                    if not queue:
                        return
                    attempt = queue.pop()
                    in_flight += 1
                    result.peak_in_flight = max(result.peak_in_flight, in_flight)
                try:
                    value = attempt()
                    outcome = "ok"
                except ApplicationError as exc:
                    value, outcome = exc, f"{exc.status} {exc.code}"
                except BaseException as exc:  # anything else fails the test below
                    value, outcome = exc, "error"
                    result.errors.append(exc)
                with lock:
                    in_flight -= 1
                    result.outcomes[outcome] += 1
                    result.results.append(value)
        finally:
            connection.close()

    def watch() -> None:
        # Sessions of this database blocked on a lock (a row lock, or a unique index entry
        # another transaction is inserting), sampled until the race ends.
        try:
            with connection.cursor() as cursor:
                while not done.is_set():
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                    waiting = int(cursor.fetchone()[0])
                    result.peak_lock_waiters = max(result.peak_lock_waiters, waiting)
        finally:
            connection.close()

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    watcher = threading.Thread(target=watch)
    for thread in workers:
        thread.start()
    watcher.start()
    barrier.wait()
    started = time.monotonic()
    for thread in workers:
        thread.join()
    result.seconds = time.monotonic() - started
    done.set()
    watcher.join()
    return result


@pytest.fixture
def no_signup_credit(settings):
    # Users are committed here, so the sign-up grant would run: keep wallets exact.
    settings.VITRINE_SIGNUP_CREDIT = "0"


@pytest.fixture
def route(transactional_db):
    return factories.route(slug="vitrine", is_own=True, price=PRICE)


@pytest.fixture
def payer(transactional_db, no_signup_credit, django_user_model):
    return django_user_model.objects.create_user("payer", "payer@example.com", "pw-payer-1")


def reserve_attempt(user, route, *, job_id=None, api_key=None) -> Callable[[], Charge]:
    job_id = job_id or uuid.uuid4()
    return lambda: charge_reserve(
        job_id=job_id, user=user, card=route.card, route=route, api_key=api_key
    )


def wallet_never_went_negative(user) -> bool:
    """Replay the wallet's entries in the order they were written (under the row lock)."""
    running = D(0)
    for amount in wallet_for(user).entries.order_by("id").values_list("amount", flat=True):
        running += amount
        if running < 0:
            return False
    return True


def test_200_attempts_on_a_wallet_that_covers_80(payer, route):
    credit_grant(user=payer, amount=80 * PRICE, reason="exactly 80 calls")
    attempts = [reserve_attempt(payer, route) for _ in range(200)]

    outcome = race(attempts, threads=pool_size(50))
    print(
        f"\n200 attempts: {dict(outcome.outcomes)}, peak in flight {outcome.peak_in_flight}, "
        f"peak waiting on a lock {outcome.peak_lock_waiters}, {outcome.seconds:.2f}s"
    )

    assert outcome.errors == []
    assert outcome.outcomes == {"ok": 80, "402 insufficient_credits": 120}
    assert all(
        isinstance(r, InsufficientCredits) for r in outcome.results if not isinstance(r, Charge)
    )
    assert wallet_for(payer).balance == 0
    assert account_balance(holds_for(payer)) == 80 * PRICE
    assert Charge.objects.filter(user=payer, status="reserved").count() == 80
    assert LedgerTransaction.objects.filter(kind="reserve").count() == 80
    assert sum(wallet_for(payer).entries.values_list("amount", flat=True), D(0)) == 0
    assert wallet_never_went_negative(payer)
    # The attempts really overlapped, and some waited on another's row lock.
    assert outcome.peak_in_flight > 1
    assert outcome.peak_lock_waiters >= 1


def test_concurrent_reserves_of_one_job_hold_once(payer, route):
    credit_grant(user=payer, amount=D("1"), reason="plenty")
    job_id = uuid.uuid4()
    attempts = [reserve_attempt(payer, route, job_id=job_id) for _ in range(20)]

    outcome = race(attempts, threads=pool_size(20))

    assert outcome.errors == []
    assert outcome.outcomes == {"ok": 20}
    assert {charge.pk for charge in outcome.results} == {Charge.objects.get(job_id=job_id).pk}
    assert wallet_for(payer).balance == D("1") - PRICE
    assert account_balance(holds_for(payer)) == PRICE
    assert LedgerTransaction.objects.filter(kind="reserve").count() == 1


def test_concurrent_free_byok_reserves_of_one_job_record_one_charge(payer):
    # No money moves, so no wallet lock queues them: the unique job id decides.
    route = factories.route(slug="cloudflare", is_own=False, byok_available=True, price=PRICE)
    provider_key_save(user=payer, provider="cloudflare", secret="cf-secret-token-1234")
    job_id = uuid.uuid4()
    attempts = [reserve_attempt(payer, route, job_id=job_id) for _ in range(20)]

    outcome = race(attempts, threads=pool_size(20))

    assert outcome.errors == []
    assert outcome.outcomes == {"ok": 20}
    charge = Charge.objects.get(job_id=job_id)
    assert {c.pk for c in outcome.results} == {charge.pk}
    assert (charge.byok, charge.amount) == (True, 0)
    assert not LedgerTransaction.objects.exists()


def test_concurrent_posts_and_voids_of_one_job_settle_it_once(payer, route):
    credit_grant(user=payer, amount=D("1"), reason="plenty")
    job_id = uuid.uuid4()
    charge_reserve(job_id=job_id, user=payer, card=route.card, route=route)
    system_account(AccountKind.INFERENCE_REVENUE)  # exists: no first-use fallback to the ORM
    attempts = [
        (lambda: charge_post(job_id=job_id)) if i % 2 else (lambda: charge_void(job_id=job_id))
        for i in range(20)
    ]

    outcome = race(attempts, threads=pool_size(20))

    assert outcome.errors == []
    assert outcome.outcomes == {"ok": 20}
    charge = Charge.objects.get(job_id=job_id)
    # Whichever came first won; every other attempt found it settled and moved nothing.
    assert {c.status for c in outcome.results} == {charge.status}
    settled = LedgerTransaction.objects.filter(kind__in=["post", "void"])
    assert list(settled.values_list("kind", flat=True)) == [
        "post" if charge.status == "posted" else "void"
    ]
    assert account_balance(holds_for(payer)) == 0
    paid = PRICE if charge.status == "posted" else 0
    assert wallet_for(payer).balance == D("1") - paid
    assert account_balance(system_account(AccountKind.INFERENCE_REVENUE)) == paid


def test_concurrent_calls_cannot_overshoot_a_spend_cap(payer, route):
    credit_grant(user=payer, amount=D("1"), reason="plenty")
    key, _ = api_key_create(user=payer, name="capped", monthly_spend_cap=10 * PRICE)
    attempts = [reserve_attempt(payer, route, api_key=key) for _ in range(40)]

    outcome = race(attempts, threads=pool_size(40))

    assert outcome.errors == []
    assert outcome.outcomes == {"ok": 10, "402 spend_cap_reached": 30}
    assert Charge.objects.filter(api_key=key).count() == 10
    assert wallet_for(payer).balance == D("1") - 10 * PRICE
    assert outcome.peak_lock_waiters >= 1


def test_a_webhook_delivered_ten_times_at_once_credits_once(payer, settings):
    secret = "whsec_test_concurrent"
    settings.STRIPE_WEBHOOK_SECRET = secret
    top_up = top_up_create(user=payer, credit=D("10"), provider="stripe")
    payload = json.dumps(
        {
            "id": "evt_concurrent",
            "object": "event",
            "type": "checkout.session.completed",
            "data": {
                "object": {
                    "id": "cs_test_concurrent",
                    "object": "checkout.session",
                    "amount_total": 1050,
                    "currency": "usd",
                    "client_reference_id": str(top_up.pk),
                    "metadata": {"top_up": str(top_up.pk)},
                    "payment_status": "paid",
                }
            },
        }
    )
    timestamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    signature = f"t={timestamp},v1={mac.hexdigest()}"
    url = reverse("billing:stripe_webhook")

    def deliver():
        return (
            Client()
            .post(
                url,
                payload,
                content_type="application/json",
                headers={"Stripe-Signature": signature},
            )
            .status_code
        )

    outcome = race([deliver] * 10, threads=10)

    assert outcome.errors == []
    assert outcome.results == [200] * 10
    assert wallet_for(payer).balance == D("10")
    assert account_balance(system_account(AccountKind.FEE_REVENUE)) == D("0.50")
    assert account_balance(system_account(AccountKind.PAYMENT_CLEARING)) == D("-10.50")
    assert LedgerTransaction.objects.filter(kind="top_up").count() == 1
    top_up.refresh_from_db()
    assert (top_up.status, top_up.provider_event_id) == ("completed", "evt_concurrent")
    # Close this thread's other aliases too, should a test above have opened any.
    for alias in connections:
        connections[alias].close_if_unusable_or_obsolete()
