from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.management import call_command

from catalog.models import (
    BenchmarkRow,
    Collection,
    CollectionEntry,
    FaqEntry,
    ModelCard,
    PriceChange,
    PriceRoute,
    SpecRow,
    TaskSchema,
)

pytestmark = pytest.mark.django_db

COUNTED = [
    ModelCard,
    SpecRow,
    BenchmarkRow,
    PriceRoute,
    PriceChange,
    FaqEntry,
    Collection,
    CollectionEntry,
    TaskSchema,
]


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in COUNTED}


@pytest.mark.parametrize("second_run", [[], ["--update"]])
def test_loading_twice_creates_no_duplicates(second_run):
    call_command("seed_catalog")
    first = counts()
    call_command("seed_catalog", *second_run)
    assert counts() == first
    assert first["ModelCard"] == 4
    assert first["PriceChange"] == first["PriceRoute"]  # one history entry per seeded price


def test_a_rerun_keeps_operator_edits_unless_asked_to_update():
    call_command("seed_catalog")
    card = ModelCard.objects.by_model_id("facebook/detr-resnet-50").get()
    card.summary = "Edited by an operator."
    card.save()

    call_command("seed_catalog")
    card.refresh_from_db()
    assert card.summary == "Edited by an operator."

    out = io.StringIO()
    call_command("seed_catalog", "--update", stdout=out)
    card.refresh_from_db()
    assert card.summary.startswith("Meta's transformer-based object detector.")
    # It says what it rewrote (it said "0 cards created" and nothing more).
    assert "Rewritten from the seed (4 cards" in out.getvalue()
    assert "facebook/detr-resnet-50" in out.getvalue()


def test_an_updated_seed_price_is_recorded_in_the_history():
    call_command("seed_catalog")
    route = PriceRoute.objects.get(card__slug="detr-resnet-50", slug="vitrine")
    PriceRoute.objects.filter(pk=route.pk).update(price=Decimal("0.0003"))  # drifted

    call_command("seed_catalog", "--update")

    route.refresh_from_db()
    assert route.price == Decimal("0.0002")
    assert route.history.first().price == Decimal("0.0002")


def test_the_seeded_routes_and_statuses():
    call_command("seed_catalog")
    routes = {
        (r.card.model_id, r.slug): r
        for r in PriceRoute.objects.select_related("card__organisation")
    }
    detr = routes["facebook/detr-resnet-50", "vitrine"]
    assert (detr.price, detr.unit, detr.is_estimate) == (Decimal("0.0002"), "image", False)
    cloudflare = routes["facebook/detr-resnet-50", "cloudflare"]
    assert (cloudflare.price, cloudflare.unit, cloudflare.is_beta, cloudflare.byok_available) == (
        Decimal("0.0000075"),
        "request",
        True,
        True,
    )
    rtdetr = routes["PekingU/rtdetr_r50vd", "vitrine"]
    assert (rtdetr.price_per_1k, rtdetr.is_estimate) == (Decimal("0.047"), True)
    statuses = dict(
        (c.model_id, c.status) for c in ModelCard.objects.select_related("organisation")
    )
    assert statuses == {
        "facebook/detr-resnet-50": "live",
        "microsoft/conditional-detr-resnet-50": "coming_soon",
        "PekingU/rtdetr_r50vd": "coming_soon",
        "hustvl/yolos-tiny": "live",
    }
