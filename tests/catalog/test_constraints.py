from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from catalog.models import BenchmarkRow, BenchmarkTable, ModelCard, PriceRoute
from tests import factories

pytestmark = pytest.mark.django_db


def violates(fn) -> bool:
    try:
        with transaction.atomic():
            fn()
    except IntegrityError:
        return True
    return False


def test_model_ids_are_unique_per_organisation():
    org = factories.organisation(slug="facebook")
    factories.card(organisation=org, slug="detr-resnet-50")
    assert violates(lambda: factories.card(organisation=org, slug="detr-resnet-50"))
    # The same name under another organisation is another model.
    other = factories.card(organisation=factories.organisation(slug="acme"), slug="detr-resnet-50")
    assert other.model_id == "acme/detr-resnet-50"


def test_a_model_id_differing_only_in_case_is_refused():
    """acme/ACME-DETR beside acme/acme-detr: two live pages, "Acme DETR vs Acme DETR"."""
    org = factories.organisation(slug="acme")
    factories.card(organisation=org, slug="acme-detr")
    assert violates(lambda: factories.card(organisation=org, slug="ACME-DETR"))
    twin = ModelCard(organisation=org, slug="Acme-Detr", task=factories.task(), summary="s")
    with pytest.raises(ValidationError) as caught:
        twin.validate_constraints()
    assert "another case exists" in str(caught.value)


def test_organisation_slugs_are_unique():
    factories.organisation(slug="facebook")
    assert violates(lambda: factories.organisation(slug="facebook"))


def test_status_must_be_a_known_lifecycle_state():
    card = factories.card()
    assert violates(lambda: ModelCard.objects.filter(pk=card.pk).update(status="launched"))


@pytest.mark.parametrize("price", [Decimal("-0.0000001"), Decimal("-1")])
def test_prices_cannot_be_negative(price):
    card = factories.card()
    route = PriceRoute(card=card, slug="x", provider="X", price=price)
    assert violates(route.save)


def test_price_holds_the_smallest_published_price_exactly():
    route = factories.route(price=Decimal("0.0000075"), unit=PriceRoute.Unit.REQUEST)
    route.refresh_from_db()
    assert route.price == Decimal("0.0000075")
    assert route.price * 1_000_000 == Decimal("7.5")


def test_price_unit_must_be_known():
    route = factories.route()
    assert violates(lambda: PriceRoute.objects.filter(pk=route.pk).update(unit="token"))


def test_one_route_slug_per_card():
    route = factories.route(slug="vitrine")
    assert violates(
        lambda: PriceRoute.objects.create(
            card=route.card, slug="vitrine", provider="Again", price=Decimal("1")
        )
    )


def test_a_hub_checkpoint_needs_a_pinned_revision():
    card = factories.card()
    assert violates(
        lambda: ModelCard.objects.filter(pk=card.pk).update(
            checkpoint_repo="facebook/detr-resnet-50", checkpoint_revision=""
        )
    )
    card.checkpoint_repo = "facebook/detr-resnet-50"
    with pytest.raises(ValidationError, match="Pin a revision"):
        card.full_clean()


def test_a_model_cannot_replace_itself():
    card = factories.card()
    assert violates(lambda: ModelCard.objects.filter(pk=card.pk).update(replacement=card))


def test_benchmark_rows_need_one_value_per_column():
    table = BenchmarkTable.objects.create(
        card=factories.card(), title="COCO", dataset="COCO val2017", columns=["AP", "AP50"]
    )
    row = BenchmarkRow(table=table, label="Model", values=["41.0"])
    with pytest.raises(ValidationError, match="Needs 2 values"):
        row.full_clean()
    row.values = ["41.0", 61.8]
    row.full_clean()
    assert row.values == ["41.0", "61.8"]


def test_published_hides_drafts_and_scheduled_cards():
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    visible = factories.card()
    factories.card(is_published=False)
    scheduled = factories.card(published_at=now + timedelta(days=1))
    assert list(ModelCard.objects.published(at=now)) == [visible]
    assert set(ModelCard.objects.published(at=now + timedelta(days=2))) == {visible, scheduled}
