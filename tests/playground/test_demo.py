"""The inline demo: on which pages, what Run costs before it is pressed, who pays, and the
job JSON it polls (the API's job resource, with the queue position and the worker's phase).
The whole flow in a browser against a real worker is in tests/test_browser.py."""

from __future__ import annotations

import pytest

from billing.models import Charge
from catalog.models import ModelCard
from playground import services
from playground.models import Job
from playground.serializers import JobSerializer, money
from tests import factories
from tests.playground.test_playground_page import JSON, card, try_url, upload  # noqa: F401

pytestmark = pytest.mark.django_db


def state(client, card):  # noqa: F811
    response = client.get(f"{try_url(card)}/state")
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-store"
    return response.json()


def test_before_run_a_visitor_sees_their_free_tries_and_asking_counts_none(
    client,
    card,  # noqa: F811
    settings,
    django_capture_on_commit_callbacks,
):
    settings.VITRINE_PLAYGROUND_PER_HOUR = 3
    first = state(client, card)
    assert (first["pays"], first["free"]["remaining"], first["free"]["limit"]) == ("free", 3, 3)
    assert state(client, card)["free"]["remaining"] == 3  # asking spent nothing
    with django_capture_on_commit_callbacks():
        assert client.post(try_url(card), {"image": upload()}, headers=JSON).status_code == 202
    assert state(client, card)["free"]["remaining"] == 2
    assert Charge.objects.count() == 0


