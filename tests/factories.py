"""Small data builders for tests: a valid object with overridable fields."""

from __future__ import annotations

import itertools
from decimal import Decimal

from catalog.models import ModelCard, Organisation, PriceRoute, Task
from catalog.services import price_route_save

_seq = itertools.count(1)


def organisation(**fields) -> Organisation:
    n = next(_seq)
    values = {"name": f"Org {n}", "slug": f"org-{n}"} | fields
    return Organisation.objects.create(**values)


def task(**fields) -> Task:
    values = {"slug": "object-detection", "name": "Object detection"} | fields
    obj, _ = Task.objects.get_or_create(slug=values.pop("slug"), defaults=values)
    return obj


def card(**fields) -> ModelCard:
    n = next(_seq)
    values = {
        "slug": f"model-{n}",
        "display_name": f"Model {n}",
        "summary": "A detector.",
        "status": ModelCard.Status.LIVE,
    } | fields
    values.setdefault("organisation", organisation())
    values.setdefault("task", task())
    return ModelCard.objects.create(**values)


def route(*, changed_by=None, **fields) -> PriceRoute:
    values = {"slug": "vitrine", "provider": "Vitrine", "is_own": True, "price": Decimal("0.0002")}
    values |= fields
    values.setdefault("card", card())
    return price_route_save(route=PriceRoute(**values), changed_by=changed_by)
