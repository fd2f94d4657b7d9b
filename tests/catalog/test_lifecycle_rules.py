"""The lifecycle an operator sets is one callers can rely on: its dates in order, a
replacement they can move to, calls stopping on the sunset day the page announced, and
cached pages kept no longer than the clock allows (a scheduled publication, a sunset)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from catalog.cache import PAGE_TTL, seconds_to_next_change
from catalog.models import ModelCard, Status
from tests import factories

pytestmark = pytest.mark.django_db

TODAY = timezone.localdate


def errors_of(card: ModelCard) -> dict:
    with pytest.raises(ValidationError) as caught:
        card.full_clean()
    return caught.value.message_dict


@pytest.fixture
def live():
    return factories.card(slug="successor", status=Status.LIVE)


def test_a_sunset_before_the_deprecation_is_refused(live):
    card = factories.card(
        status=Status.DEPRECATED, deprecation_date=TODAY() + timedelta(days=90),
        sunset_date=TODAY() + timedelta(days=30), replacement=live,
    )  # fmt: skip
    assert "sunset_date" in errors_of(card)


def test_a_deprecation_before_the_launch_is_refused(live):
    card = factories.card(
        status=Status.DEPRECATED, launch_date=TODAY(), deprecation_date=TODAY() - timedelta(1),
        replacement=live,
    )  # fmt: skip
    assert "deprecation_date" in errors_of(card)


@pytest.mark.parametrize("status", [Status.RETIRED, Status.COMING_SOON])
def test_the_replacement_is_a_model_callers_can_move_to(status):
    gone = factories.card(slug="gone", status=status)
    card = factories.card(status=Status.DEPRECATED, replacement=gone)
    assert "beta or live" in errors_of(card)["replacement"][0]


def test_a_replacement_loop_is_refused():
    a = factories.card(slug="a", status=Status.LIVE)
    b = factories.card(slug="b", status=Status.LIVE, replacement=a)
    a.status, a.replacement = Status.DEPRECATED, b
    assert "loop" in errors_of(a)["replacement"][0]


def test_a_retired_model_cannot_have_retired_in_the_future(live):
    card = factories.card(
        status=Status.RETIRED, sunset_date=TODAY() + timedelta(days=30), replacement=live
    )
    assert "sunset_date" in errors_of(card)


def test_a_lifecycle_in_order_is_accepted(live):
    factories.card(
        status=Status.DEPRECATED, launch_date=TODAY() - timedelta(days=400),
        deprecation_date=TODAY(), sunset_date=TODAY() + timedelta(days=90), replacement=live,
    ).full_clean()  # fmt: skip


# --- the sunset day -------------------------------------------------------------------------
@pytest.mark.parametrize(("days", "answers"), [(0, 410), (-3, 410), (1, 402)])
def test_calls_stop_on_the_sunset_day_the_page_announced(client, live, days, answers):
    """The page said 'Sunset on 1 Nov 2026: calls stop working then', and calls still
    answered 200 and were charged in December."""
    from billing.services.keys import api_key_create
    from tests.playground.test_flavour_errors import jpeg

    card = factories.card(
        status=Status.DEPRECATED, deprecation_date=TODAY() - timedelta(days=60),
        sunset_date=TODAY() + timedelta(days=days), replacement=live,
    )  # fmt: skip
    factories.route(card=card, price=Decimal("0.0002"))
    _, key = api_key_create(user=factories.user(), name="k")  # an empty wallet: 402 if it ran
    response = client.post(
        f"/v1/inference/{card.model_id}", data=jpeg(), content_type="image/jpeg",
        headers={"Authorization": f"Bearer {key}"},
    )  # fmt: skip
    assert response.status_code == answers, response.content
    page = client.get(f"/models/{card.model_id}").content.decode()
    if answers == 410:
        assert response.json()["error"]["code"] == "model_retired"
        assert response.json()["error"]["replacement"] == live.model_id
        assert "<code>410 model_retired</code>" in page
    else:
        assert "calls stop working then" in page


# --- the status callers read ---------------------------------------------------------------
def sunsetting(live, days: int | None) -> ModelCard:
    """A deprecated, priced model whose sunset is ``days`` from today (None: no sunset)."""
    sunset = None if days is None else TODAY() + timedelta(days=days)
    card = factories.card(
        slug="sunsetting", display_name="Sunsetting DETR", status=Status.DEPRECATED,
        deprecation_date=TODAY() - timedelta(days=60), sunset_date=sunset, replacement=live,
    )  # fmt: skip
    factories.route(card=card, price=Decimal("0.0002"))
    return card


def listed(client, query: str = "") -> dict[str, str]:
    return {m["id"]: m["status"] for m in client.get(f"/v1/models{query}").json()["data"]}


def llms_entry(client, card: ModelCard) -> str:
    text = client.get("/llms.txt").content.decode()
    [line] = [line for line in text.splitlines() if f"`{card.model_id}`" in line]
    return line


@pytest.mark.parametrize(
    ("days", "status"), [(-5, "retired"), (0, "retired"), (1, "deprecated"), (None, "deprecated")]
)
def test_v1_models_tells_the_status_its_calls_answer_with(client, live, days, status):
    """From the sunset day the calls answered 410 model_retired and /pricing listed the
    model as retired, while /v1/models said "deprecated", ``?status=retired`` missed it
    and ``?status=deprecated`` listed it (session 47's outside probe)."""
    card = sunsetting(live, days)
    other = "deprecated" if status == "retired" else "retired"

    assert client.get(f"/v1/models/{card.model_id}").json()["status"] == status
    assert listed(client)[card.model_id] == status
    assert listed(client, f"?status={status}") == {card.model_id: status}
    assert card.model_id not in listed(client, f"?status={other}")


def test_llms_txt_lists_a_model_past_its_sunset_as_retired_without_a_price(client, live):
    """llms.txt said "status deprecated, $0.0002 per image" of a model whose calls answer
    410: a reader was told it could still buy it. /pricing shows it apart with no price."""
    card = sunsetting(live, -5)

    line = llms_entry(client, card)

    assert "status retired, no longer callable (HTTP 410 `model_retired`)" in line
    assert f"use `{live.model_id}` instead" in line
    assert "$" not in line


def test_a_model_reads_as_retired_on_its_sunset_day_without_a_save(client, live, monkeypatch):
    """Nothing is saved on the sunset day, so no catalogue version moves: what the API and
    llms.txt tell must come from the clock at each request, as the 410 does."""
    card = sunsetting(live, 1)
    assert client.get(f"/v1/models/{card.model_id}").json()["status"] == "deprecated"
    assert "status deprecated, $0.0002 per image" in llms_entry(client, card)

    tomorrow = TODAY() + timedelta(days=1)
    monkeypatch.setattr(timezone, "localdate", lambda *args, **kwargs: tomorrow)

    assert client.get(f"/v1/models/{card.model_id}").json()["status"] == "retired"
    assert listed(client, "?status=retired") == {card.model_id: "retired"}
    assert "status retired, no longer callable" in llms_entry(client, card)


# --- what the clock changes -----------------------------------------------------------------
def test_a_page_is_kept_no_longer_than_until_a_scheduled_publication():
    factories.card(slug="soon", is_published=True, published_at=timezone.now() + timedelta(90))
    assert seconds_to_next_change(1) == PAGE_TTL  # 90 days away
    factories.card(
        slug="sooner", is_published=True, published_at=timezone.now() + timedelta(seconds=50)
    )
    assert 0 < seconds_to_next_change(2) <= 50


def test_a_page_is_kept_no_longer_than_until_a_sunset_day(live):
    factories.card(
        status=Status.DEPRECATED, sunset_date=TODAY() + timedelta(days=1), replacement=live
    )
    until_midnight = seconds_to_next_change(3)
    assert 0 < until_midnight <= min(PAGE_TTL, 24 * 3600)


def test_the_deprecation_date_is_recorded_when_the_status_changes_and_kept(client, live):
    card = factories.card(slug="old", status=Status.LIVE)
    factories.route(card=card)
    card.status = Status.DEPRECATED
    card.save(update_fields=["status"])
    card.refresh_from_db()
    assert card.deprecation_date == TODAY()
    header = client.get(f"/v1/models/{card.model_id}")["Deprecation"]
    # A later save (a typo fixed, days on) does not move it.
    card.summary = "A detector, retired soon."
    card.save()
    card.refresh_from_db()
    assert card.deprecation_date == TODAY()
    assert client.get(f"/v1/models/{card.model_id}")["Deprecation"] == header


def test_a_recorded_deprecation_is_never_after_the_sunset(live):
    sunset = TODAY() - timedelta(days=30)
    card = factories.card(slug="gone", status=Status.RETIRED, sunset_date=sunset)
    assert card.deprecation_date == sunset
    card.full_clean()  # the dates stay in order


def test_a_card_changed_without_a_save_falls_back_to_no_later_than_its_sunset(client, live):
    sunset = TODAY() - timedelta(days=30)
    card = factories.card(slug="quiet", status=Status.LIVE)
    ModelCard.objects.filter(pk=card.pk).update(status=Status.RETIRED, sunset_date=sunset)
    header = client.get(f"/v1/models/{card.model_id}")["Deprecation"]
    midnight = datetime.combine(sunset, datetime.min.time(), UTC)
    assert header == f"@{int(midnight.timestamp())}"
