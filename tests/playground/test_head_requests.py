"""HEAD is answered wherever GET is: a link checker, a monitor or a cache probing a page
asks with HEAD, and got 405 from every playground page that allowed only GET."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests import factories

pytestmark = pytest.mark.django_db

METRICS_TOKEN = "metrics-token-0123456789"


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 220, 200)).save(out, "PNG")
    return out.getvalue()


BOX = {"label": "cat", "score": 0.9, "box": {"xmin": 2, "ymin": 3, "xmax": 30, "ymax": 40}}


@pytest.fixture
def signed_in(client, settings, tmp_path):
    """A signed-in owner with two finished runs of a model they can try."""
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_METRICS_TOKEN = METRICS_TOKEN
    card = factories.card()
    factories.route(card=card)
    owner = factories.user()
    client.force_login(owner)
    runs = [
        factories.finished_run(card=card, image_bytes=png(), result=[BOX], owner=owner)
        for _ in range(2)
    ]
    return card, runs


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.parametrize(
    "url",
    [
        "/runs",
        "/playground",
        "/playground/jobs/{job}",
        "/playground/jobs/{job}/image",
        "/playground/jobs/{job}/export.json",
        "/playground/jobs/{job}/export.coco",
        "/playground/jobs/{job}/export.csv",
        "/playground/jobs/{job}/export.png",
        "/models/{model}/try",
        "/models/{model}/try/state",
        "/compare/run/{job},{other}",
        "/compare/run?models={model}",
        "/healthz",
        "/metrics",
    ],
)
def test_head_answers_as_get_does_with_no_body(client, signed_in, url):
    card, runs = signed_in
    url = url.format(job=runs[0].pk, other=runs[1].pk, model=card.model_id)
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"} if url == "/metrics" else {}
    got = client.get(url, headers=headers)
    head = client.head(url, headers=headers)
    assert got.status_code == 200
    assert head.status_code == got.status_code
    assert head["Content-Type"] == got["Content-Type"]
    assert body(head) == b""


def test_a_404_says_it_varies_with_accept(client, db):
    """One address answers the page or the API's JSON by Accept: a cache keeping one must
    not hand it to the other kind of client."""
    page = client.get("/playground/jobs/00000000-0000-0000-0000-000000000000")
    script = client.get(
        "/playground/jobs/00000000-0000-0000-0000-000000000000",
        headers={"Accept": "application/json"},
    )
    assert (page.status_code, script.status_code) == (404, 404)
    assert script["Content-Type"] == "application/json"
    for response in (page, script):
        assert "Accept" in response["Vary"]
