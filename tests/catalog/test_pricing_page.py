"""/pricing: every listed model's price on every route, and how billing works, on one page."""

from __future__ import annotations

import html
import io
import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.services.topups import top_up_quote
from catalog import pricing
from catalog.models import ModelCard, PriceRoute
from catalog.paths import card_path
from catalog.services import price_route_save
from tests import factories

pytestmark = pytest.mark.django_db

PRICING = "/pricing"


@pytest.fixture
def seeded():
    call_command("seed_catalog", stdout=io.StringIO())


def text_of(fragment: str) -> str:
    """What a reader sees: tags dropped, entities decoded, whitespace collapsed."""
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()
    return re.sub(r" ([).,:;])", r"\1", text)


def model_rows(body: str) -> dict[str, str]:
    """The price table's models: model id -> the HTML of its <tbody> (its route rows)."""
    return dict(re.findall(r'<tbody data-model-id="([^"]+)">(.*?)</tbody>', body, flags=re.S))


def route_cells(tbody: str) -> dict[str, list[str]]:
    """A model's routes: route slug -> the text of each of its cells."""
    rows = re.findall(r'<tr data-route="([^"]+)">(.*?)</tr>', tbody, flags=re.S)
    return {
        slug: [text_of(cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
        for slug, row in rows
    }


def test_every_listed_model_and_route_with_its_exact_price(client, seeded):
    response = client.get(PRICING)
    assert response.status_code == 200
    body = response.content.decode()
    tables = model_rows(body)
    cards = ModelCard.objects.published().select_related("organisation")
    assert set(tables) == {c.model_id for c in cards if not c.is_past_sunset}
    for card in cards:
        tbody = tables[card.model_id]
        assert f'href="{card_path(card)}"' in tbody
        routes = route_cells(tbody)
        active = PriceRoute.objects.filter(card=card, is_active=True)
        assert set(routes) == {r.slug for r in active}, card.model_id
        for route in active:
            cells = " | ".join(routes[route.slug])
            approx = "~" if route.is_estimate else ""
            assert f"{approx}{pricing.format_usd(route.price)} {route.get_unit_display()}" in cells
            per_1k = pricing.format_usd(pricing.per_thousand(route.price))
            assert f"{approx}{per_1k} per 1k {route.unit}s" in cells
            assert routes[route.slug][-1] == ("Yes" if route.byok_available else "No")
    # The seed's figures, as the model pages print them.
    detr = route_cells(tables["facebook/detr-resnet-50"])
    assert detr["vitrine"][3:] == ["$0.0002 per image", "$0.20 per 1k images", "No"]
    assert detr["cloudflare"] == [  # the model and status cells span its routes
        "Cloudflare Workers AI Beta",
        "$0.0000075 per request",
        "$0.0075 per 1k requests",
        "Yes",
    ]
    assert "Live" in detr["vitrine"][1]
    rtdetr = route_cells(tables["PekingU/rtdetr_r50vd"])
    assert rtdetr["vitrine"][1] == "Coming soon"
    assert rtdetr["vitrine"][3] == "~$0.000047 per image"
    assert rtdetr["vitrine"][4] == "~$0.047 per 1k images"


def test_drafts_and_routes_taken_off_are_not_listed(client, db):
    shown = factories.route(card=factories.card(display_name="Shown DETR"))
    factories.route(card=factories.card(display_name="Draft DETR", is_published=False))
    later = timezone.now() + timedelta(days=3)
    factories.route(card=factories.card(display_name="Scheduled DETR", published_at=later))
    factories.route(card=shown.card, slug="old", provider="Old Cloud", is_own=False,
                    is_active=False)  # fmt: skip
    body = client.get(PRICING).content.decode()
    assert "Shown DETR" in body
    assert "Draft DETR" not in body and "Scheduled DETR" not in body
    assert "Old Cloud" not in body
    assert set(route_cells(model_rows(body)[shown.card.model_id])) == {"vitrine"}


def test_lifecycle_deprecated_with_sunset_and_retired_apart_without_a_price(client, db):
    live = factories.card(display_name="Current DETR")
    factories.route(card=live)
    deprecated = factories.card(
        status=ModelCard.Status.DEPRECATED, sunset_date=date(2099, 3, 31), replacement=live
    )
    factories.route(card=deprecated, price=Decimal("0.0004"))
    retired = factories.card(
        display_name="Gone DETR",
        status=ModelCard.Status.RETIRED,
        sunset_date=date(2020, 6, 30),
        replacement=live,
    )
    factories.route(card=retired, price=Decimal("0.0003"))
    no_price = factories.card(status=ModelCard.Status.COMING_SOON, display_name="Unpriced DETR")

    body = client.get(PRICING).content.decode()
    tables = model_rows(body)
    assert "Deprecated sunset 31 Mar 2099" in text_of(tables[deprecated.model_id])
    assert "$0.0004 per image" in text_of(tables[deprecated.model_id])
    assert retired.model_id not in tables and "$0.0003" not in body
    retired_line = text_of(re.search(r'<p[^>]*id="retired-models">.*?</p>', body, re.S)[0])
    assert retired_line == "Retired, no longer callable: Gone DETR (use Current DETR)."
    assert "Coming soon No price yet" in text_of(tables[no_price.model_id])


def test_billing_in_plain_words_with_the_fee_computed_from_the_code(client, db, settings):
    settings.VITRINE_MIN_TOP_UP = Decimal("7")
    settings.VITRINE_MAX_TOP_UP = Decimal("2500")
    settings.VITRINE_SIGNUP_CREDIT = Decimal("1")
    text = text_of(client.get(PRICING).content.decode())
    credit = pricing.EXAMPLE_TOP_UP
    fee, total = top_up_quote(credit)  # what the top-up form charges
    assert (
        f"{pricing.format_usd(credit)} of credit costs {pricing.format_usd(total)}: "
        f"the {pricing.format_usd(fee)} fee is added to what you pay"
    ) in text
    assert "$10 of credit costs $10.50" in text  # the seed's worked example, as written
    assert "5% at top-up, never per call" in text
    assert "Top-ups run from $7 to $2,500 of credit" in text
    assert "A new account gets $1 of credit" in text
    assert "not charged to your wallet and carries no fee" in text  # BYOK
    assert "failed, cancelled or timed-out job is released at $0" in text
    assert "402 insufficient_credits" in text


def test_links_to_topping_up_and_the_api_docs(client, db, django_user_model):
    body = client.get(PRICING).content.decode()
    assert 'href="/accounts/signup/"' in body and 'href="/docs/api"' in body
    member = django_user_model.objects.create_user("payer", "payer@example.com", "pw-payer-1")
    client.force_login(member)
    body = client.get(PRICING).content.decode()
    assert 'href="/account/#top-up">Top up credit</a>' in body
    assert 'href="/docs/api"' in body


def test_a_price_saved_as_the_admin_saves_it_shows_on_the_next_request(client, db, staff):
    route = factories.route(price=Decimal("0.0002"))
    first = client.get(PRICING)
    assert first["X-Cache"] == "miss" and "$0.0002 per image" in text_of(first.content.decode())
    assert client.get(PRICING)["X-Cache"] == "hit"  # the page is cached, as /models is

    route.price = Decimal("0.00035")
    price_route_save(route=route, changed_by=staff, note="admin edit")

    after = client.get(PRICING)
    assert after["X-Cache"] == "miss"
    body = text_of(after.content.decode())
    assert "$0.00035 per image" in body and "$0.35 per 1k images" in body
    assert "$0.0002 per image" not in body


def queries_for(client) -> int:
    cache.clear()
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(PRICING).status_code == 200
    return len(ctx.captured_queries)


def test_the_query_count_does_not_grow_with_the_catalogue(client, seeded):
    small = queries_for(client)
    org = factories.organisation()
    task = factories.task()
    cards = ModelCard.objects.bulk_create(
        ModelCard(
            organisation=org,
            task=task,
            slug=f"bulk-{i}",
            display_name=f"Bulk {i}",
            summary="detr",
            status="live",
        )
        for i in range(300)
    )
    PriceRoute.objects.bulk_create(
        PriceRoute(card=c, slug=slug, provider=slug, price=Decimal("0.0001"))
        for c in cards
        for slug in ("vitrine", "other")
    )
    assert queries_for(client) == small
    assert small <= 3  # the cards with their joins, their routes, the next clock change
    assert len(model_rows(client.get(PRICING).content.decode())) >= 300


def test_every_page_links_to_pricing_in_its_nav_and_footer(client, db):
    body = client.get("/models").content.decode()
    nav = re.search(r'<nav class="site-nav".*?</nav>', body, re.S)[0]
    footer = re.search(r'<footer class="site-footer">.*?</footer>', body, re.S)[0]
    assert '<a href="/pricing">Pricing</a>' in nav
    assert '<a href="/pricing">Pricing</a>' in footer
    own = client.get(PRICING).content.decode()
    assert '<a href="/pricing" aria-current="page">Pricing</a>' in own


def test_in_the_sitemap_and_llms_txt(client, db):
    assert "<loc>http://testserver/pricing</loc>" in client.get("/sitemap.xml").content.decode()
    assert "[Pricing](http://testserver/pricing)" in client.get("/llms.txt").content.decode()


def test_no_inline_script_or_style_under_the_sites_policy(client, seeded, settings):
    response = client.get(PRICING)
    body = response.content.decode()
    assert response["Content-Security-Policy"] == settings.VITRINE_CSP
    assert " style=" not in body and "<style" not in body
    assert not re.search(r"<script(?![^>]*\bsrc=)", body)
    # Every table scrolls in its own labelled box (the page itself never scrolls sideways).
    assert '<div class="scroll" tabindex="0" role="region" aria-label="' in body
