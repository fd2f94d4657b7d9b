"""Per-job charges: reserve when accepted, post on success, void on failure; BYOK; key limits."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import AccountKind, Charge, LedgerTransaction
from billing.selectors import account_balance
from billing.services.charges import (
    MODEL_NOT_ALLOWED,
    SPEND_CAP_REACHED,
    charge_post,
    charge_reserve,
    charge_void,
)
from billing.services.keys import api_key_create, provider_key_save
from billing.services.ledger import (
    INSUFFICIENT_CREDITS,
    InsufficientCredits,
    holds_for,
    system_account,
)
from billing.services.ledger import wallet_for as _wallet_for
from billing.services.topups import top_up_complete, top_up_create
from catalog.errors import ApplicationError
from catalog.models import PriceRoute
from catalog.services import price_route_save
from tests import factories

D = Decimal
pytestmark = pytest.mark.django_db


@pytest.fixture
def user(django_user_model):
    user = django_user_model.objects.create_user("payer", "payer@example.com", "pw-payer-1")
    top_up_complete(top_up=top_up_create(user=user, credit=D("10"), provider="dev"))
    return user


@pytest.fixture
def broke_user(django_user_model):
    return django_user_model.objects.create_user("broke", "broke@example.com", "pw-broke-1")


@pytest.fixture
def own_route() -> PriceRoute:
    return factories.route(slug="vitrine", is_own=True, price=D("0.0002"))


@pytest.fixture
def provider_route() -> PriceRoute:
    return factories.route(
        slug="cloudflare",
        provider="Cloudflare Workers AI",
        is_own=False,
        byok_available=True,
        price=D("0.0000075"),
    )


def balances(user) -> dict[str, Decimal]:
    """Every balance a charge can move, fresh from the database."""
    return {
        "wallet": _wallet_for(user).balance,
        AccountKind.HOLDS: account_balance(holds_for(user)),
        **{
            kind: account_balance(system_account(kind))
            for kind in (AccountKind.INFERENCE_REVENUE, AccountKind.PROVIDER_PAYABLE)
        },
    }


def reserve(user, route, *, job_id=None, **kwargs) -> Charge:
    return charge_reserve(
        job_id=job_id or uuid.uuid4(), user=user, card=route.card, route=route, **kwargs
    )


@pytest.mark.parametrize(
    ("route_fixture", "units", "amount", "revenue"),
    [
        ("own_route", 1, D("0.0002"), AccountKind.INFERENCE_REVENUE),
        ("own_route", 3, D("0.0006"), AccountKind.INFERENCE_REVENUE),
        ("provider_route", 1, D("0.0000075"), AccountKind.PROVIDER_PAYABLE),
        ("provider_route", 4, D("0.00003"), AccountKind.PROVIDER_PAYABLE),
    ],
)
def test_reserve_then_post_moves_money_wallet_holds_revenue(
    request, user, route_fixture, units, amount, revenue
):
    route = request.getfixturevalue(route_fixture)
    start = balances(user)
    job_id = uuid.uuid4()

    charge = reserve(user, route, job_id=job_id, units=units)
    assert (charge.status, charge.amount, charge.would_be_amount) == ("reserved", amount, amount)
    assert charge.byok is False
    assert balances(user) == start | {"wallet": D("10") - amount, AccountKind.HOLDS: amount}

    posted = charge_post(job_id=job_id)
    assert posted.status == "posted"
    assert posted.settled_at is not None
    assert balances(user) == start | {"wallet": D("10") - amount, revenue: amount}

    # Posting again (a redelivered task) changes nothing.
    count = LedgerTransaction.objects.count()
    charge_post(job_id=job_id)
    charge_void(job_id=job_id)
    assert LedgerTransaction.objects.count() == count
    assert Charge.objects.get(job_id=job_id).status == "posted"
    assert balances(user) == start | {"wallet": D("10") - amount, revenue: amount}


@pytest.mark.parametrize("route_fixture", ["own_route", "provider_route"])
def test_a_failed_job_costs_nothing(request, user, route_fixture):
    route = request.getfixturevalue(route_fixture)
    start = balances(user)
    job_id = uuid.uuid4()
    reserve(user, route, job_id=job_id, units=2)
    assert balances(user)["wallet"] < D("10")

    voided = charge_void(job_id=job_id)

    assert voided.status == "voided"
    assert balances(user) == start
    # A success reported after the failure does not charge.
    charge_post(job_id=job_id)
    charge_void(job_id=job_id)
    assert Charge.objects.get(job_id=job_id).status == "voided"
    assert balances(user) == start
    assert list(
        LedgerTransaction.objects.filter(idempotency_key__endswith=str(job_id))
        .order_by("kind")
        .values_list("kind", flat=True)
    ) == ["reserve", "void"]


def test_settling_a_job_without_a_charge_is_a_no_op(user):
    assert charge_post(job_id=uuid.uuid4()) is None
    assert charge_void(job_id=uuid.uuid4()) is None


def test_402_when_the_wallet_cannot_cover_the_call(broke_user, own_route):
    top_up_complete(top_up=top_up_create(user=broke_user, credit=D("5"), provider="dev"))
    job_id = uuid.uuid4()
    with pytest.raises(InsufficientCredits) as raised:
        reserve(broke_user, own_route, job_id=job_id, units=25_001)  # $5.0002
    error = raised.value
    assert (error.status, error.code) == (402, "insufficient_credits")
    assert error.type == "insufficient_credits"
    assert error.message == INSUFFICIENT_CREDITS.format(balance="$5", cost="$5.0002")
    assert error.as_dict()["error"]["balance"] == "5"
    # Nothing recorded: no charge, no hold, no ledger transaction.
    assert not Charge.objects.filter(job_id=job_id).exists()
    assert not LedgerTransaction.objects.filter(kind="reserve").exists()
    assert balances(broke_user)["wallet"] == D("5")
    assert account_balance(holds_for(broke_user)) == 0
    # Exactly the balance is fine.
    assert reserve(broke_user, own_route, units=25_000).amount == D("5")
    assert balances(broke_user)["wallet"] == 0


def test_one_charge_per_job(user, own_route):
    job_id = uuid.uuid4()
    first = reserve(user, own_route, job_id=job_id)
    second = reserve(user, own_route, job_id=job_id, units=5)
    assert second.pk == first.pk
    assert (second.units, second.amount) == (1, D("0.0002"))
    assert Charge.objects.filter(job_id=job_id).count() == 1
    assert LedgerTransaction.objects.filter(kind="reserve").count() == 1
    assert balances(user)["wallet"] == D("9.9998")
    assert account_balance(holds_for(user)) == D("0.0002")


def test_the_charge_records_the_price_in_force_and_is_never_repriced(user, staff, own_route):
    version = own_route.history.get()
    job_id = uuid.uuid4()
    charge = reserve(user, own_route, job_id=job_id, units=2)
    assert charge.price_version == version
    assert (charge.unit_price, charge.amount) == (D("0.0002"), D("0.0004"))

    own_route.price = D("0.0005")
    price_route_save(route=own_route, changed_by=staff, note="new GPUs cost more")
    new_version = own_route.history.order_by("-effective_at", "-id").first()
    assert new_version != version

    charge_post(job_id=job_id)
    charge.refresh_from_db()
    assert (charge.price_version, charge.unit_price, charge.amount) == (
        version,
        D("0.0002"),
        D("0.0004"),
    )
    assert account_balance(system_account(AccountKind.INFERENCE_REVENUE)) == D("0.0004")
    # The next job pays the new price, and says which version.
    later = reserve(user, PriceRoute.objects.get(pk=own_route.pk), units=2)
    assert (later.price_version, later.unit_price, later.amount) == (
        new_version,
        D("0.0005"),
        D("0.001"),
    )
    assert balances(user)["wallet"] == D("10") - D("0.0004") - D("0.001")


def test_the_current_price_comes_from_the_history_not_a_stale_route_object(user, own_route):
    stale = PriceRoute.objects.get(pk=own_route.pk)
    own_route.price = D("0.0003")
    price_route_save(route=own_route)
    assert stale.price == D("0.0002")
    assert reserve(user, stale).amount == D("0.0003")


@pytest.mark.parametrize("wallet_credit", [None, "10"])
def test_byok_is_free_and_metered(django_user_model, provider_route, wallet_credit):
    user = django_user_model.objects.create_user("byok")
    if wallet_credit:
        top_up_complete(top_up=top_up_create(user=user, credit=D(wallet_credit), provider="dev"))
    provider_key_save(user=user, provider="cloudflare", secret="cf-secret-token-1234")
    start = balances(user)
    transactions = LedgerTransaction.objects.count()
    job_id = uuid.uuid4()

    charge = reserve(user, provider_route, job_id=job_id, units=1000)

    assert charge.byok is True
    assert charge.amount == 0
    assert charge.would_be_amount == D("0.0075")
    assert charge.price_version == provider_route.history.get()
    assert balances(user) == start
    charge_post(job_id=job_id)
    assert Charge.objects.get(job_id=job_id).status == "posted"
    # No hold, no revenue, no fee: the wallet is never touched.
    assert balances(user) == start
    assert LedgerTransaction.objects.count() == transactions


def test_a_stored_key_for_a_route_without_byok_is_not_used(user, own_route):
    provider_key_save(user=user, provider="vitrine", secret="some-secret-1234")
    charge = reserve(user, own_route)
    assert (charge.byok, charge.amount) == (False, D("0.0002"))
    assert balances(user)["wallet"] == D("9.9998")


def test_another_users_byok_key_is_not_used(user, django_user_model, provider_route):
    other = django_user_model.objects.create_user("other")
    provider_key_save(user=other, provider="cloudflare", secret="cf-secret-token-1234")
    charge = reserve(user, provider_route)
    assert (charge.byok, charge.amount) == (False, D("0.0000075"))


def test_the_spend_cap_is_enforced_at_reservation(user, own_route):
    key, _ = api_key_create(user=user, name="ci", monthly_spend_cap=D("0.0004"))
    first = reserve(user, own_route, api_key=key)
    reserve(user, own_route, api_key=key)

    job_id = uuid.uuid4()
    with pytest.raises(ApplicationError) as raised:
        reserve(user, own_route, api_key=key, job_id=job_id)
    error = raised.value
    assert (error.status, error.code) == (402, "spend_cap_reached")
    assert error.message == SPEND_CAP_REACHED.format(cap="$0.0004", spent="$0.0004", cost="$0.0002")
    assert "$0.0004" in error.message
    assert not Charge.objects.filter(job_id=job_id).exists()
    assert balances(user)["wallet"] == D("9.9996")

    # A voided charge gives its share of the cap back.
    charge_void(job_id=first.job_id)
    assert reserve(user, own_route, api_key=key, job_id=job_id).amount == D("0.0002")
    # Another key, or no key, is not capped by this one.
    other, _ = api_key_create(user=user, name="other")
    assert reserve(user, own_route, api_key=other).amount == D("0.0002")
    assert reserve(user, own_route).amount == D("0.0002")


def test_the_spend_cap_is_per_calendar_month(user, own_route):
    key, _ = api_key_create(user=user, name="ci", monthly_spend_cap=D("0.0002"))
    reserve(user, own_route, api_key=key)
    with pytest.raises(ApplicationError):
        reserve(user, own_route, api_key=key)
    next_month = timezone.now() + timedelta(days=32)
    assert reserve(user, own_route, api_key=key, now=next_month).amount == D("0.0002")


def test_a_zero_cap_refuses_every_paid_call(user, own_route):
    key, _ = api_key_create(user=user, name="frozen", monthly_spend_cap=D("0"))
    with pytest.raises(ApplicationError) as raised:
        reserve(user, own_route, api_key=key)
    assert raised.value.code == "spend_cap_reached"


def test_the_allow_list_is_enforced_at_reservation(user, own_route):
    allowed = factories.route(price=D("0.0001"))
    key, _ = api_key_create(user=user, name="narrow", allowed_models=[allowed.card])

    job_id = uuid.uuid4()
    with pytest.raises(ApplicationError) as raised:
        reserve(user, own_route, api_key=key, job_id=job_id)
    error = raised.value
    assert (error.status, error.code) == (403, "model_not_allowed")
    assert error.message == MODEL_NOT_ALLOWED.format(model_id=own_route.card.model_id)
    assert not Charge.objects.filter(job_id=job_id).exists()
    assert balances(user)["wallet"] == D("10")

    assert reserve(user, allowed, api_key=key).amount == D("0.0001")
    # An empty allow-list allows every model.
    open_key, _ = api_key_create(user=user, name="open")
    assert reserve(user, own_route, api_key=open_key).amount == D("0.0002")
