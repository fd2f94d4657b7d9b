from __future__ import annotations

from decimal import Decimal

import pytest

from catalog.pricing import (
    format_usd,
    image_cost,
    per_thousand,
    price_with_fee,
    top_up_total,
    units_per_credit,
)

D = Decimal


@pytest.mark.parametrize(
    ("unit_price", "per_1k", "with_fee", "per_10_dollars"),
    [
        (D("0.0002"), D("0.2"), D("0.00021"), 50_000),  # DETR R50, seed 000
        (D("0.0000075"), D("0.0075"), D("0.000007875"), 1_333_333),  # Cloudflare, seed 001
        (D("0.000047"), D("0.047"), D("0.00004935"), 212_765),  # RT-DETR estimate, seed 004
        (D("0.0001"), D("0.1"), D("0.000105"), 100_000),  # YOLOS tiny
    ],
)
def test_seed_prices(unit_price, per_1k, with_fee, per_10_dollars):
    assert per_thousand(unit_price) == per_1k
    assert price_with_fee(unit_price) == with_fee
    assert units_per_credit(credit=D("10"), unit_price=unit_price) == per_10_dollars


@pytest.mark.parametrize(
    ("unit_price", "images", "byok", "cost"),
    [
        (D("0.0000075"), 1, False, D("0.0000075")),
        (D("0.0000075"), 1_000_000, False, D("7.5")),
        (D("0.0002"), 3, False, D("0.0006")),
        (D("0.0002"), 3, True, D("0")),
    ],
)
def test_image_cost_is_exact_and_byok_is_free(unit_price, images, byok, cost):
    assert image_cost(unit_price=unit_price, images=images, byok=byok) == cost


@pytest.mark.parametrize(
    ("credit", "total"), [(D("10"), D("10.50")), (D("5"), D("5.25")), (D("0.01"), D("0.0105"))]
)
def test_the_fee_is_charged_at_top_up(credit, total):
    assert top_up_total(credit) == total


def test_a_free_route_has_no_per_credit_count():
    assert units_per_credit(credit=D("10"), unit_price=D("0")) is None


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (D("0.0002"), "$0.0002"),
        (D("0.0000075"), "$0.0000075"),
        (D("0.047"), "$0.047"),
        (D("10.5"), "$10.50"),
        (D("10"), "$10"),
        (D("0.20"), "$0.20"),
    ],
)
def test_format_usd(amount, text):
    assert format_usd(amount) == text
