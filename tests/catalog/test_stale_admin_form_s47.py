"""Two operators on one card (session 47's probe): the second one's form, opened before the
first one saved, put the first one's price and status back when saved, silently, and the
price history recorded the old price as a new edit. A stale form is now refused whole."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from catalog.admin import UNCHECKED_FORM
from catalog.models import ModelCard, PriceChange
from catalog.services import price_route_save
from tests import factories
from tests.catalog.test_admin import form_data

pytestmark = pytest.mark.django_db


def test_a_form_opened_before_anothers_save_is_refused_and_changes_nothing(staff_client):
    route = factories.route(price=Decimal("0.0001"))
    card = route.card
    url = reverse("admin:catalog_modelcard_change", args=[card.pk])
    stale = form_data(staff_client.get(url))  # the second operator opens the form

    # The first operator raises the price (no save of the card itself) and moves it to beta.
    route.price = Decimal("0.0005")
    price_route_save(route=route, note="first operator")
    card.refresh_from_db()
    card.status = ModelCard.Status.BETA
    card.save()
    history = PriceChange.objects.count()

    stale["summary"] = "The second operator's better summary."
    refused = staff_client.post(url, stale)

    assert refused.status_code == 200  # the form again, with the reason
    assert "Someone else saved this model after you opened this form" in refused.content.decode()
    card.refresh_from_db()
    route.refresh_from_db()
    assert (card.status, route.price) == (ModelCard.Status.BETA, Decimal("0.0005"))
    assert card.summary != stale["summary"]
    assert PriceChange.objects.count() == history

    # Reloaded, the same change saves over the newer state.
    fresh = form_data(staff_client.get(url))
    fresh["summary"] = stale["summary"]
    assert staff_client.post(url, fresh).status_code == 302
    card.refresh_from_db()
    route.refresh_from_db()
    assert (card.summary, card.status, route.price) == (
        stale["summary"], ModelCard.Status.BETA, Decimal("0.0005"),
    )  # fmt: skip


def test_a_form_posted_without_its_token_is_refused(staff_client):
    card = factories.route().card
    url = reverse("admin:catalog_modelcard_change", args=[card.pk])
    data = form_data(staff_client.get(url))
    del data["edit_token"]
    data["summary"] = "changed"
    refused = staff_client.post(url, data)
    assert refused.status_code == 200
    assert UNCHECKED_FORM.split("(")[0] in refused.content.decode()  # not "someone else"
    card.refresh_from_db()
    assert card.summary != "changed"


def test_a_route_form_opened_before_the_cards_save_is_refused(staff_client):
    """The route's own page is the other way to a price (outside check of session 47: a
    stale route form put back the price just set on the card's page, silently)."""
    route = factories.route(price=Decimal("0.0005"))
    route_url = reverse("admin:catalog_priceroute_change", args=[route.pk])
    stale = form_data(staff_client.get(route_url))

    card_url = reverse("admin:catalog_modelcard_change", args=[route.card.pk])
    fresh = form_data(staff_client.get(card_url))
    prices = [name for name in fresh if name.endswith("-price")]
    fresh[prices[0]] = "0.0006"
    assert staff_client.post(card_url, fresh).status_code == 302
    route.refresh_from_db()
    assert route.price == Decimal("0.0006")

    stale["provider"] = "renamed provider"
    refused = staff_client.post(route_url, stale)
    assert refused.status_code == 200
    assert "Someone else saved this price route" in refused.content.decode()
    route.refresh_from_db()
    assert (route.price, route.provider) == (
        Decimal("0.0006"),
        fresh[prices[0].replace("-price", "-provider")],
    )

    again = form_data(staff_client.get(route_url))
    again["provider"] = "renamed provider"
    assert staff_client.post(route_url, again).status_code == 302
    route.refresh_from_db()
    assert (route.price, route.provider) == (Decimal("0.0006"), "renamed provider")
