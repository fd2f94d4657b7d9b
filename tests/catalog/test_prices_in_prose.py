"""Prices named in operator-written prose (a card's description, its FAQ answers) are price
tokens filled from the card's routes when the page is shown: a price change shows there at
once, as in the pricing box. The FAQ's JSON-LD is plain text."""

from __future__ import annotations

import io
import json
import re
from decimal import Decimal

import pytest

from catalog.models import FaqEntry
from catalog.pricing import fill_prices
from catalog.services import price_route_save
from tests import factories

pytestmark = pytest.mark.django_db


def test_fill_prices():
    prices = {"vitrine": Decimal("0.0002"), "cloudflare": Decimal("0.0000075")}
    text = "{price} here, {price:cloudflare} there, {price:nope} unknown, {prices} not a token"
    assert fill_prices(text, prices, default="vitrine") == (
        "$0.0002 here, $0.0000075 there, {price:nope} unknown, {prices} not a token"
    )
    assert fill_prices("{price}", {}, default=None) == "{price}"


@pytest.mark.parametrize(
    ("text", "filled"),
    [
        ("~{price_per_1k} per 1k images", "~$0.047 per 1k images"),
        ("{price_per_1k:cloudflare} per 1k requests", "$0.0075 per 1k requests"),
        ("{price} each, {price_per_1k} per 1k", "$0.000047 each, $0.047 per 1k"),
        ("{price_per_1k:nope} {price_per_1000}", "{price_per_1k:nope} {price_per_1000}"),
    ],
)
def test_fill_prices_per_thousand(text, filled):
    prices = {"vitrine": Decimal("0.000047"), "cloudflare": Decimal("0.0000075")}
    assert fill_prices(text, prices, default="vitrine") == filled


def _faq_json_ld(page: str) -> list[dict]:
    script = re.search(r'<script type="application/ld\+json">(.*?)</script>', page, re.S)
    return json.loads(script.group(1))["mainEntity"]


def test_a_price_change_shows_in_the_description_and_the_faq(client):
    card = factories.card(description="## Pricing\n\nIt costs {price} per image.")
    own = factories.route(card=card, price=Decimal("0.0001"))
    factories.route(card=card, slug="cloudflare", provider="Cloudflare Workers AI",
                    is_own=False, price=Decimal("0.0000075"))  # fmt: skip
    FaqEntry.objects.create(
        card=card, question="How much?", answer="{price} per image; {price:cloudflare} there."
    )
    url = f"/models/{card.model_id}"
    page = client.get(url).content.decode()
    assert "It costs $0.0001 per image." in page
    assert "$0.0001 per image; $0.0000075 there." in page
    assert _faq_json_ld(page)[0]["acceptedAnswer"]["text"] == (
        "$0.0001 per image; $0.0000075 there."
    )

    own.price = Decimal("0.00012")
    price_route_save(route=own, changed_by=None)  # as the admin saves it

    page = client.get(url).content.decode()
    # (The old price stays in the price history table, as it should.)
    assert "It costs $0.00012 per image." in page
    assert "$0.00012 per image; $0.0000075 there." in page
    assert _faq_json_ld(page)[0]["acceptedAnswer"]["text"].startswith("$0.00012 per image")


def test_the_faq_json_ld_is_plain_text_not_html(client):
    card = factories.card()
    factories.route(card=card)
    FaqEntry.objects.create(
        card=card, question="How do I call it?",
        answer="Send `Authorization: Bearer <key>` & an image, *raw* or as JSON.",
    )  # fmt: skip
    page = client.get(f"/models/{card.model_id}").content.decode()
    (entry,) = _faq_json_ld(page)
    assert entry["acceptedAnswer"]["text"] == (
        "Send Authorization: Bearer <key> & an image, raw or as JSON."
    )
    # Still safe inside the <script> element: no raw '<' in the page's JSON.
    script = re.search(r'<script type="application/ld\+json">(.*?)</script>', page, re.S)
    assert "<" not in script.group(1)


# A dollar amount typed into prose, however it is written: "$0.0002", "~$0.047", "$ 10",
# "USD 0.047", "0.047 USD".
TYPED_PRICE = re.compile(r"\$\s*\.?\d|\bUSD\s*\d|\d\s*USD\b")


def seeded_prose(item: dict) -> list[str]:
    """Every text of a seeded card a visitor reads as prose."""
    texts = [item["summary"], item["description"], item["coming_soon_note"]]
    texts += item["strengths"] + item["use_cases"]
    texts += [text for pair in item["faq"] for text in pair]
    texts += [value for _label, value in item["specs"]]
    texts += [table["caption"] for table in item["benchmarks"]]
    return texts


@pytest.mark.parametrize("text", ["~$0.047 per 1k images", "$ 10", "costs USD 0.2", "$.5"])
def test_the_typed_price_check_catches_every_spelling(text):
    assert TYPED_PRICE.search(text)


def test_the_seeded_prose_names_its_prices_by_token():
    """No card's description, FAQ, strengths, best-for or other prose carries a typed-in
    price that could go stale: prices are tokens, filled from the routes."""
    from catalog.seed import SEED

    typed = [
        (item["slug"], text)
        for item in SEED["cards"]
        for text in seeded_prose(item)
        if TYPED_PRICE.search(text)
    ]
    assert typed == []


def test_the_rt_detr_estimate_per_1k_follows_its_route(client):
    from django.core.management import call_command

    from catalog.models import PriceRoute

    call_command("seed_catalog", stdout=io.StringIO())
    url = "/models/PekingU/rtdetr_r50vd"
    said = "Hosted on Vitrine it will cost ~{} per 1k images (estimated, set at launch)."
    assert said.format("$0.047") in client.get(url).content.decode()

    route = PriceRoute.objects.get(card__slug="rtdetr_r50vd", slug="vitrine")
    route.price = Decimal("0.00005")
    price_route_save(route=route, changed_by=None)
    page = client.get(url).content.decode()
    assert said.format("$0.05") in page and said.format("$0.047") not in page


def test_every_figure_derived_from_an_estimated_price_is_marked(client):
    """A coming-soon model's price is an estimate: so are its with-fee price and what a
    top-up would buy (they read as firm figures)."""
    card = factories.card(status="coming_soon")
    factories.route(card=card, price=Decimal("0.000047"), is_estimate=True)
    text = " ".join(client.get(f"/models/{card.model_id}").content.decode().split())
    assert "~$0.00004935 per image with the 5% top-up fee included (estimated)." in text
    assert "(you pay $10.50) would run about 212,765 images at the estimated price." in text
