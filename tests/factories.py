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
    if "card" not in values:  # not setdefault(..., card()): that made a stray card every call
        values["card"] = card()
    return price_route_save(route=PriceRoute(**values), changed_by=changed_by)


# --- billing ---------------------------------------------------------------------------
def user(**fields):
    """A user with a known password (``pw-<username>-1``)."""
    from django.contrib.auth import get_user_model

    n = next(_seq)
    username = fields.pop("username", f"user{n}")
    email = fields.pop("email", f"{username}@example.com")
    return get_user_model().objects.create_user(
        username, email, fields.pop("password", f"pw-{username}-1"), **fields
    )


def funded(user, amount: Decimal | str = "10"):
    """Put ``amount`` in the user's wallet through the ledger (an operator grant)."""
    from billing.services.topups import credit_grant

    credit_grant(user=user, amount=Decimal(amount), reason="test funds")
    return user


def byok_route(**fields) -> PriceRoute:
    """A provider route that accepts users' own keys (slug ``cloudflare`` by default)."""
    values = {
        "slug": "cloudflare",
        "provider": "Cloudflare Workers AI",
        "is_own": False,
        "byok_available": True,
        "price": Decimal("0.0001"),
    } | fields
    return route(**values)
