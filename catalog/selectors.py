"""Reads of the catalogue that span relations, shared by the API and the pages."""

from __future__ import annotations

from functools import cache
from typing import TypedDict

from django.db import connection
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from catalog.db import JoinedRow, prepared_rows
from catalog.models import ModelCard, ModelIdAlias, Organisation, PriceRoute
from catalog.pricing import fill_prices

# A card's routes as the API and the pages read them: the active ones, in their order.
_ACTIVE_ROUTES = Prefetch("routes", queryset=PriceRoute.objects.filter(is_active=True))


class CardFilters(TypedDict, total=False):
    task: str  # a Task slug
    status: str  # a ModelCard.Status value


def _with_listing_relations(cards: QuerySet[ModelCard]) -> QuerySet[ModelCard]:
    # Two queries whatever the number of cards: the cards joined to their organisation and
    # task, then every active route of those cards in one IN (...) query.
    # The replacement (a deprecated card's successor) rides on the same join.
    return cards.select_related(
        "organisation", "task", "replacement__organisation"
    ).prefetch_related(_ACTIVE_ROUTES)


def card_prices_filled(text: str, card: ModelCard) -> str:
    """``text`` (a description, an FAQ answer) with its price tokens filled from ``card``'s
    active routes (prefetched by the card selectors): ``{price}`` is its own route's."""
    if "{price" not in text:
        return text
    # Active ones, also where the routes were not prefetched (the admin's previews read
    # every route): a preview filled from a route taken off showed a price where the page
    # showed the token as written.
    routes = [r for r in card.routes.all() if r.is_active]
    own = next((r.slug for r in routes if r.is_own), routes[0].slug if routes else None)
    return fill_prices(text, {r.slug: r.price for r in routes}, default=own)


def card_list(*, filters: CardFilters | None = None, at=None) -> QuerySet[ModelCard]:
    """Published cards (as of ``at``, default now), in display order, with organisation,
    task and active price routes (``card.routes.all()``) loaded.

    ``filters`` narrows by ``task`` slug and ``status``; empty values are ignored.
    """
    filters = filters or {}
    cards = ModelCard.objects.published(at=at)
    if filters.get("task"):
        cards = cards.filter(task__slug=filters["task"])
    if filters.get("status"):
        cards = cards.filter(status=filters["status"])
    return _with_listing_relations(cards)


def card_get(*, model_id: str, at=None) -> ModelCard | None:
    """The published card with id ``<org>/<name>``, relations as in ``card_list``; or None."""
    org, sep, name = model_id.partition("/")
    if not (org and sep and name):
        return None
    return _with_listing_relations(
        ModelCard.objects.published(at=at).filter(organisation__slug=org, slug=name)
    ).first()


def card_renamed(*, model_id: str, published: bool = True, at=None) -> str | None:
    """The current id of the card that answered to ``model_id`` before it was renamed
    (``ModelIdAlias``, any case), or None. Asked only where no card has the id, so the
    paths that find one pay nothing for it. ``published``: only a card a visitor may see
    (as of ``at``): a card renamed and taken down must not tell its new id through its
    former one (a redirect, an error naming it); False for the seed loader."""
    aliases = ModelIdAlias.objects.filter(model_id__iexact=model_id)
    if published:
        aliases = aliases.filter(card__in=ModelCard.objects.published(at=at))
    alias = aliases.select_related("card__organisation").first()
    return alias.card.model_id if alias is not None else None


def organisation_renamed(*, slug: str) -> str | None:
    """The current slug of the organisation whose cards answered to ``<slug>/...`` before
    it was renamed, or None (none, or its former cards now in several organisations)."""
    slugs = set(
        ModelIdAlias.objects.filter(model_id__istartswith=f"{slug}/").values_list(
            "card__organisation__slug", flat=True
        )[:20]
    )
    return slugs.pop() if len(slugs) == 1 else None


_CALLABLE = JoinedRow((ModelCard, "c"), (Organisation, "o"), (PriceRoute, "r"))


@cache
def _callable_sql() -> str:
    # The routes' Meta.ordering, as the ORM's prefetch orders them.
    order = ", ".join(
        f"r.{PriceRoute._meta.get_field(f).column}" for f in PriceRoute._meta.ordering
    )
    return f"""
SELECT {_CALLABLE.select_list}
FROM {ModelCard._meta.db_table} c
JOIN {Organisation._meta.db_table} o ON o.id = c.organisation_id
LEFT JOIN {PriceRoute._meta.db_table} r ON r.card_id = c.id AND r.is_active
WHERE o.slug = %s::text AND c.slug = %s::text AND c.is_published
    AND (c.published_at IS NULL OR c.published_at <= %s::timestamptz)
ORDER BY c.id, {order}"""


def _card_with_routes_sql(org: str, name: str, at) -> ModelCard | None:
    rows = prepared_rows(_callable_sql(), [org, name, at])
    if not rows:
        return None
    card, organisation, _ = _CALLABLE.build(rows[0])
    ModelCard.organisation.field.set_cached_value(card, organisation)
    routes = []
    for row in rows:
        route = _CALLABLE.build(row)[2]
        if route is not None:
            PriceRoute.card.field.set_cached_value(route, card)
            routes.append(route)
    # What prefetch_related leaves: card.routes.all() answers these, without a query.
    cached = card.routes.get_queryset()
    cached._result_cache, cached._prefetch_done = routes, True
    card._prefetched_objects_cache = {ModelCard.routes.rel.get_accessor_name(): cached}
    return card


def card_with_routes(*, model_id: str, at=None) -> ModelCard | None:
    """The published card ``model_id`` names (as of ``at``, default now) with its
    organisation and its active routes (``card.routes.all()``, in their order) loaded; None
    when there is none. Every paid call starts here: on PostgreSQL it is one prepared
    statement, elsewhere the ORM's two (the card with its organisation, then the routes);
    tests/catalog/test_card_read_pg.py holds the two to the same instances."""
    org, _, name = model_id.partition("/")
    at = at or timezone.now()
    if connection.vendor == "postgresql":
        return _card_with_routes_sql(org, name, at)
    return _card_with_routes_orm(org, name, at)


def _card_with_routes_orm(org: str, name: str, at) -> ModelCard | None:
    return (
        ModelCard.objects.published(at=at)
        .filter(organisation__slug=org, slug=name)
        .select_related("organisation")
        .prefetch_related(_ACTIVE_ROUTES)
        .first()
    )
