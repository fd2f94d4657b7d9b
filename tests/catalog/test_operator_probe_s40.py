"""Session 40's probe of the catalogue admin, as an operator editing it in a browser, and
what each edit does to the public pages and the API.

Each test posts the admin's own change form as the browser sent it (``form_data``), then
reads what visitors and API clients see.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from catalog.admin import ROUTE_NOT_DELETED
from catalog.models import (
    HEADERS_SHAPE,
    REPLACEMENT_STILL_NAMED,
    SCHEMA_NOT_OBJECT,
    ModelCard,
    PriceChange,
    PriceRoute,
)
from tests import factories
from tests.catalog.test_admin import form_data

pytestmark = pytest.mark.django_db

Status = ModelCard.Status


def save_card(staff_client, card: ModelCard, **changes):
    url = reverse("admin:catalog_modelcard_change", args=[card.pk])
    data = form_data(staff_client.get(url))
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)  # an unticked checkbox is not sent
        else:
            data[name] = value
    return staff_client.post(url, data)


@pytest.fixture
def successor():
    """A live model that a deprecated one names as its replacement."""
    live = factories.card(slug="successor", status=Status.LIVE)
    factories.card(slug="old", status=Status.DEPRECATED, replacement=live)
    return live


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"status": Status.COMING_SOON}, "status"),
        ({"status": Status.DEPRECATED}, "status"),
        ({"status": Status.RETIRED}, "status"),
        ({"is_published": None}, "is_published"),
        ({"published_at_0": "2099-01-01", "published_at_1": "00:00:00"}, "published_at"),
    ],
    ids=["coming soon", "deprecated", "retired", "unpublished", "published later"],
)
def test_a_model_named_as_a_replacement_stays_one_callers_can_move_to(
    staff_client, client, successor, changes, field
):
    # The replacing card was checked (its replacement beta or live), the replacement was
    # not: moved out of beta/live or hidden, the deprecated page, /v1/models and the 410
    # kept sending callers to a model they could not call, or to a 404.
    old = ModelCard.objects.get(slug="old")

    response = save_card(staff_client, successor, **changes)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors[field] == [REPLACEMENT_STILL_NAMED.format(models=old.model_id, it="it")]
    successor.refresh_from_db()
    assert (successor.status, successor.is_published) == (Status.LIVE, True)
    body = client.get(f"/v1/models/{old.model_id}").json()
    assert body["replacement"]["id"] == successor.model_id
    assert client.get(f"/v1/models/{successor.model_id}").status_code == 200


def test_a_replacement_repointed_first_then_moves_on(staff_client, successor):
    other = factories.card(slug="other", status=Status.LIVE)
    old = ModelCard.objects.get(slug="old")
    old.replacement = other
    old.save()

    response = save_card(staff_client, successor, status=Status.DEPRECATED)

    assert response.status_code == 302
    successor.refresh_from_db()
    assert successor.status == Status.DEPRECATED


def test_an_unpublished_model_is_refused_as_a_replacement(staff_client, client):
    hidden = factories.card(slug="hidden", status=Status.LIVE, is_published=False)
    card = factories.card(status=Status.LIVE)

    response = save_card(staff_client, card, status=Status.DEPRECATED, replacement=str(hidden.pk))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "not published" in errors["replacement"][0]
    card.refresh_from_db()
    assert card.replacement_id is None
    assert client.get(f"/models/{hidden.model_id}").status_code == 404


def test_a_route_deleted_on_the_card_page_is_refused_and_keeps_its_history(staff_client, client):
    # The card's delete page and the route's refuse (nobody may delete a PriceChange);
    # the card page's Delete box deleted the route and its price history without a word.
    route = factories.route(price=Decimal("0.0002"))
    card = route.card

    response = save_card(staff_client, card, **{"routes-0-DELETE": "on"})

    assert response.status_code == 200
    errors = response.context["inline_admin_formsets"][1].formset.non_form_errors()
    assert errors == [ROUTE_NOT_DELETED.format(route="vitrine")]
    assert PriceRoute.objects.filter(pk=route.pk).exists()
    assert PriceChange.objects.filter(route=route).count() == 1
    pricing = client.get(f"/v1/models/{card.model_id}").json()["pricing"]
    assert [p["price"] for p in pricing] == ["0.0002"]


def test_a_route_taken_off_with_is_active_leaves_the_page_and_the_api(staff_client, client):
    route = factories.route(price=Decimal("0.0002"))
    card = route.card
    assert client.get(f"/v1/models/{card.model_id}").json()["pricing"]  # cached now

    response = save_card(staff_client, card, **{"routes-0-is_active": None})

    assert response.status_code == 302
    assert client.get(f"/v1/models/{card.model_id}").json()["pricing"] == []
    assert PriceChange.objects.filter(route=route).count() == 1


def test_a_saved_route_stays_on_its_card(staff_client, client):
    # Its card was a select on the route's own page: moved to another model, its price
    # history read as that model's (from before it existed) and the model it left lost
    # its price.
    route = factories.route(price=Decimal("0.0001"))
    home, other = route.card, factories.card(slug="other")
    url = reverse("admin:catalog_priceroute_change", args=[route.pk])
    page = staff_client.get(url)
    assert "card" not in page.context["adminform"].form.fields
    data = form_data(page) | {"card": str(other.pk), "price": "0.00012"}

    response = staff_client.post(url, data)

    assert response.status_code == 302
    route.refresh_from_db()
    assert (route.card_id, route.price) == (home.pk, Decimal("0.00012"))
    assert [p["price"] for p in client.get(f"/v1/models/{home.model_id}").json()["pricing"]] == [
        "0.00012"
    ]
    assert client.get(f"/v1/models/{other.model_id}").json()["pricing"] == []


def test_a_new_route_still_chooses_its_card(staff_client):
    card = factories.card()
    page = staff_client.get(reverse("admin:catalog_priceroute_add"))
    assert "card" in page.context["adminform"].form.fields
    data = form_data(page) | {
        "card": str(card.pk),
        "slug": "vitrine",
        "provider": "Vitrine",
        "unit": "image",
        "price": "0.0003",
        "position": "0",
    }
    response = staff_client.post(reverse("admin:catalog_priceroute_add"), data)
    assert response.status_code == 302
    assert card.routes.get().history.get().price == Decimal("0.0003")


def test_a_model_taken_down_leaves_no_link_on_other_model_pages(staff_client):
    # Unticking "Is published" hid the page, but every page relating it still linked it (a
    # 404), its benchmark rows too, and their Compare buttons named it: a 400 for the
    # whole comparison.
    from catalog.models import BenchmarkRow, BenchmarkTable

    client = Client()  # a visitor, not the operator (whose next page shows "changed")
    page_card = factories.card(slug="detr")
    kept, taken = factories.card(slug="kept"), factories.card(slug="taken-down")
    page_card.related.set([kept, taken])
    table = BenchmarkTable.objects.create(
        card=page_card, title="COCO", dataset="COCO val2017", columns=["AP"], source="paper"
    )
    BenchmarkRow.objects.create(table=table, label="Taken row", values=["40.0"], model=taken)
    BenchmarkRow.objects.create(table=table, label="Kept row", values=["41.0"], model=kept)
    assert f"/models/{taken.model_id}" in client.get(f"/models/{page_card.model_id}").text

    assert save_card(staff_client, taken, is_published=None).status_code == 302

    body = client.get(f"/models/{page_card.model_id}").text
    assert f"/models/{taken.model_id}" not in body
    assert taken.model_id not in body
    assert "Taken row" in body  # the figures stay, unlinked
    assert f'href="/models/{kept.model_id}"' in body
    compare = f"/compare?models={page_card.model_id},{kept.model_id}"
    assert compare in body
    assert client.get(compare).status_code == 200


@pytest.fixture
def seeded():
    import io

    from django.core.management import call_command

    call_command("seed_catalog", stdout=io.StringIO())


def save_task(staff_client, task, **changes):
    url = reverse("admin:catalog_task_change", args=[task.pk])
    data = form_data(staff_client.get(url)) | changes
    return staff_client.post(url, data)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("headers", '[{"name": "x-seed", "description": 5}]', HEADERS_SHAPE),
        ("headers", '[{"name": "x-seed", "description": ["a", "b"]}]', HEADERS_SHAPE),
        ("headers", '{"x-seed": "a header"}', HEADERS_SHAPE),
        ("headers", '[{"type": "string"}]', HEADERS_SHAPE),
        ("input_schema", '"an image"', SCHEMA_NOT_OBJECT),
        ("output_schema", "[1, 2]", SCHEMA_NOT_OBJECT),
    ],
)
def test_a_task_schema_the_pages_cannot_show_is_a_form_error(
    staff_client, seeded, field, value, error
):
    # A header whose description was a number or a list was saved, then every model page
    # of the task and the task's own page answered 500.
    from catalog.models import Task

    task = Task.objects.get(slug="object-detection")
    visitor = Client()
    before = task.schemas.get(flavour="vitrine")

    response = save_task(staff_client, task, **{f"schemas-0-{field}": value})

    assert response.status_code == 200
    formset = response.context["inline_admin_formsets"][0].formset
    assert formset.forms[0].errors[field] == [error]
    assert task.schemas.get(flavour="vitrine").headers == before.headers
    assert visitor.get("/models/facebook/detr-resnet-50").status_code == 200
    assert visitor.get("/tasks/object-detection").status_code == 200


def test_the_seed_task_schemas_pass_the_checks_and_save_unchanged(staff_client, seeded):
    from catalog.models import Task

    task = Task.objects.get(slug="object-detection")
    for schema in task.schemas.all():
        schema.full_clean()
    assert save_task(staff_client, task).status_code == 302


def test_a_card_is_not_offered_as_its_own_related_model(staff_client):
    # It was in the "Available related" list on its own page: picked, the page linked to
    # itself and its Compare button named it twice (/compare answers 400 to a duplicate).
    card, other = factories.card(slug="a"), factories.card(slug="b")
    url = reverse("admin:catalog_modelcard_change", args=[card.pk])
    page = staff_client.get(url)
    offered = page.context["adminform"].form.fields["related"].queryset
    assert card not in offered and other in offered

    data = form_data(page) | {"related": [str(card.pk), str(other.pk)]}
    response = staff_client.post(url, data)

    assert response.status_code == 200
    assert "related" in response.context["adminform"].form.errors
    assert list(card.related.all()) == []
    data["related"] = [str(other.pk)]
    assert staff_client.post(url, data).status_code == 302
    body = Client().get(f"/models/{card.model_id}").text
    assert f"/compare?models={card.model_id},{other.model_id}" in body
    assert f"{card.model_id},{card.model_id}" not in body


def test_an_organisation_slug_in_another_case_is_a_form_error(staff_client):
    # "pekingu" beside "PekingU" was saved: every model id of one had a twin differing in
    # case only, as a card's name had before modelcard_unique_id_any_case.
    from catalog.models import Organisation

    factories.organisation(name="Peking University", slug="PekingU")
    url = reverse("admin:catalog_organisation_add")
    data = form_data(staff_client.get(url)) | {"name": "Peking", "slug": "pekingu"}

    response = staff_client.post(url, data)

    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        "An organisation with this slug in another case exists."
    ]
    assert list(Organisation.objects.values_list("slug", flat=True)) == ["PekingU"]


def test_the_lists_show_which_routes_and_cards_visitors_see(staff_client):
    # A route is taken off by unticking "Is active" and a card by "Is published": neither
    # list showed it, so a hidden price or page looked like a live one.
    shown = factories.route(price=Decimal("0.0002"))
    hidden = factories.route(price=Decimal("0.0003"), is_active=False)
    hidden.card.is_published = False
    hidden.card.save()

    routes = staff_client.get(reverse("admin:catalog_priceroute_changelist"))
    assert "is_active" in routes.context["cl"].list_display
    only_active = staff_client.get(
        reverse("admin:catalog_priceroute_changelist"), {"is_active__exact": "1"}
    )
    assert list(only_active.context["cl"].result_list) == [shown]
    cards = staff_client.get(reverse("admin:catalog_modelcard_changelist"))
    assert "is_published" in cards.context["cl"].list_display


def test_benchmark_rows_linking_other_models_cost_no_query_each(staff_client):
    # Each row naming another catalogue model linked /models/<org>/<name>, and read that
    # model's organisation with one query per row: the page's query count grew with the
    # rows an operator linked (README: a model page runs a constant number of queries).
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from catalog.models import BenchmarkRow, BenchmarkTable

    page_card = factories.card(slug="page")
    table = BenchmarkTable.objects.create(
        card=page_card, title="COCO", dataset="COCO val2017", columns=["AP"], source="paper"
    )

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = Client().get(
                f"/models/{page_card.model_id}", headers={"cache-control": "no-cache"}
            )
        assert response.status_code == 200
        return len(captured)

    BenchmarkRow.objects.create(
        table=table, label="Linked 0", values=["40"], model=factories.card(slug="m0")
    )
    queries()  # a first render reads what later ones keep (the clock's next change...)
    one = queries()
    for i in range(1, 4):
        model = factories.card(slug=f"m{i}")
        BenchmarkRow.objects.create(table=table, label=f"Linked {i}", values=["40"], model=model)
    body = Client().get(f"/models/{page_card.model_id}").text
    assert body.count('href="/models/org-') >= 4
    queries()
    assert queries() == one


def test_a_card_page_in_the_admin_links_to_its_public_page(staff_client):
    card = factories.card(slug="viewed")
    page = staff_client.get(reverse("admin:catalog_modelcard_change", args=[card.pk]))
    assert f'href="/models/{card.model_id}"' in page.text
    assert Client().get(f"/models/{card.model_id}").status_code == 200


def test_a_card_moved_back_to_live_is_not_announced_as_ending(staff_client):
    # Deprecated by mistake (or the deprecation called off) and set back to live: the card
    # kept the deprecation date its save recorded and the sunset typed with it, and
    # /v1/models went on answering a live model that "stops answering" on that day, while
    # its headers and its page said nothing of it.
    from datetime import timedelta

    from django.utils import timezone

    visitor = Client()
    successor = factories.card(slug="successor")
    card = factories.card(slug="back")
    sunset = (timezone.localdate() + timedelta(days=60)).isoformat()
    response = save_card(
        staff_client,
        card,
        status=Status.DEPRECATED,
        sunset_date=sunset,
        replacement=str(successor.pk),
    )
    assert response.status_code == 302
    deprecated = visitor.get(f"/v1/models/{card.model_id}")
    assert deprecated.json()["sunset_date"] == sunset and "Sunset" in deprecated

    assert save_card(staff_client, card, status=Status.LIVE).status_code == 302

    detail = visitor.get(f"/v1/models/{card.model_id}")
    body = detail.json()
    assert (body["status"], body["deprecation_date"], body["sunset_date"]) == ("live", None, None)
    assert "Sunset" not in detail and "Deprecation" not in detail
    listed = visitor.get("/v1/models").json()["data"]
    (entry,) = [m for m in listed if m["id"] == card.model_id]
    assert (entry["deprecation_date"], entry["sunset_date"]) == (None, None)


def test_the_admin_preview_fills_prices_as_the_page_does(staff_client):
    # The route taken off (Is active unticked), the page showed "{price}" as written while
    # the card's and the FAQ's previews still filled it from that route: the preview,
    # there to catch a token the page cannot fill, said all was well.
    from catalog.models import FaqEntry

    route = factories.route(price=Decimal("0.00031"), is_active=False)
    card = route.card
    card.description = "Costs {price} an image."
    card.save()
    faq = FaqEntry.objects.create(card=card, question="Price?", answer="It costs {price}.")

    public = Client().get(f"/models/{card.model_id}").text
    assert "Costs {price} an image." in public and "$0.00031" not in public
    page = staff_client.get(reverse("admin:catalog_modelcard_change", args=[card.pk]))
    assert "<p>Costs {price} an image.</p>" in page.text  # the preview, not the textarea
    answer = staff_client.get(reverse("admin:catalog_faqentry_change", args=[faq.pk]))
    assert "<p>It costs {price}.</p>" in answer.text

    route.is_active = True
    route.save()
    assert "Costs $0.00031 an image." in Client().get(f"/models/{card.model_id}").text
    page = staff_client.get(reverse("admin:catalog_modelcard_change", args=[card.pk]))
    assert "<p>Costs $0.00031 an image.</p>" in page.text


def test_a_card_deprecated_again_is_dated_by_this_deprecation(staff_client):
    """Deprecated, set back to live, deprecated again months later: the Deprecation header
    and /v1/models gave the first deprecation's day (kept on the card), not this one's."""
    from datetime import timedelta

    from django.utils import timezone

    successor = factories.card(slug="successor")
    card = factories.card(slug="again")
    today = timezone.localdate()
    deprecate = {"status": Status.DEPRECATED, "replacement": str(successor.pk)}
    assert save_card(staff_client, card, **deprecate).status_code == 302
    assert save_card(staff_client, card, status=Status.LIVE).status_code == 302
    long_ago = today - timedelta(days=90)
    ModelCard.objects.filter(pk=card.pk).update(deprecation_date=long_ago)  # that first day

    assert save_card(staff_client, card, **deprecate).status_code == 302
    card.refresh_from_db()
    assert card.deprecation_date == today
    # A day the operator types with the status stays theirs; a later save keeps it.
    typed = (today - timedelta(days=3)).isoformat()
    assert save_card(staff_client, card, status=Status.LIVE).status_code == 302
    assert save_card(staff_client, card, **deprecate, deprecation_date=typed).status_code == 302
    assert save_card(staff_client, card, display_name="Renamed").status_code == 302
    card.refresh_from_db()
    assert card.deprecation_date.isoformat() == typed
