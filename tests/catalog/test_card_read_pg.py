"""On PostgreSQL a paid call's card and routes are one statement, the same as the ORM's two.

``catalog.selectors.card_with_routes`` starts every paid call: the published card a model id
names, its organisation and its active routes. On PostgreSQL it is one prepared statement;
the ORM reads the card with its organisation, then prefetches the routes. The same cards go
through both and must come back identical (every field, the routes in their order), and
neither may find a card that is unpublished, not yet published or another's.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog import selectors
from catalog.models import ModelCard
from tests import factories

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the one-statement read is PostgreSQL's"
    ),
]


def fields(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def both(model_id: str, at=None):
    at = at or timezone.now()
    org, _, name = model_id.partition("/")
    return selectors._card_with_routes_sql(org, name, at), selectors._card_with_routes_orm(
        org, name, at
    )


def seen(card: ModelCard | None) -> dict | None:
    if card is None:
        return None
    with CaptureQueriesContext(connection) as queries:
        view = {
            "card": fields(card),
            "organisation": fields(card.organisation),
            "routes": [fields(r) for r in card.routes.all()],
            "route_cards": [r.card is card for r in card.routes.all()],
        }
    assert len(queries) == 0, "the relations came with the card"
    return view


def test_both_reads_find_the_same_card_with_its_active_routes_in_order():
    organisation = factories.organisation(slug="acme")
    card = factories.card(organisation=organisation, slug="detr")
    factories.route(card=card, slug="vitrine", price=Decimal("0.0002"), position=2)
    factories.route(
        card=card, slug="cloudflare", provider="Cloudflare Workers AI", is_own=False,
        price=Decimal("0.0001"), position=1,
    )  # fmt: skip
    factories.route(card=card, slug="old", is_active=False, price=Decimal("0.0003"))
    factories.card(organisation=factories.organisation(slug="other"), slug="detr")  # same slug
    sql, orm = both("acme/detr")
    assert seen(sql) == seen(orm)
    assert [r["slug"] for r in seen(sql)["routes"]] == ["cloudflare", "vitrine"]
    bare = factories.card(organisation=organisation, slug="no-routes")
    sql, orm = both("acme/no-routes")
    assert seen(sql) == seen(orm) and seen(sql)["routes"] == [] and sql.pk == bare.pk


def test_neither_read_finds_what_a_caller_may_not_see():
    organisation = factories.organisation(slug="acme")
    factories.card(organisation=organisation, slug="hidden", is_published=False)
    factories.card(
        organisation=organisation, slug="later", published_at=timezone.now() + timedelta(days=1)
    )
    factories.card(organisation=organisation, slug="detr")
    for model_id in ("acme/hidden", "acme/later", "acme/none", "nobody/detr", "acme", ""):
        assert both(model_id) == (None, None), model_id
    # As of tomorrow the scheduled card is published, on both paths alike.
    sql, orm = both("acme/later", at=timezone.now() + timedelta(days=2))
    assert sql is not None and seen(sql) == seen(orm)


def test_a_paid_calls_card_and_routes_are_one_statement():
    card = factories.card()
    factories.route(card=card, price=Decimal("0.0002"))
    with CaptureQueriesContext(connection) as sql_reads:
        seen(selectors.card_with_routes(model_id=card.model_id))
    with CaptureQueriesContext(connection) as orm_reads:
        seen(selectors._card_with_routes_orm(*card.model_id.split("/"), timezone.now()))
    assert (len(sql_reads), len(orm_reads)) == (1, 2)
