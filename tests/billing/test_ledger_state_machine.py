"""A hypothesis state machine over the wallet: top-ups, reservations, posts, voids, refunds,
BYOK calls and price changes, in any order.

After every step: each user account's cached balance equals the sum of its entries (system
accounts cache none), every ledger transaction sums to zero, the wallet is never negative,
and every balance equals what a plain-Decimal model of the rules predicts.

Deterministic, so hypothesis can replay and shrink what it finds: job ids come from a
counter (``uuid.UUID(int=n)``), not ``uuid4()``, so drawing "a reserved job" from the sorted
ids picks the same job on every replay; and nothing here looks at the clock.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from billing.models import AccountKind, Charge, LedgerAccount, LedgerTransaction
from billing.selectors import account_balance, system_balances
from billing.services.charges import charge_post, charge_reserve, charge_void
from billing.services.keys import provider_key_save
from billing.services.ledger import InsufficientCredits, holds_for, wallet_for
from billing.services.topups import credit_refund, top_up_complete, top_up_create
from catalog.models import PriceRoute
from catalog.services import price_route_save
from tests import factories

D = Decimal
TEN_PLACES = D("1e-10")
# Unit prices with up to 10 decimal places, from free to $0.0005 (seed prices included).
PRICES = st.one_of(
    st.sampled_from([D("0"), D("0.0000075"), D("0.0002"), D("0.000047"), D("0.0001")]),
    st.integers(min_value=1, max_value=5_000_000).map(lambda n: D(n).scaleb(-10)),
)
# Mostly calls the wallet can cover, sometimes ones it cannot (up to $50 at the top price).
UNITS = st.one_of(
    st.integers(min_value=1, max_value=20),
    st.integers(min_value=1, max_value=2_000),
    st.integers(min_value=1, max_value=100_000),
)
ACCOUNTS = ("wallet", *(k.value for k in AccountKind if k != AccountKind.WALLET))


class WalletMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # Each example runs in its own savepoint, rolled back in teardown: examples see an
        # empty ledger and do not slow each other down.
        self.savepoint = transaction.savepoint()
        self.user = get_user_model().objects.create_user("state-machine")
        self.routes: list[PriceRoute] = [
            factories.route(slug="vitrine", is_own=True, price=D("0.0002")),
            factories.route(slug="vitrine", is_own=True, price=D("0.000047")),
            factories.route(
                slug="cloudflare", is_own=False, byok_available=True, price=D("0.0000075")
            ),
        ]
        self.byok_route = factories.route(
            slug="byok-provider", is_own=False, byok_available=True, price=D("0.0001")
        )
        provider_key_save(user=self.user, provider="byok-provider", secret="sk-byok-12345678")
        self.prices = {route.pk: route.price for route in [*self.routes, self.byok_route]}
        self.model = dict.fromkeys(ACCOUNTS, D(0))
        # job id -> (amount held, route is our own)
        self.reserved: dict[uuid.UUID, tuple[Decimal, bool]] = {}
        self.settled: dict[uuid.UUID, str] = {}
        self.checked_transactions: set[uuid.UUID] = set()
        self.jobs = 0

    def new_job_id(self) -> uuid.UUID:
        # The n-th job of this example: the same on every replay (uuid4 would not be, and
        # hypothesis would then see a different job drawn: FlakyStrategyDefinition).
        self.jobs += 1
        return uuid.UUID(int=self.jobs)

    def teardown(self) -> None:
        transaction.savepoint_rollback(self.savepoint)

    # --- the model ---------------------------------------------------------------------
    def move(self, **deltas: Decimal) -> None:
        for account, delta in deltas.items():
            self.model[account] += delta

    def real(self) -> dict[str, Decimal]:
        # Every balance but the wallet's is a sum of entries; the holds are this user's.
        real = {**system_balances(), "wallet": wallet_for(self.user).balance}
        assert real["holds"] == account_balance(holds_for(self.user))
        return {name: real[name] for name in ACCOUNTS}

    # --- rules -------------------------------------------------------------------------
    @initialize(cents=st.integers(min_value=500, max_value=5_000))
    def first_top_up(self, cents: int) -> None:
        self.top_up(cents)

    @rule(cents=st.integers(min_value=500, max_value=200_000))
    def top_up(self, cents: int) -> None:
        credit = D(cents) / 100
        top_up = top_up_create(user=self.user, credit=credit, provider="dev")
        posting = top_up_complete(top_up=top_up)
        assert posting.created
        fee = (credit * D("0.05")).quantize(D("0.01"), rounding="ROUND_HALF_UP")
        assert (top_up.fee, top_up.total) == (fee, credit + fee)
        self.move(wallet=credit, fee_revenue=fee, payment_clearing=-(credit + fee))
        # Completing the same top-up again credits nothing.
        assert top_up_complete(top_up=top_up).created is False

    @rule(index=st.integers(min_value=0, max_value=2), units=UNITS)
    def reserve(self, index: int, units: int) -> None:
        route = self.routes[index]
        price = self.prices[route.pk]
        cost = (price * units).quantize(TEN_PLACES)
        job_id = self.new_job_id()
        if cost > self.model["wallet"]:
            with pytest.raises(InsufficientCredits) as raised:
                charge_reserve(
                    job_id=job_id, user=self.user, card=route.card, route=route, units=units
                )
            assert raised.value.status == 402
            assert not Charge.objects.filter(job_id=job_id).exists()
            return
        charge = charge_reserve(
            job_id=job_id, user=self.user, card=route.card, route=route, units=units
        )
        assert (charge.amount, charge.would_be_amount, charge.byok) == (cost, cost, False)
        assert charge.unit_price == price
        self.move(wallet=-cost, holds=cost)
        self.reserved[job_id] = (cost, route.is_own)

    @rule(units=UNITS, succeeds=st.booleans())
    def byok_reserve(self, units: int, succeeds: bool) -> None:
        route = self.byok_route
        price = self.prices[route.pk]
        job_id = self.new_job_id()
        charge = charge_reserve(
            job_id=job_id, user=self.user, card=route.card, route=route, units=units
        )
        assert (charge.amount, charge.byok) == (D(0), True)
        assert charge.would_be_amount == (price * units).quantize(TEN_PLACES)
        # Works with an empty wallet too (refund_everything), and settles without money.
        (charge_post if succeeds else charge_void)(job_id=job_id)
        self.settled[job_id] = "byok"

    @precondition(lambda self: self.reserved)
    @rule(data=st.data())
    def post(self, data) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.reserved)), label="job")
        cost, is_own = self.reserved.pop(job_id)
        charge = charge_post(job_id=job_id)
        assert (charge.status, charge.amount) == ("posted", cost)
        revenue = "inference_revenue" if is_own else "provider_payable"
        self.move(holds=-cost, **{revenue: cost})
        self.settled[job_id] = "posted"

    @precondition(lambda self: self.reserved)
    @rule(data=st.data())
    def void(self, data) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.reserved)), label="job")
        cost, _ = self.reserved.pop(job_id)
        charge = charge_void(job_id=job_id)
        assert (charge.status, charge.amount) == ("voided", cost)
        self.move(holds=-cost, wallet=cost)
        self.settled[job_id] = "voided"

    @precondition(lambda self: self.settled or self.reserved)
    @rule(data=st.data(), settle=st.sampled_from([charge_post, charge_void, "reserve"]))
    def replay(self, data, settle) -> None:
        """A redelivered task or a retried request: nothing changes."""
        job_id = data.draw(st.sampled_from(sorted([*self.settled, *self.reserved])), label="job")
        before = Charge.objects.get(job_id=job_id)
        if settle == "reserve":
            route = before.route
            again = charge_reserve(job_id=job_id, user=self.user, card=route.card, route=route)
            assert again.pk == before.pk
        elif job_id in self.settled:
            settle(job_id=job_id)
        else:
            return  # settling a reserved job is the post/void rules' business
        after = Charge.objects.get(job_id=job_id)
        assert (after.status, after.amount) == (before.status, before.amount)

    @rule(cents=st.integers(min_value=1, max_value=20_000))
    def refund(self, cents: int) -> None:
        amount = D(cents) / 100
        if amount > self.model["wallet"]:
            with pytest.raises(InsufficientCredits):
                credit_refund(user=self.user, amount=amount, reason="state machine")
            return
        credit_refund(user=self.user, amount=amount, reason="state machine")
        self.move(wallet=-amount, payment_clearing=amount)

    @precondition(lambda self: self.model["wallet"] > 0)
    @rule()
    def refund_everything(self) -> None:
        amount = self.model["wallet"]
        credit_refund(user=self.user, amount=amount, reason="close account")
        self.move(wallet=-amount, payment_clearing=amount)

    @rule(index=st.integers(min_value=0, max_value=3), price=PRICES)
    def reprice(self, index: int, price: Decimal) -> None:
        """An operator changes a price; reserved charges keep the price they were given."""
        route = [*self.routes, self.byok_route][index]
        route = PriceRoute.objects.get(pk=route.pk)
        route.price = price
        price_route_save(route=route, note="state machine")
        self.prices[route.pk] = price

    # --- invariants --------------------------------------------------------------------
    @invariant()
    def balances_match_the_model(self) -> None:
        real = self.real()
        assert real == self.model
        assert real["wallet"] >= 0

    @invariant()
    def every_cached_balance_is_the_sum_of_its_entries(self) -> None:
        for account in LedgerAccount.objects.all():
            if account.kind != AccountKind.WALLET:
                # Holds and shared accounts: derived from their entries, never a cached
                # row that every charge (or every charge of this user) updates.
                assert account.balance is None, account
                continue
            # Summed in Python: SQLite's SUM() of decimals is a float sum.
            total = sum(account.entries.values_list("amount", flat=True), D(0))
            assert account.balance == total, account

    @invariant()
    def every_transaction_sums_to_zero(self) -> None:
        new = LedgerTransaction.objects.exclude(pk__in=self.checked_transactions)
        for txn in new.prefetch_related("entries"):
            amounts = [entry.amount for entry in txn.entries.all()]
            assert len(amounts) >= 2
            assert sum(amounts, D(0)) == 0, txn
            self.checked_transactions.add(txn.pk)

    @invariant()
    def holds_are_the_reserved_charges(self) -> None:
        reserved = Charge.objects.filter(user=self.user, status="reserved")
        assert sum(reserved.values_list("amount", flat=True), D(0)) == self.model["holds"]
        assert {c.job_id for c in reserved if c.amount > 0} == {
            job for job, (cost, _) in self.reserved.items() if cost > 0
        }


@pytest.mark.django_db
def test_the_wallet_state_machine():
    run_state_machine_as_test(
        WalletMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
