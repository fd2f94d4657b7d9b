"""Answers made for one visitor or one account say so to caches: the pages that list or
show someone's runs are ``private`` (Vary: Cookie alone let the nginx cache in front keep
them), and the API's job reads, which carry the wallet's balance, are stored by none."""

from __future__ import annotations

import pytest
from django.test import Client

from billing.services.keys import api_key_create
from tests import factories
from tests.playground.test_head_requests import BOX, png

pytestmark = pytest.mark.django_db
JSON = {"Accept": "application/json"}


def directives(response) -> set[str]:
    return {part.strip().lower() for part in response.get("Cache-Control", "").split(",")}


@pytest.fixture
def mine(client, settings, tmp_path):
    """A signed-in owner's model to try and two finished runs of it."""
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card()
    factories.route(card=card)
    owner = factories.user()
    client.force_login(owner)
    runs = [
        factories.finished_run(card=card, image_bytes=png(), result=[BOX], owner=owner)
        for _ in range(2)
    ]
    return card, owner, runs


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("/runs", {}),
        ("/models/{model}/try", {}),
        ("/playground/jobs/{job}", {}),
        ("/compare/run/{job},{other}", {}),
        ("/compare/run/{job},{other}", JSON),
    ],
)
def test_a_visitors_own_pages_are_private(client, mine, url, headers):
    card, _, runs = mine
    url = url.format(job=runs[0].pk, other=runs[1].pk, model=card.model_id)
    response = client.get(url, headers=headers)
    assert response.status_code == 200
    assert "private" in directives(response) and "public" not in directives(response)


def test_an_anonymous_visitors_tries_are_private_too(mine):
    stranger = Client()
    card, _, _ = mine
    for url in ("/runs", f"/models/{card.model_id}/try"):
        response = stranger.get(url)
        assert response.status_code == 200
        assert "private" in directives(response), url


def test_a_public_runs_page_is_private_to_each_visitor(client, mine):
    """Its owner gets the buttons and the cost, a stranger neither: still per visitor."""
    _, _, runs = mine
    runs[0].is_public = True
    runs[0].save(update_fields=["is_public"])
    response = Client().get(f"/playground/jobs/{runs[0].pk}")
    assert response.status_code == 200
    assert "private" in directives(response)


def test_a_runs_polled_json_is_still_stored_by_no_cache(client, mine):
    """It was ``private, no-store`` before the page it polls for became private: making
    the page private must not loosen it."""
    _, _, runs = mine
    response = client.get(f"/playground/jobs/{runs[0].pk}", headers=JSON)
    assert response.status_code == 200
    assert {"private", "no-store"} <= directives(response)


@pytest.mark.parametrize("url", ["/v1/jobs", "/v1/jobs/{job}"])
def test_the_api_job_reads_are_stored_by_no_cache(mine, url):
    _, owner, runs = mine
    _, key = api_key_create(user=owner, name="k")
    response = Client().get(url.format(job=runs[0].pk), headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert "balance" in response.content.decode()  # the account's money, hence no-store
    assert {"private", "no-store"} <= directives(response)
