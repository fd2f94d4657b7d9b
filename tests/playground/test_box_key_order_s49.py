"""Every answer gives a box's keys as the docs show them, xmin, ymin, xmax, ymax, and a
detection's as label, score, box, whatever order the database keeps them in (session 49's
outside probe).

PostgreSQL's jsonb keeps an object's keys sorted by length, then bytes: a result read back
from ``Job.result`` has ``{"xmax", "xmin", "ymax", "ymin"}`` boxes and ``{"box", "label",
"score", "box_float"}`` detections, and /v1/inference, /v1/detections, /v1/jobs and the
webhook body passed them through as read (the /hf and Cloudflare routes rebuilt them). The
stored result here is written in jsonb's order, so the test fails without the fix on SQLite
too, and on PostgreSQL it is also what the database gives back. The checks are on the JSON
text, where the order is.
"""

from __future__ import annotations

import io
import re
from decimal import Decimal

import pytest
from PIL import Image

from billing.services.keys import api_key_create
from billing.services.topups import credit_grant
from playground.models import Job
from playground.webhooks import webhook_body
from tests import factories

pytestmark = pytest.mark.django_db

# As PostgreSQL's jsonb hands a worker's result back: keys by length, then bytes.
STORED = [
    {
        "box": {"xmax": 30, "xmin": 1, "ymax": 40, "ymin": 2},
        "label": "cat",
        "score": 0.9,
        "box_float": {"xmax": 30.9, "xmin": 1.7, "ymax": 40.0, "ymin": 2.2},
    },
    {
        "box": {"xmax": 60, "xmin": 5, "ymax": 45, "ymin": 7},
        "label": "dog",
        "score": 0.7,
        "box_float": {"xmax": 60.5, "xmin": 5.25, "ymax": 45.5, "ymin": 7.75},
    },
]
DETECTION = re.compile(r'\{"label":\s*"[a-z]+",\s*"score":\s*[\d.]+,\s*"box":\s*\{(.*?)\}\}')
BOX_ORDER = ["xmin", "ymin", "xmax", "ymax"]


def key_orders(text: str) -> list[list[str]]:
    """The key order of each detection's box in a JSON text; [] when a detection's own keys
    are not label, score, box in that order (the pattern then finds none)."""
    return [re.findall(r'"(\w+)":', box) for box in DETECTION.findall(text)]


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (200, 40, 120)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def finished(client, settings, tmp_path, other_user):
    """A job made through the API (its Idempotency-Key recorded), then finished with a
    result stored as jsonb keeps it."""
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card()
    factories.route(card=card, price=Decimal("0.0002"))
    credit_grant(user=other_user, amount=Decimal("1"), reason="test")
    _, key = api_key_create(user=other_user, name="order")
    headers = {"Authorization": f"Bearer {key}", "Prefer": "respond-async"}
    image = jpeg()

    def post(route: str, query: str = "", idempotency_key: str = ""):
        return client.post(
            f"/v1/{route}/{card.model_id}{query}",
            data=image,
            content_type="image/jpeg",
            headers={**headers, "Idempotency-Key": idempotency_key or route},
        )

    made = {route: post(route) for route in ("inference", "detections")}
    for route, response in made.items():
        assert response.status_code == 202, (route, response.content)
        Job.objects.filter(pk=response.json()["id"]).update(status="succeeded", result=STORED)
    return post, made, {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("route", ["inference", "detections"])
def test_the_answer_of_a_finished_call_orders_box_keys_as_the_docs(client, finished, route):
    post, _, _ = finished
    answer = post(route)  # the replay of the call: its finished job's answer, 200
    assert answer.status_code == 200, answer.content
    assert key_orders(answer.content.decode()) == [BOX_ORDER, BOX_ORDER]


def test_the_jobs_api_orders_box_keys_as_the_docs(client, finished):
    _, made, auth = finished
    job_id = made["detections"].json()["id"]
    for query in ("", "?box_format=float", "?box_format=int&threshold=0.8"):
        text = client.get(f"/v1/jobs/{job_id}{query}", headers=auth).content.decode()
        expected = 1 if "threshold=0.8" in query else 2
        assert key_orders(text) == [BOX_ORDER] * expected, (query, text)
    listed = client.get("/v1/jobs", headers=auth).content.decode()
    assert key_orders(listed) == [BOX_ORDER] * 4
    # Float boxes are the worker's float coordinates, in the same order.
    floats = client.get(f"/v1/jobs/{job_id}?box_format=float", headers=auth).json()
    assert list(floats["detections"][0]["box"].items()) == [
        ("xmin", 1.7), ("ymin", 2.2), ("xmax", 30.9), ("ymax", 40.0),
    ]  # fmt: skip


def test_the_webhook_body_orders_box_keys_as_the_docs(finished):
    _, made, _ = finished
    job = Job.objects.get(pk=made["inference"].json()["id"])
    assert key_orders(webhook_body(job).decode()) == [BOX_ORDER, BOX_ORDER]
