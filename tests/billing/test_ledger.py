"""The ledger: exact money, double entry, append-only, reversals and idempotency keys."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from billing.models import (
    AccountKind,
    AppendOnly,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
)
from billing.selectors import account_balance
from billing.services.charges import charge_post, charge_reserve, charge_void
from billing.services.ledger import (
    INSUFFICIENT_CREDITS,
    UNBALANCED,
    InsufficientCredits,
    holds_for,
    ledger_post,
    ledger_reverse,
    system_account,
    wallet_for,
)
from billing.services.topups import credit_refund, top_up_complete, top_up_create
from catalog.pricing import image_cost
from tests import factories

D = Decimal
pytestmark = pytest.mark.django_db


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("payer", "payer@example.com", "pw-payer-1")


def fund(user, credit: str) -> LedgerTransaction:
    """Credit the wallet the way the development payment provider does."""
    return top_up_complete(
        top_up=top_up_create(user=user, credit=D(credit), provider="dev")
    ).transaction


def balance(account: LedgerAccount) -> Decimal:
    account.refresh_from_db()
    return account_balance(account)


def entries_total(account: LedgerAccount) -> Decimal:
    # Summed in Python: SQLite's SUM() of decimals is a float sum (PostgreSQL's is exact).
    return sum(account.entries.values_list("amount", flat=True), D(0))


@pytest.mark.parametrize(
    ("unit_price", "images", "cost"),
    [
        (D("0.0000075"), 1, D("0.0000075")),
        (D("0.0000075"), 1_000_000, D("7.5")),
        (D("0.0000075"), 3, D("0.0000225")),
        (D("0.0002"), 1_000_000, D("200")),
    ],
)
def test_image_cost_is_exact(unit_price, images, cost):
    assert image_cost(unit_price=unit_price, images=images, byok=False) == cost


@pytest.mark.parametrize(
    ("units", "cost", "left"),
    [(1, D("0.0000075"), D("9.9999925")), (1_000_000, D("7.5"), D("2.5"))],
)
def test_a_real_charge_is_exact(user, units, cost, left):
    fund(user, "10")
    route = factories.route(slug="cloudflare", is_own=False, price=D("0.0000075"))
    job_id = uuid.uuid4()

    charge = charge_reserve(job_id=job_id, user=user, card=route.card, route=route, units=units)
    charge.refresh_from_db()
    assert (charge.unit_price, charge.units, charge.amount) == (D("0.0000075"), units, cost)
    assert balance(wallet_for(user)) == left
    assert balance(holds_for(user)) == cost

    charge_post(job_id=job_id)
    assert balance(wallet_for(user)) == left
    assert balance(holds_for(user)) == 0
    assert balance(system_account(AccountKind.PROVIDER_PAYABLE)) == cost
    assert entries_total(wallet_for(user)) == left


def test_a_wallet_can_be_spent_to_exactly_zero(user):
    # 5 - 4.9 - 0.1 is not 0 in binary floating point; the ledger's arithmetic is decimal.
    fund(user, "5")
    wallet, holds = wallet_for(user), holds_for(user)
    for n, amount in enumerate([D("4.9"), D("0.0999999"), D("0.0000001")]):
        ledger_post(
            kind="reserve", idempotency_key=f"k{n}", entries=[(wallet, -amount), (holds, amount)]
        )
    assert balance(wallet) == 0
    assert entries_total(wallet) == 0


def test_every_transaction_sums_to_zero(user):
    fund(user, "10")
    route = factories.route(price=D("0.0002"))
    posted, voided = uuid.uuid4(), uuid.uuid4()
    charge_reserve(job_id=posted, user=user, card=route.card, route=route, units=3)
    charge_post(job_id=posted)
    charge_reserve(job_id=voided, user=user, card=route.card, route=route)
    charge_void(job_id=voided)
    credit_refund(user=user, amount=D("1.25"), reason="asked for it")

    kinds = set()
    for txn in LedgerTransaction.objects.all():
        amounts = list(txn.entries.values_list("amount", flat=True))
        assert len(amounts) >= 2, txn
        assert sum(amounts, D(0)) == 0, txn
        kinds.add(txn.kind)
    assert kinds == {"top_up", "reserve", "post", "void", "refund"}
    for account in LedgerAccount.objects.all():
        # A wallet caches its balance; every other account (a user's holds, a shared
        # system account) caches none, so no charge has to update its row.
        if account.kind == AccountKind.WALLET:
            assert account.balance == entries_total(account), account
        else:
            assert account.balance is None, account
    # The top-up: clearing paid 10.50, the wallet got 10, the platform's fee 0.50.
    assert balance(system_account(AccountKind.FEE_REVENUE)) == D("0.50")
    assert balance(system_account(AccountKind.INFERENCE_REVENUE)) == D("0.0006")
    assert balance(system_account(AccountKind.PAYMENT_CLEARING)) == D("-10.50") + D("1.25")
    assert balance(wallet_for(user)) == D("10") - D("0.0006") - D("1.25")


def test_an_unbalanced_transaction_is_refused(user):
    wallet, grants = wallet_for(user), system_account(AccountKind.GRANTS)
    with pytest.raises(ValueError) as raised:
        ledger_post(
            kind="grant", idempotency_key="lopsided", entries=[(grants, D("-1")), (wallet, D("2"))]
        )
    assert str(raised.value) == UNBALANCED.format(total=D("1.0000000000"))
    assert not LedgerTransaction.objects.exists()
    assert not LedgerEntry.objects.exists()
    assert balance(wallet) == 0


def test_entries_are_never_updated_or_deleted(user):
    txn = fund(user, "10")
    entry = txn.entries.get(account=wallet_for(user))

    entry.amount = D("1000")
    with pytest.raises(AppendOnly):
        entry.save()
    with pytest.raises(AppendOnly):
        entry.delete()

    entry.refresh_from_db()
    assert entry.amount == D("10")
    assert txn.entries.count() == 3
    assert balance(wallet_for(user)) == D("10")


def test_the_database_refuses_a_negative_wallet(user):
    # QuerySet.update() bypasses the model; the CHECK constraint does not.
    fund(user, "10")
    wallet = wallet_for(user)
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerAccount.objects.filter(pk=wallet.pk).update(balance=D("-0.0000000001"))
    assert balance(wallet) == D("10")
    # System accounts may go negative: payment clearing is what cards owe us.
    assert balance(system_account(AccountKind.PAYMENT_CLEARING)) == D("-10.50")


def test_an_overdraft_is_refused_with_402_and_records_nothing(user):
    fund(user, "5")
    wallet, holds = wallet_for(user), holds_for(user)
    before = LedgerTransaction.objects.count()
    with pytest.raises(InsufficientCredits) as raised:
        ledger_post(
            kind="reserve",
            idempotency_key="too-much",
            entries=[(wallet, D("-5.0000000001")), (holds, D("5.0000000001"))],
        )
    error = raised.value
    assert (error.status, error.code) == (402, "insufficient_credits")
    assert error.message == INSUFFICIENT_CREDITS.format(balance="$5", cost="$5.0000000001")
    assert error.extra == {"balance": "5", "cost": "5.0000000001"}
    assert LedgerTransaction.objects.count() == before
    assert balance(wallet) == D("5")
    assert balance(holds) == 0


def test_a_reversal_mirrors_the_original(user):
    original = fund(user, "10")
    before = {e.account_id: e.amount for e in original.entries.all()}

    reversal = ledger_reverse(original=original, memo="card disputed").transaction

    assert reversal.kind == "reversal"
    assert reversal.reverses == original
    assert {e.account_id: e.amount for e in reversal.entries.all()} == {
        account: -amount for account, amount in before.items()
    }
    # The original is untouched, and every balance is back where it started.
    assert {e.account_id: e.amount for e in original.entries.all()} == before
    for account in LedgerAccount.objects.all():
        assert balance(account) == 0
        assert entries_total(account) == 0
    # Reversing again is the same reversal, not a second one.
    again = ledger_reverse(original=original, memo="again")
    assert (again.transaction, again.created) == (reversal, False)
    assert LedgerTransaction.objects.filter(kind="reversal").count() == 1


def test_the_database_lets_a_transaction_be_reversed_once(user):
    """Under another key (so not an idempotent replay), a second reversal of the same
    transaction is refused by the database's partial unique index; the transactions that
    reverse nothing (every charge's) are not in that index and never collide."""
    original = fund(user, "10")
    ledger_reverse(original=original, memo="card disputed")
    fund(user, "5")
    fund(user, "20")  # two more that reverse nothing, and enough for a second reversal
    with pytest.raises(IntegrityError), transaction.atomic():
        ledger_post(
            kind="reversal",
            idempotency_key=f"another-reversal:{original.pk}",
            entries=[(entry.account, -entry.amount) for entry in original.entries.all()],
            reverses=original,
        )
    assert LedgerTransaction.objects.filter(reverses=original).count() == 1
    assert LedgerTransaction.objects.filter(reverses__isnull=True).count() == (
        LedgerTransaction.objects.count() - 1
    )
    assert list(original.reversed_by.values_list("kind", flat=True)) == ["reversal"]


def test_a_reversal_cannot_take_a_wallet_below_zero(user):
    original = fund(user, "10")
    credit_refund(user=user, amount=D("6"), reason="partial refund")
    with pytest.raises(InsufficientCredits):
        ledger_reverse(original=original, memo="chargeback")
    assert not LedgerTransaction.objects.filter(kind="reversal").exists()
    assert balance(wallet_for(user)) == D("4")


def test_an_idempotency_key_replay_returns_the_first_transaction_unchanged(user):
    wallet, grants = wallet_for(user), system_account(AccountKind.GRANTS)
    first = ledger_post(
        kind="grant",
        idempotency_key="grant:replayed",
        entries=[(grants, D("-1")), (wallet, D("1"))],
        memo="welcome",
    )
    replay = ledger_post(
        kind="grant",
        idempotency_key="grant:replayed",
        entries=[(grants, D("-7")), (wallet, D("7"))],
        memo="a different body",
    )
    assert first.created is True
    assert replay.created is False
    assert replay.transaction.pk == first.transaction.pk
    replay.transaction.refresh_from_db()
    assert replay.transaction.memo == "welcome"
    assert sorted(replay.transaction.entries.values_list("amount", flat=True)) == [D(-1), D(1)]
    assert balance(wallet) == D("1")
    assert LedgerTransaction.objects.count() == 1


def test_completing_a_top_up_twice_credits_once(user):
    top_up = top_up_create(user=user, credit=D("10"), provider="dev")
    first = top_up_complete(top_up=top_up)
    second = top_up_complete(top_up=top_up)
    assert (first.created, second.created) == (True, False)
    assert second.transaction == first.transaction
    assert balance(wallet_for(user)) == D("10")
    top_up.refresh_from_db()
    assert (top_up.status, top_up.transaction) == ("completed", first.transaction)
