"""The site's shared page rules: one number format, the lifecycle order under "Featured",
retired pages with no buy path, og:/Twitter tags and the favicon on every page."""

from __future__ import annotations

import html
import io
import re
from datetime import date
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.template import Context, Template

from catalog.models import ModelCard
from tests import factories

pytestmark = pytest.mark.django_db

DETR = "/models/facebook/detr-resnet-50"


@pytest.fixture
def seeded():
    call_command("seed_catalog", stdout=io.StringIO())


def render(source: str, **context) -> str:
    return Template("{% load catalog_tags %}" + source).render(Context(context))


# --- one number format ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.0002"), "$0.0002"),
        (Decimal("0.0000075"), "$0.0000075"),
        (Decimal("0.2000000000"), "$0.20"),  # as stored: 10 places, trailing zeros
        (Decimal("0.047"), "$0.047"),
        (Decimal("10"), "$10"),
        (Decimal("10.5"), "$10.50"),
        (Decimal("10000"), "$10,000"),
        (Decimal("1234567.891"), "$1,234,567.891"),
        (Decimal("0"), "$0"),
        ("0.00021", "$0.00021"),
        (None, ""),
        ("", ""),
        ("cheap", ""),
    ],
)
def test_usd_filter(value, text):
    assert render("{{ v|usd }}", v=value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.0002"), "$0.20"),
        (Decimal("0.0000075"), "$0.0075"),
        (Decimal("0.000047"), "$0.047"),
        (Decimal("0.0001"), "$0.10"),
        (Decimal("12.5"), "$12,500"),
    ],
)
def test_per_1k_prices_have_at_least_two_decimals(value, text):
    assert render("{{ v|per_1k|usd }}", v=value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (50000, "50,000"),
        (66666, "66,666"),
        (999, "999"),
        (1_000_000, "1,000,000"),
        (0, "0"),
        (Decimal("25000"), "25,000"),
        (None, ""),
    ],
)
def test_count_filter(value, text):
    assert render("{{ v|count }}", v=value) == text


def test_prices_and_counts_read_the_same_on_every_page(client, seeded):
    """No "$0.2" next to "$0.20", no "50000" without its separator, anywhere."""
    pages = [
        "/models",
        DETR,
        "/models/PekingU/rtdetr_r50vd",
        "/compare?models=facebook/detr-resnet-50,hustvl/yolos-tiny",
        "/orgs/facebook",
    ]
    for url in pages:
        text = html.unescape(re.sub(r"<[^>]+>", " ", client.get(url).content.decode()))
        assert re.findall(r"\$\d+\.\d(?!\d)", text) == [], url  # one decimal: "$0.2"
        assert re.findall(r"\$\d{4,}", text) == [], url  # no separator: "$10000"
        assert re.findall(r"runs \d{4,} ", text) == [], url
    text = client.get(DETR).content.decode()
    assert "runs 50,000 images" in text and "$0.20 <small>per 1k images</small>" in text
    assert "$0.20</strong> per 1k images" in client.get("/models").content.decode()


# --- lifecycle order and retired pages ---------------------------------------------------
def ids(response) -> list[str]:
    return re.findall(r'data-model-id="([^"]+)"', response.content.decode())


def test_deprecated_then_retired_sort_last_under_featured(client, db):
    org = factories.organisation(slug="acme")
    retired = factories.card(organisation=org, slug="retired", status="retired", position=0)
    deprecated = factories.card(organisation=org, slug="old", status="deprecated", position=1)
    live_b = factories.card(organisation=org, slug="b", status="live", position=5)
    soon = factories.card(organisation=org, slug="soon", status="coming_soon", position=3)
    live_a = factories.card(organisation=org, slug="a", status="live", position=4)
    expected = [c.model_id for c in (soon, live_a, live_b, deprecated, retired)]
    assert ids(client.get("/models")) == expected
    assert ids(client.get("/models", {"sort": ""})) == expected
    assert ids(client.get("/orgs/acme")) == expected


def test_a_collection_keeps_its_order_with_models_on_their_way_out_last(client, db):
    from catalog.models import Collection, CollectionEntry

    cards = [
        factories.card(status=status)
        for status in ("retired", "live", "deprecated", "coming_soon", "live")
    ]
    collection = Collection.objects.create(slug="picks", name="Picks")
    for position, card in enumerate(cards):
        CollectionEntry.objects.create(collection=collection, card=card, position=position)
    order = [cards[1], cards[3], cards[4], cards[2], cards[0]]
    assert ids(client.get("/collections/picks")) == [c.model_id for c in order]


