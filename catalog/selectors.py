"""Reads of the catalogue that span relations, shared by the API and the pages."""

from __future__ import annotations

from typing import TypedDict

from django.db.models import Prefetch, QuerySet

from catalog.models import ModelCard, PriceRoute


class CardFilters(TypedDict, total=False):
    task: str  # a Task slug
    status: str  # a ModelCard.Status value


def _with_listing_relations(cards: QuerySet[ModelCard]) -> QuerySet[ModelCard]:
    # Two queries whatever the number of cards: the cards joined to their organisation and
    # task, then every active route of those cards in one IN (...) query.
    # The replacement (a deprecated card's successor) rides on the same join.
    return cards.select_related(
        "organisation", "task", "replacement__organisation"
    ).prefetch_related(Prefetch("routes", queryset=PriceRoute.objects.filter(is_active=True)))


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