def test_a_signed_in_visitor_with_a_funded_wallet_pays_the_api_price(
    client,
    card,  # noqa: F811
    other_user,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.VITRINE_PLAYGROUND_PER_HOUR = 1
    factories.funded(other_user, "1")
    client.force_login(other_user)
    before = state(client, card)
    assert (before["pays"], before["cost"], before["cost_display"]) == (
        "wallet",
        "0.0002",
        "$0.0002",
    )
    assert before["balance"] == "1"
    with django_capture_on_commit_callbacks():
        # Past the one free try: a paying visitor spends none.
        codes = [
            client.post(try_url(card), {"image": upload(), "threshold": "0.3"}, headers=JSON)
            for _ in range(2)
        ]
    assert [r.status_code for r in codes] == [202, 202]
    job = codes[0].json()
    # The API's pipeline reserved the price, as POST /v1/inference does.
    charge = Charge.objects.get(job_id=job["id"])
    assert (charge.status, money(charge.amount), charge.user_id) == (
        "reserved",
        "0.0002",
        other_user.pk,
    )
    assert (job["cost"], job["charge_status"], job["balance"]) == ("0.0002", "reserved", "0.9998")
    assert Job.objects.get(pk=job["id"]).parameters == {"threshold": 0.3}
    assert state(client, card)["balance"] == "0.9996"


def test_a_visitor_whose_wallet_cannot_cover_a_run_uses_free_tries(
    client,
    card,  # noqa: F811
    other_user,
    django_capture_on_commit_callbacks,
):
    factories.funded(other_user, "0.0001")  # under the price
    client.force_login(other_user)
    assert state(client, card)["pays"] == "free"
    with django_capture_on_commit_callbacks():
        assert client.post(try_url(card), {"image": upload()}, headers=JSON).status_code == 202
    assert Charge.objects.count() == 0


def test_a_run_whose_credit_another_tab_spent_meanwhile_is_a_free_try(
    client,
    card,  # noqa: F811
    other_user,
    monkeypatch,
    settings,
    django_capture_on_commit_callbacks,
):
    """Two tabs, a wallet for one run: both requests are read as paid, one reserves the
    price and the other finds the wallet empty. It was a 402 beside "20 of 20 free tries
    left"; it is the free try the page offers a visitor with that wallet."""
    from playground import demo

    settings.VITRINE_PLAYGROUND_PER_HOUR = 2
    factories.funded(other_user, "0.0002")
    client.force_login(other_user)
    monkeypatch.setattr(demo, "wallet_pays", lambda request, route: True)  # read before
    with django_capture_on_commit_callbacks():
        paid = client.post(try_url(card), {"image": upload()}, headers=JSON)
        raced = client.post(try_url(card), {"image": upload()}, headers=JSON)
    assert (paid.status_code, paid.json()["cost"]) == (202, "0.0002")
    assert raced.status_code == 202, raced.content
    assert (raced.json()["cost"], raced.json()["charge_status"]) == ("0", None)
    assert Charge.objects.count() == 1
    monkeypatch.undo()  # the wallet is empty now: the page offers free tries
    assert state(client, card)["free"]["remaining"] == 1  # it spent a free try
    with django_capture_on_commit_callbacks():
        client.post(try_url(card), {"image": upload()}, headers=JSON)
        out = client.post(try_url(card), {"image": upload()}, headers=JSON)
    assert out.status_code == 429  # and, the tries spent, the free tries' own limit


def test_a_bad_threshold_is_a_400_in_the_api_shape(client, card):  # noqa: F811
    response = client.post(try_url(card), {"image": upload(), "threshold": "2"}, headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_threshold"
    assert Job.objects.count() == 0


def test_the_page_job_json_is_the_api_job_resource_with_its_queue_position(
    client,
    card,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks():  # no worker: the jobs stay queued
        ids = [
            client.post(try_url(card), {"image": upload()}, headers=JSON).json()["id"]
            for _ in range(3)
        ]
    bodies = [client.get(f"/playground/jobs/{job_id}", headers=JSON).json() for job_id in ids]
    assert [b["queue_position"] for b in bodies] == [1, 2, 3]
    assert all(b["phase"] is None and b["status"] == "queued" for b in bodies)
    # Every field of the API's one job serializer, then the page's own links.
    assert set(JobSerializer().fields) <= set(bodies[0])
    assert bodies[0]["url"] == f"/playground/jobs/{ids[0]}"
    assert bodies[0]["api_url"].endswith(f"/v1/jobs/{ids[0]}")
    first = Job.objects.get(pk=ids[0])
    claimed = services.job_claim(job_id=first.pk, worker="test")
    services.job_phase_set(job=claimed, phase="loading_model")
    moved = [client.get(f"/playground/jobs/{job_id}", headers=JSON).json() for job_id in ids]
    assert [(b["status"], b["phase"], b["queue_position"]) for b in moved] == [
        ("running", "loading_model", None),
        ("queued", None, 1),
        ("queued", None, 2),
    ]
    services.job_phase_set(job=claimed, phase="")
    assert client.get(f"/playground/jobs/{ids[0]}", headers=JSON).json()["phase"] == "inference"


def test_live_and_beta_model_pages_carry_the_demo_and_stay_cached(client, card):  # noqa: F811
    page = client.get(f"/models/{card.model_id}")
    body = page.content.decode()
    assert 'id="demo"' in body and f'action="{try_url(card)}"' in body
    assert f'data-state-url="{try_url(card)}/state"' in body
    assert "playground/examples/street.jpg" in body
    cached = client.get(f"/models/{card.model_id}")
    assert (page["X-Cache"], cached["X-Cache"]) == ("miss", "hit")
    # The cached copy carries this visitor's CSRF token, not the placeholder.
    assert "__vitrine_csrf__" not in cached.content.decode()
    assert 'name="csrfmiddlewaretoken" value="' in cached.content.decode()
    member = type(client)()
    member.force_login(factories.user())
    for status, shown in [("beta", True), ("coming_soon", False), ("deprecated", False)]:
        card.status = status
        card.save(update_fields=["status"])  # an operator's save: every cached copy is stale
        for visitor in (client, member):
            page = visitor.get(f"/models/{card.model_id}").content.decode()
            assert ('id="demo"' in page) is shown


def test_the_playground_offers_live_models_and_opens_the_chosen_one(client, card):  # noqa: F811
    other = factories.card(display_name="Another detector")
    factories.route(card=other)
    factories.card(display_name="Not yet", status=ModelCard.Status.COMING_SOON)
    page = client.get("/playground").content.decode()
    assert f'value="{card.model_id}"' in page and f'value="{other.model_id}"' in page
    assert "Not yet" not in page
    chosen = client.get("/playground", {"model": other.model_id}).content.decode()
    assert f'action="{try_url(other)}"' in chosen
    unknown = client.get("/playground", {"model": "nobody/nothing"}).content.decode()
    assert "No live model is called" in unknown and 'id="demo"' in unknown


def test_the_first_job_of_a_model_in_a_process_records_its_wait_for_the_load(
    runtime_checkpoint, settings, tmp_path
):
    """The worker says "loading the model" on the row while it loads, and times it; the
    next job finds the model loaded. (The task is called in this process.)"""
    from playground.runtime import clear_detector_cache
    from playground.tasks import run_detection

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card(checkpoint_local_dir=str(runtime_checkpoint("yolos_tiny")))  # noqa: F811
    image = upload().read()
    jobs = [services.job_create(card=card, image_bytes=image) for _ in range(2)]
    clear_detector_cache()
    try:
        for job in jobs:
            run_detection(str(job.pk))
    finally:
        clear_detector_cache()
    first, second = (Job.objects.get(pk=job.pk) for job in jobs)
    assert (first.status, second.status) == ("succeeded", "succeeded"), first.error_message
    assert first.timings["load"] > 0 and "load" not in second.timings
    assert first.timings["queue"] >= 0 and second.timings["queue"] >= first.timings["queue"]
    assert first.phase == second.phase == ""


def test_someone_elses_public_run_polls_without_the_owners_wallet(
    client,
    card,  # noqa: F811
    other_user,
    django_capture_on_commit_callbacks,
):
    factories.funded(other_user, "1")
    owner = type(client)()
    owner.force_login(other_user)
    with django_capture_on_commit_callbacks():
        job_id = owner.post(try_url(card), {"image": upload()}, headers=JSON).json()["id"]
    url = f"/playground/jobs/{job_id}"
    assert owner.get(url, headers=JSON).json()["balance"] == "0.9998"
    assert client.get(url, headers=JSON).status_code == 404  # private
    Job.objects.filter(pk=job_id).update(is_public=True)
    public = client.get(url, headers=JSON).json()
    assert (public["id"], public["balance"], public["webhook"]) == (job_id, None, None)