@pytest.fixture
def retired(seeded):
    card = ModelCard.objects.get(slug="yolos-tiny")
    card.status = ModelCard.Status.RETIRED
    card.sunset_date = date(2026, 6, 30)
    card.replacement = ModelCard.objects.get(slug="detr-resnet-50")
    card.save()
    return card


def test_a_retired_page_shows_the_replacement_first_and_no_buy_path(client, retired):
    body = client.get("/models/hustvl/yolos-tiny").content.decode()
    main = body[body.index("<main") :]
    replacement = main.index('href="/models/facebook/detr-resnet-50"')
    assert replacement < main.index("<h1>")
    assert "Use DETR ResNet-50 instead" in main
    assert "Retired on 30 Jun 2026" in main and "410 model_retired" in main
    for buy in ('id="pricing"', "per 1k", "top-up (you pay", 'id="api"', "curl ", "/try"):
        assert buy not in main, buy
    assert re.search(r"runs [\d,]+ images", main) is None
    # What it was stays readable: specs, benchmarks' sources, FAQ.
    assert 'id="specs"' in main and 'id="faq"' in main


def test_a_deprecated_page_keeps_its_buy_path_under_the_notice(client, seeded):
    card = ModelCard.objects.get(slug="yolos-tiny")
    card.status = ModelCard.Status.DEPRECATED
    card.sunset_date = date(2027, 3, 31)
    card.replacement = ModelCard.objects.get(slug="detr-resnet-50")
    card.save()
    main = client.get("/models/hustvl/yolos-tiny").content.decode().split("<main", 1)[1]
    assert main.index('id="lifecycle"') < main.index("<h1>") < main.index('id="pricing"')
    assert "runs 100,000 images" in main and 'data-snippet="curl"' in main and "/try" in main


def test_a_retired_card_tile_has_no_price_and_names_its_replacement(client, retired):
    body = client.get("/models").content.decode()
    tile = body[body.index('data-model-id="hustvl/yolos-tiny"') :].split("\n</li>", 1)[0]
    assert "per 1k" not in tile
    assert "DETR ResNet-50" in tile and "Retired" in tile


# --- page metadata, favicon, escaping ---------------------------------------------------
META = re.compile(r'<meta (?:property|name)="((?:og|twitter):[a-z:_]+)" content="([^"]*)">')


@pytest.mark.parametrize(
    "url",
    [
        "/models",
        DETR,
        "/models/PekingU/rtdetr_r50vd",
        "/compare?models=facebook/detr-resnet-50,hustvl/yolos-tiny",
        "/collections/object-detection",
        "/orgs/facebook",
        f"{DETR}/try",
        "/accounts/login/",
        "/accounts/signup/",
        "/docs/api",
        "/models/nobody/nothing",
    ],
)
def test_every_page_has_filled_og_and_twitter_tags(client, seeded, url):
    body = client.get(url).content.decode()
    meta = dict(META.findall(body))
    title = html.unescape(re.search(r"<title>(.*?)</title>", body, re.S)[1]).strip()
    assert html.unescape(meta["og:title"]) == title
    assert html.unescape(meta["twitter:title"]) == title
    assert meta["og:description"].strip() and meta["og:description"] == meta["twitter:description"]
    assert meta["twitter:card"] == "summary_large_image"
    assert meta["og:image"] == "http://testserver/static/catalog/img/og.png"
    assert meta["og:url"].startswith("http://testserver/")


def test_model_pages_describe_themselves(client, seeded):
    meta = dict(META.findall(client.get(DETR).content.decode()))
    assert meta["og:title"].startswith("DETR ResNet-50 (facebook/detr-resnet-50)")
    assert meta["og:description"].startswith("Meta&#x27;s transformer-based object detector")
    assert meta["og:type"] == "article"
    assert meta["og:url"] == "http://testserver/models/facebook/detr-resnet-50"


def test_the_favicon_answers(client, db):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    assert response.content[:4] == b"\x00\x00\x01\x00"  # an ICO header
    body = client.get("/accounts/login/").content.decode()
    assert '<link rel="icon" href="/static/catalog/img/favicon.svg" type="image/svg+xml">' in body


def test_the_byok_help_text_shows_its_placeholders(client, db):
    factories.byok_route()
    client.force_login(factories.user())
    body = client.get("/account/").content.decode()
    assert "as &lt;account id&gt;:&lt;token&gt;." in body
    assert "<account id>" not in body


def test_the_api_reference_has_the_site_header(client, db):
    body = client.get("/docs/api").content.decode()
    assert 'class="site-header"' in body and 'id="swagger-ui"' in body
    assert "swagger-ui-bundle.js" in body and "/v1/openapi.json" in body
