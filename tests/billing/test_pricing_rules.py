"""The fee rules of a top-up and the seed prices, as tables of pure arithmetic.

The platform's 5% fee is charged when credit is bought, never per call: to receive C of
credit a user pays C + fee, the fee rounded half up to the cent so the card is charged whole
cents and the ledger records exactly what the card paid.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.services.topups import (
    TOP_UP_TOO_LARGE,
    TOP_UP_TOO_SMALL,
    WHOLE_CENTS,
    top_up_create,
    top_up_quote,
)
from catalog import seed
from catalog.errors import ApplicationError
from catalog.pricing import (
    TOP_UP_FEE_RATE,
    image_cost,
    per_thousand,
    price_with_fee,
    units_per_credit,
)

D = Decimal


@pytest.mark.parametrize(
    ("credit", "fee", "total"),
    [
        (D("5"), D("0.25"), D("5.25")),  # the smallest top-up
        (D("10"), D("0.50"), D("10.50")),
        (D("12.34"), D("0.62"), D("12.96")),  # 0.617 -> 0.62
        (D("100"), D("5"), D("105")),
        (D("10000"), D("500"), D("10500")),  # the largest top-up
        # Exact halves of a cent: half up, where banker's rounding would go down.
        (D("12.50"), D("0.63"), D("13.13")),  # 0.625
        (D("10.10"), D("0.51"), D("10.61")),  # 0.505
        (D("5.30"), D("0.27"), D("5.57")),  # 0.265
        # Just under a half: down.
        (D("12.49"), D("0.62"), D("13.11")),  # 0.6245
    ],
)
def test_top_up_fee_table(credit, fee, total):
    assert top_up_quote(credit) == (fee, total)


@given(cents=st.integers(min_value=500, max_value=1_000_000))
def test_every_whole_cent_top_up_is_charged_whole_cents(cents):
    credit = D(cents) / 100
    fee, total = top_up_quote(credit)
    assert total == credit + fee
    assert fee == fee.quantize(D("0.01"))
    assert total == total.quantize(D("0.01"))
    # Never more than half a cent away from exactly 5%.
    assert abs(fee - credit * TOP_UP_FEE_RATE) <= D("0.005")


def _seed_routes() -> dict[tuple[str, str], Decimal]:
    return {
        (card["slug"], route["slug"]): route["price"]
        for card in seed.SEED["cards"]
        for route in card["routes"]
    }


# (card, route): unit price, per 1k images, per image once the top-up fee is counted,
# images that $10 of credit runs (for which the card is charged $10.50).
SEED_FIGURES = [
    ("detr-resnet-50", "vitrine", D("0.0002"), D("0.2"), D("0.00021"), 50_000),
    ("detr-resnet-50", "cloudflare", D("0.0000075"), D("0.0075"), D("0.000007875"), 1_333_333),
    ("conditional-detr-resnet-50", "vitrine", D("0.0002"), D("0.2"), D("0.00021"), 50_000),
    ("rtdetr_r50vd", "vitrine", D("0.000047"), D("0.047"), D("0.00004935"), 212_765),
    ("yolos-tiny", "vitrine", D("0.0001"), D("0.1"), D("0.000105"), 100_000),
]


def test_the_table_covers_every_seed_route():
    assert {(card, route) for card, route, *_ in SEED_FIGURES} == set(_seed_routes())


@pytest.mark.parametrize(
    ("card", "route", "unit_price", "per_1k", "with_fee", "per_10_dollars"), SEED_FIGURES
)
def test_seed_figures(card, route, unit_price, per_1k, with_fee, per_10_dollars):
    assert _seed_routes()[card, route] == unit_price
    assert per_thousand(unit_price) == per_1k
    assert image_cost(unit_price=unit_price, images=1000, byok=False) == per_1k
    assert price_with_fee(unit_price) == with_fee
    assert units_per_credit(credit=D("10"), unit_price=unit_price) == per_10_dollars
    # $10 of credit costs $10.50 on the card, and runs exactly that many images.
    assert top_up_quote(D("10")) == (D("0.50"), D("10.50"))
    assert image_cost(unit_price=unit_price, images=per_10_dollars, byok=False) <= D("10")
    assert image_cost(unit_price=unit_price, images=per_10_dollars + 1, byok=False) > D("10")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("credit", "code", "message"),
    [
        (D("4.99"), "top_up_too_small", TOP_UP_TOO_SMALL.format(minimum="$5")),
        (D("10000.01"), "top_up_too_large", TOP_UP_TOO_LARGE.format(maximum="$10,000")),
        (D("10.005"), "top_up_not_whole_cents", WHOLE_CENTS),
    ],
)
def test_top_up_limits(django_user_model, credit, code, message):
    user = django_user_model.objects.create_user("payer")
    with pytest.raises(ApplicationError) as raised:
        top_up_create(user=user, credit=credit, provider="dev")
    assert (raised.value.code, raised.value.message) == (code, message)
    assert not user.top_ups.exists()


@pytest.mark.django_db
def test_a_top_up_records_the_quote(django_user_model):
    user = django_user_model.objects.create_user("payer")
    top_up = top_up_create(user=user, credit=D("12.34"), provider="dev")
    top_up.refresh_from_db()
    assert (top_up.credit, top_up.fee, top_up.total) == (D("12.34"), D("0.62"), D("12.96"))
    assert top_up.status == "pending"
