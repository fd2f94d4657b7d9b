from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib import admin
from django.urls import reverse

from catalog.models import ModelCard, PriceChange, PriceRoute
from tests import factories

pytestmark = pytest.mark.django_db

CATALOG_MODELS = [m for m in admin.site._registry if m._meta.app_label == "catalog"]


def form_data(response) -> dict:
    """The POST body a browser would send for an admin change form, as rendered."""
    data: dict = {}

    def add(form):
        for field in form:
            value = field.value()
            if value is None:
                continue
            if isinstance(value, bool):
                if value:
                    data[field.html_name] = "on"
                continue
            if isinstance(value, list | tuple):
                data[field.html_name] = [str(getattr(v, "pk", v)) for v in value]
                continue
            data[field.html_name] = str(value)

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        add(formset.management_form)
        for form in formset.forms:
            add(form)
    return data


@pytest.mark.parametrize("model", CATALOG_MODELS, ids=lambda m: m.__name__)
def test_staff_reach_every_catalogue_page(staff_client, model):
    factories.route()
    opts = model._meta
    changelist = staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    assert changelist.status_code == 200
    obj = model.objects.first()
    if obj is not None:
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        assert staff_client.get(url).status_code == 200


@pytest.mark.parametrize("who", ["anonymous", "not staff"])
def test_others_are_sent_to_the_login_page(client, other_user, who):
    if who == "not staff":
        client.force_login(other_user)
    response = client.get(reverse("admin:catalog_modelcard_changelist"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_card_list_filters_and_search(staff_client):
    factories.card(display_name="DETR ResNet-50", status=ModelCard.Status.LIVE, license="MIT")
    factories.card(display_name="RT-DETR R50", status=ModelCard.Status.COMING_SOON)
    url = reverse("admin:catalog_modelcard_changelist")
    found = staff_client.get(url, {"q": "RT-DETR"}).context["cl"].result_list
    assert [c.display_name for c in found] == ["RT-DETR R50"]
    found = staff_client.get(url, {"status__exact": "live"}).context["cl"].result_list
    assert [c.display_name for c in found] == ["DETR ResNet-50"]
    found = staff_client.get(url, {"license": "MIT"}).context["cl"].result_list
    assert [c.display_name for c in found] == ["DETR ResNet-50"]


def test_editing_a_price_on_the_route_page_writes_history(staff_client, staff):
    route = factories.route(price=Decimal("0.0002"))
    url = reverse("admin:catalog_priceroute_change", args=[route.pk])
    data = form_data(staff_client.get(url))
    data["price"] = "0.00015"

    response = staff_client.post(url, data)

    assert response.status_code == 302, response.context and response.context["errors"]
    route.refresh_from_db()
    assert route.price == Decimal("0.00015")
    latest, first = route.history.all()
    assert (latest.price, latest.changed_by, latest.note) == (
        Decimal("0.00015"),
        staff,
        "admin edit",
    )
    assert first.price == Decimal("0.0002")


@pytest.mark.parametrize(
    ("price", "error"),
    [
        # SQLite gave it back as 100000000, which no longer fit the column: every page
        # reading the route, and its admin pages, answered 500 (catalog/money.py).
        ("99999999.9999999999", "significant digits"),
        ("12345678.1234567891", "significant digits"),  # came back 12345678.1234568
        ("-0.0001", "greater than or equal to 0"),  # was the constraint's name
    ],
)
def test_a_price_no_database_keeps_exactly_is_a_form_error(staff_client, price, error):
    route = factories.route(price=Decimal("0.0002"))
    url = reverse("admin:catalog_priceroute_change", args=[route.pk])
    data = form_data(staff_client.get(url))
    data["price"] = price
    response = staff_client.post(url, data)
    assert response.status_code == 200
    assert error in str(response.context["adminform"].form.errors["price"])
    route.refresh_from_db()
    assert route.price == Decimal("0.0002") and route.history.count() == 1


def test_the_longest_price_allowed_comes_back_exactly_and_pages_show_it(client, staff_client):
    route = factories.route(price=Decimal("0.0002"))
    url = reverse("admin:catalog_priceroute_change", args=[route.pk])
    data = form_data(staff_client.get(url))
    data["price"] = "12345.6789012345"  # 15 significant digits
    assert staff_client.post(url, data).status_code == 302
    route.refresh_from_db()
    assert route.price == Decimal("12345.6789012345")
    assert route.history.first().price == Decimal("12345.6789012345")
    assert client.get(f"/models/{route.card.model_id}").status_code == 200
    assert client.get(f"/v1/models/{route.card.model_id}").status_code == 200


def test_editing_a_price_in_the_card_inline_writes_history(staff_client, staff):
    route = factories.route(price=Decimal("0.0002"))
    url = reverse("admin:catalog_modelcard_change", args=[route.card.pk])
    data = form_data(staff_client.get(url))
    prefix = "routes"
    assert data[f"{prefix}-0-id"] == str(route.pk)
    data[f"{prefix}-0-price"] = "0.00025"

    response = staff_client.post(url, data)

    assert response.status_code == 302, response.context and response.context["errors"]
    assert route.history.count() == 2
    latest = route.history.first()
    assert (latest.price, latest.changed_by) == (Decimal("0.00025"), staff)


def test_saving_a_card_without_a_price_change_writes_no_history(staff_client):
    route = factories.route()
    url = reverse("admin:catalog_modelcard_change", args=[route.card.pk])
    response = staff_client.post(url, form_data(staff_client.get(url)))
    assert response.status_code == 302
    assert route.history.count() == 1


def test_price_history_cannot_be_edited_or_deleted_in_the_admin(staff_client):
    change = factories.route().history.get()
    assert staff_client.get(reverse("admin:catalog_pricechange_add")).status_code == 403
    url = reverse("admin:catalog_pricechange_delete", args=[change.pk])
    assert staff_client.post(url, {"post": "yes"}).status_code == 403
    assert PriceChange.objects.filter(pk=change.pk).exists()


def test_the_markdown_description_shows_a_sanitised_preview(staff_client):
    card = factories.card(description="## About\n\n**fast** <script>alert(1)</script>")
    response = staff_client.get(reverse("admin:catalog_modelcard_change", args=[card.pk]))
    html = response.content.decode()
    assert '<div class="markdown-preview"><h2>About</h2>' in html
    assert "<strong>fast</strong>" in html
    assert "<script>alert(1)" not in html


def test_list_fields_are_edited_one_per_line(staff_client):
    card = factories.card(strengths=["End-to-end object detection", "Open-weight"])
    url = reverse("admin:catalog_modelcard_change", args=[card.pk])
    data = form_data(staff_client.get(url))
    assert data["strengths"] == "End-to-end object detection\nOpen-weight"
    data["strengths"] = "Fast\n\n  Open-weight  \n"
    assert staff_client.post(url, data).status_code == 302
    card.refresh_from_db()
    assert card.strengths == ["Fast", "Open-weight"]


def test_a_new_route_added_in_the_admin_starts_its_history(staff_client, staff):
    card = factories.card()
    url = reverse("admin:catalog_priceroute_add")
    response = staff_client.post(
        url,
        {
            "card": card.pk,
            "slug": "cloudflare",
            "provider": "Cloudflare Workers AI",
            "unit": "request",
            "price": "0.0000075",
            "position": 0,
            "history-TOTAL_FORMS": 0,
            "history-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302
    route = PriceRoute.objects.get(card=card, slug="cloudflare")
    assert list(route.history.values_list("price", "unit", "changed_by")) == [
        (Decimal("0.0000075"), "request", staff.pk)
    ]


def test_operators_see_how_many_people_want_a_coming_soon_model(staff_client, other_user):
    from catalog.models import DemandVote

    card = factories.card(display_name="RT-DETR R50", status=ModelCard.Status.COMING_SOON)
    DemandVote.objects.create(card=card, email="a@example.com")
    DemandVote.objects.create(card=card, user=other_user)
    response = staff_client.get(reverse("admin:catalog_modelcard_changelist"))
    row = next(c for c in response.context["cl"].result_list if c.pk == card.pk)
    assert row.demand_count == 2
    assert "Wanted by" in response.content.decode()


def test_a_benchmark_table_saves_unchanged_with_its_blank_extra_row(staff_client):
    """Its blank extra row read as changed ("" against []): 'This field is required.' and
    'Needs 10 values, one per column.' on a table nobody had edited."""
    import io

    from django.core.management import call_command

    from catalog.models import BenchmarkTable

    call_command("seed_catalog", stdout=io.StringIO())
    table = BenchmarkTable.objects.order_by("pk").first()
    url = reverse("admin:catalog_benchmarktable_change", args=[table.pk])
    page = staff_client.get(url)
    data = form_data(page)
    rows = page.context["inline_admin_formsets"][0].formset.initial_form_count()
    data[f"rows-{rows}-values"] = ""  # the blank extra row, as a browser sends it
    response = staff_client.post(url, data)
    assert response.status_code == 302, response.context and [
        f.errors for i in response.context["inline_admin_formsets"] for f in i.formset.forms
    ]
    assert table.rows.count() == rows


def test_columns_changed_on_the_card_page_must_still_fit_the_rows(staff_client):
    """The card's inline saved 2 columns over rows of 3 values: the public table had 2
    headers and rows of 3 cells."""
    import io

    from django.core.management import call_command

    from catalog.models import BenchmarkTable

    call_command("seed_catalog", stdout=io.StringIO())
    table = BenchmarkTable.objects.filter(rows__isnull=False).order_by("pk").first()
    url = reverse("admin:catalog_modelcard_change", args=[table.card.pk])
    page = staff_client.get(url)
    data = form_data(page)
    forms = next(
        i for i in page.context["inline_admin_formsets"] if i.formset.prefix == "benchmarks"
    )
    index = [f.instance.pk for f in forms.formset.forms].index(table.pk)
    data[f"benchmarks-{index}-columns"] = "AP | AP50"
    response = staff_client.post(url, data)
    assert response.status_code == 200
    assert "change columns and rows together" in response.content.decode()
    table.refresh_from_db()
    assert len(table.columns) != 2


def test_a_whole_model_id_finds_its_card(staff_client):
    card = factories.card(organisation=factories.organisation(slug="facebook"), slug="detr-x")
    factories.card(slug="other")
    page = staff_client.get(reverse("admin:catalog_modelcard_changelist"), {"q": card.model_id})
    assert [c.pk for c in page.context["cl"].result_list] == [card.pk]
