"""Runs people keep and share: the permalink (private to its owner, or public), My runs,
the public toggle, and the JSON / COCO / CSV / PNG exports.

Jobs are made through the real API (paid) or the real service (free tries) and run by the
real task in this process on a random-weight checkpoint; tests/test_runs_browser.py walks
the same flow in a browser against a real worker process.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from PIL import Image

from billing.models import Charge
from billing.services.keys import api_key_create
from billing.services.topups import credit_grant
from playground import exports, runs, services
from playground.api import BAD_THRESHOLD
from playground.models import Job
from playground.palette import PALETTE, label_colour, label_hash
from playground.retention import uploads_purge_expired
from playground.runtime.labels import label_map
from playground.tasks import run_detection
from tests import factories
from tests.playground.runtime_helpers import blocks_image, encode

PRICE = Decimal("0.0002")
FLOOR = 0.002
FORMATS = ("json", "coco", "csv", "png")


@pytest.fixture
def storage(settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_DETECTION_FLOOR = FLOOR  # random weights: keep the faint boxes
    settings.VITRINE_ALLOW_UNTRAINED = True  # the paid job runs on the random checkpoint


@pytest.fixture
def card(db, runtime_checkpoint):
    card = factories.card(
        checkpoint_local_dir=str(runtime_checkpoint("yolos_tiny")), checkpoint_revision="rev-7"
    )
    factories.route(card=card, price=PRICE)
    return card


@pytest.fixture
def owner(db):
    user = factories.user(username="owner")
    credit_grant(user=user, amount=Decimal("1.00"), reason="test")
    return user


def api_run(client, card, user, *, threshold=FLOOR) -> Job:
    """A paid job through /v1/detections (as the owner's API key), run by the task."""
    _, key = api_key_create(user=user, name=f"k{Job.objects.count()}")
    response = client.post(
        f"/v1/detections/{card.model_id}?threshold={threshold}",
        data=encode(blocks_image(320, 240, seed=1), "JPEG"),
        content_type="image/jpeg",
        headers={"Authorization": f"Bearer {key}", "Prefer": "respond-async"},
    )
    assert response.status_code == 202, response.content
    run_detection(response.json()["id"])
    return Job.objects.get(pk=response.json()["id"])


@pytest.fixture
def paid(client, storage, card, owner) -> Job:
    job = api_run(client, card, owner)
    assert job.status == "succeeded" and job.result, job.error_message
    return job


def urls(job: Job) -> dict[str, str]:
    return {
        "page": reverse("playground:job", args=[job.pk]),
        "image": reverse("playground:job_image", args=[job.pk]),
        **{fmt: reverse("playground:job_export", args=[job.pk, fmt]) for fmt in FORMATS},
    }


def shown(job: Job, threshold: float) -> list[dict]:
    return [d for d in job.result if d["score"] >= threshold]


def test_the_permalink_records_what_ran_for_its_owner(client, paid, owner):
    client.force_login(owner)
    page = client.get(urls(paid)["page"])

    assert page.status_code == 200
    html = page.content.decode()
    charge = Charge.objects.get(job_id=paid.pk)
    assert "<code>rev-7</code>" in html  # the model revision
    assert f"threshold {FLOOR}" in html  # the parameters it ran with
    assert f"#{charge.price_version_id}: $0.0002 per image" in html
    assert '<td id="cost">$0.0002 · posted' in html
    timings = html.split('id="timings">')[1].split("</td>")[0].split(" · ")
    # "load" only when this process loaded the model for it (tests share loaded models).
    assert [t.split()[0] for t in timings if not t.startswith("load ")] == [
        "queue",
        "decode",
        "preprocess",
        "forward",
        "postprocess",
        "batch",
    ]
    assert timings[-1] == "batch of 1" and timings[2].endswith(" ms")
    assert paid.weights_revision[:10] in html
    assert html.count('<tr><td><span class="swatch ') == len(shown(paid, FLOOR))
    assert 'id="visibility"' in html and "Make public" in html
    # The run's own image, its boxes drawn over it by the page (the PNG is a download).
    assert f'<img id="run-image" src="{urls(paid)["image"]}"' in html
    assert html.count('<span class="run-tag swatch-') == len(shown(paid, FLOOR))


@pytest.mark.parametrize("who", ["anonymous", "other user"])
def test_a_private_run_is_not_found_for_anyone_else(client, paid, other_user, who):
    if who == "other user":
        client.force_login(other_user)
    for name, url in urls(paid).items():
        response = client.get(url)
        assert response.status_code == 404, name
        if name in FORMATS:
            assert response.json()["error"]["code"] == "job_not_found"
            assert response.json()["error"]["message"] == runs.RUN_NOT_FOUND
    visibility = reverse("playground:job_visibility", args=[paid.pk])
    assert client.post(visibility, {"public": "1"}).status_code == 404
    assert Job.objects.get(pk=paid.pk).is_public is False


def test_made_public_anyone_sees_it_and_private_again_nobody(client, paid, owner, other_user):
    visibility = reverse("playground:job_visibility", args=[paid.pk])
    client.force_login(owner)
    response = client.post(visibility, {"public": "1"}, follow=True)
    assert runs.MADE_PUBLIC in response.content.decode()
    assert Job.objects.get(pk=paid.pk).is_public
    # Made public, the owner is handed the link to share, with a copy button.
    link = f'<code id="run-link">http://testserver{urls(paid)["page"]}</code>'
    assert link in response.content.decode()

    client.force_login(other_user)
    for name, url in urls(paid).items():
        assert client.get(url).status_code == 200, name
    page = client.get(urls(paid)["page"]).content.decode()
    assert 'id="public-flag"' in page and 'id="visibility"' not in page  # not their toggle
    # Someone else's public run shows its cost but not the owner's wallet or webhook.
    record = client.get(urls(paid)["json"]).json()
    assert record["cost"] == "0.0002" and record["balance"] is None and record["webhook"] is None
    assert client.post(visibility, {"public": "0"}).status_code == 404

    client.force_login(owner)
    assert client.get(urls(paid)["json"]).json()["balance"] == "0.9998"
    assert client.post(visibility, {"public": "maybe"}).json()["error"]["code"] == (
        "invalid_visibility"
    )
    assert client.get(visibility).status_code == 405
    client.post(visibility, {"public": "0"})
    client.force_login(other_user)
    assert client.get(urls(paid)["page"]).status_code == 404


@pytest.mark.parametrize("threshold", [None, "0.2", "nonsense"])
def test_making_a_run_public_keeps_the_threshold_the_page_showed(client, paid, owner, threshold):
    client.force_login(owner)
    query = {} if threshold is None else {"threshold": threshold}
    page = client.get(urls(paid)["page"], query).content.decode()
    form = page.split('<form id="visibility"')[1].split("</form>")[0]
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))
    if threshold == "nonsense":
        fields["threshold"] = threshold  # a hand-made POST
    response = client.post(reverse("playground:job_visibility", args=[paid.pk]), fields)

    # The page comes back at the threshold it was showing; a bad one showed the run's own.
    kept = "?threshold=0.2" if threshold == "0.2" else ""
    assert response.status_code == 302
    assert response["Location"] == urls(paid)["page"] + kept
    shown = 0.2 if threshold == "0.2" else FLOOR
    assert f"at {shown} or above" in client.get(response["Location"]).content.decode()
    assert Job.objects.get(pk=paid.pk).is_public


@pytest.mark.parametrize("threshold", [None, "strict"])
def test_the_permalink_shows_the_same_integer_boxes_as_the_exports(client, paid, owner, threshold):
    client.force_login(owner)
    query = {}
    if threshold == "strict":  # keeps the best few boxes
        query = {"threshold": f"{sorted(d['score'] for d in paid.result)[-3]:g}"}
    page = client.get(urls(paid)["page"], query).content.decode()
    table = page.split('<tbody id="detections">')[1].split("</tbody>")[0]
    boxes = re.findall(r'<td class="num">[^<]*</td><td>([^<]*)</td></tr>', table)

    record = client.get(urls(paid)["json"], query).json()
    rows = list(csv.DictReader(io.StringIO(client.get(urls(paid)["csv"], query).content.decode())))
    sides = ("xmin", "ymin", "xmax", "ymax")
    assert boxes == [", ".join(str(d["box"][k]) for k in sides) for d in record["detections"]]
    assert boxes == [", ".join(row[k] for k in sides) for row in rows]
    assert boxes and all(re.fullmatch(r"\d+, \d+, \d+, \d+", box) for box in boxes)


def test_each_export_downloads_and_parses(client, paid, owner):
    from pycocotools.coco import COCO

    client.force_login(owner)
    expected = shown(paid, FLOOR)
    names = {}
    responses = {fmt: client.get(urls(paid)[fmt]) for fmt in FORMATS}
    for fmt, response in responses.items():
        assert response.status_code == 200, (fmt, response.content[:200])
        disposition = response["Content-Disposition"]
        assert disposition.startswith("attachment; filename="), fmt
        names[fmt] = disposition.split("=", 1)[1].strip('"')
    short = str(paid.pk)[:8]
    assert names == {
        "json": f"{paid.card.slug}-{short}.json",
        "coco": f"{paid.card.slug}-{short}.coco.json",
        "csv": f"{paid.card.slug}-{short}.csv",
        "png": f"{paid.card.slug}-{short}.png",
    }

    # JSON: the API's job resource (as GET /v1/jobs/<id>) plus the permalink.
    record = json.loads(responses["json"].content)
    assert (record["id"], record["object"], record["model"]) == (
        str(paid.pk), "detection_job", paid.card.model_id,
    )  # fmt: skip
    assert record["model_revision"] == "rev-7" and record["threshold"] == FLOOR
    assert record["price_version"]["price"] == "0.0002" and record["cost"] == "0.0002"
    assert record["weights"]["revision"] == paid.weights_revision
    assert record["parameters"] == {"threshold": FLOOR, "box_format": "int"}
    assert record["permalink"] == f"http://testserver/playground/jobs/{paid.pk}"
    assert len(record["detections"]) == len(expected)

    # COCO: a dataset pycocotools loads, whose annotations load as results too.
    path = io.StringIO(responses["coco"].content.decode())
    document = json.load(path)
    coco = COCO()
    coco.dataset = document
    coco.createIndex()
    assert coco.getImgIds() == [1]
    assert coco.imgs[1]["width"] == paid.width and coco.imgs[1]["height"] == paid.height
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert len(annotations) == len(expected)
    id2label = label_map(services.card_spec(paid.card))
    assert {c["id"]: c["name"] for c in document["categories"]} == id2label  # the model's ids
    for annotation, detection in zip(annotations, expected, strict=True):
        assert id2label[annotation["category_id"]] == detection["label"]
        x, y, w, h = annotation["bbox"]
        box = detection["box_float"]
        assert (x, y, x + w, y + h) == pytest.approx(
            (box["xmin"], box["ymin"], box["xmax"], box["ymax"])
        )
        assert annotation["score"] == detection["score"]
    results = coco.loadRes(document["annotations"])
    assert len(results.getAnnIds()) == len(expected)

    # CSV: one row per detection, the API's integer boxes.
    rows = list(csv.DictReader(io.StringIO(responses["csv"].content.decode())))
    assert [r["label"] for r in rows] == [d["label"] for d in expected]
    assert [float(r["score"]) for r in rows] == [d["score"] for d in expected]
    assert [int(rows[0][k]) for k in ("xmin", "ymin", "xmax", "ymax")] == [
        expected[0]["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")
    ]

    # PNG: the upload at its size, with each class's boxes in its palette colour.
    image = Image.open(io.BytesIO(responses["png"].content))
    assert (image.format, image.size) == ("PNG", (paid.width, paid.height))
    small = Image.open(io.BytesIO(client.get(urls(paid)["png"], {"max_width": 160}).content))
    assert small.size == (160, 120)
    colours = {c for _, c in image.convert("RGB").getcolors(maxcolors=1 << 20)}
    assert rgb(label_colour(expected[-1]["label"])) in colours  # drawn last, never covered


def rgb(hexcode: str) -> tuple[int, int, int]:
    return tuple(int(hexcode[i : i + 2], 16) for i in (1, 3, 5))


def test_the_png_draws_each_box_in_its_class_colour():
    image = Image.new("RGB", (400, 300), (255, 255, 255))
    detections = [
        {"label": "cat", "score": 0.9, "box": {"xmin": 40, "ymin": 60, "xmax": 200, "ymax": 250}},
        {
            "label": "dog",
            "score": 0.7,
            "box": {"xmin": 220.5, "ymin": 30, "xmax": 390, "ymax": 290},
        },
    ]
    assert label_colour("cat") != label_colour("dog")
    drawn = Image.open(io.BytesIO(exports.png_render(image, detections))).convert("RGB")
    assert drawn.size == (400, 300)
    assert drawn.getpixel((40, 150)) == rgb(label_colour("cat"))  # left edge
    assert drawn.getpixel((120, 250)) == rgb(label_colour("cat"))  # bottom edge
    assert drawn.getpixel((389, 150)) == rgb(label_colour("dog"))  # right edge
    assert drawn.getpixel((120, 150)) == (255, 255, 255)  # inside: untouched
    assert drawn.getpixel((42, 44)) == rgb(label_colour("cat"))  # its label's tag, above it
    tag = [drawn.getpixel((x, 51)) for x in range(41, 100)]
    assert (255, 255, 255) in tag  # white text on the tag


def test_exports_honour_the_runs_threshold_or_a_valid_override(client, paid, owner):
    client.force_login(owner)
    strict = sorted(d["score"] for d in paid.result)[-2]  # keeps exactly the best two (or ties)
    expected = len(shown(paid, strict))

    rows = client.get(urls(paid)["csv"] + f"?threshold={strict}").content.decode().splitlines()
    assert len(rows) - 1 == expected
    coco = client.get(urls(paid)["coco"] + f"?threshold={strict}").json()
    assert len(coco["annotations"]) == expected
    assert len(client.get(urls(paid)["json"] + "?threshold=1").json()["detections"]) == 0
    page = client.get(urls(paid)["page"] + f"?threshold={strict}").content.decode()
    assert f"?threshold={strict:g}" in page  # the downloads keep the page's threshold
    for bad in ("abc", "1.5", "-0.1", "nan", "inf"):
        for fmt in FORMATS:
            response = client.get(urls(paid)[fmt], {"threshold": bad})
            assert response.status_code == 400, (bad, fmt)
            assert response.json()["error"] == {
                "message": BAD_THRESHOLD,
                "type": "invalid_request_error",
                "code": "invalid_threshold",
                "param": "threshold",
            }
    page = client.get(urls(paid)["page"], {"threshold": "abc"})
    assert page.status_code == 200 and BAD_THRESHOLD.replace("'", "&#x27;") in page.content.decode()
    for bad in ("0", "wide", "99999", "-5"):
        response = client.get(urls(paid)["png"], {"max_width": bad})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_max_width"
    unknown = client.get(urls(paid)["json"].replace("export.json", "export.xml"))
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_format"


def test_after_retention_the_exports_remain_but_the_png_is_gone(client, paid, owner, settings):
    settings.VITRINE_UPLOAD_RETENTION = 1
    counts = uploads_purge_expired(now=timezone.now() + timedelta(hours=2))
    assert counts["images_deleted"] == 1
    client.force_login(owner)

    for fmt in ("json", "coco", "csv"):
        assert client.get(urls(paid)[fmt]).status_code == 200, fmt
    png = client.get(urls(paid)["png"])
    assert png.status_code == 410
    assert png.json()["error"]["code"] == "image_deleted"
    assert "was deleted on" in png.json()["error"]["message"]
    page = client.get(urls(paid)["page"]).content.decode()
    assert 'id="image-gone"' in page and urls(paid)["png"] not in page.split('id="exports"')[0]


def test_the_owner_deletes_a_runs_image_now_and_keeps_its_detections(
    client, paid, owner, other_user
):
    from playground.storage import job_storage

    name = paid.image_name
    delete = reverse("playground:job_image_delete", args=[paid.pk])
    client.force_login(other_user)
    assert client.post(delete).status_code == 404  # not theirs: not even said to exist
    assert job_storage().exists(name)
    client.force_login(owner)
    assert 'id="image-delete"' in client.get(urls(paid)["page"]).content.decode()
    assert client.get(delete).status_code == 405  # a link cannot delete it

    response = client.post(delete)

    assert response.status_code == 302 and response["Location"] == urls(paid)["page"]
    assert not job_storage().exists(name)
    paid.refresh_from_db()
    assert (paid.image_name, paid.status) == ("", "succeeded") and paid.image_deleted_at
    page = client.get(urls(paid)["page"]).content.decode()
    assert escape(runs.IMAGE_DELETED_NOW) in page
    assert 'id="image-gone"' in page and 'id="image-delete"' not in page
    assert client.get(urls(paid)["image"]).status_code in (404, 410)
    assert client.get(urls(paid)["png"]).status_code == 410
    assert client.get(urls(paid)["json"]).json()["detections"]  # the detections stay
    assert client.post(delete).status_code == 302  # again: nothing left to do, no error


def test_the_api_deletes_a_finished_jobs_image_for_its_owner_only(
    client, paid, owner, other_user, storage, card
):
    from playground.storage import job_storage

    name = paid.image_name
    url = f"/v1/jobs/{paid.pk}/image"
    _, mine = api_key_create(user=owner, name="mine")
    _, theirs = api_key_create(user=other_user, name="theirs")
    as_owner = {"Authorization": f"Bearer {mine}"}
    assert client.get(f"/v1/jobs/{paid.pk}", headers=as_owner).json()["image"]["deleted"] is None
    stranger = client.delete(url, headers={"Authorization": f"Bearer {theirs}"})
    assert stranger.status_code == 404 and stranger.json()["error"]["code"] == "job_not_found"
    assert client.get(url, headers=as_owner).status_code == 405
    typo = client.delete(f"{url}?forever=1", headers=as_owner)
    assert typo.status_code == 400 and job_storage().exists(name)

    response = client.delete(url, headers=as_owner)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == str(paid.pk) and body["status"] == "succeeded"
    assert isinstance(body["image"]["deleted"], int) and body["detections"]
    assert response["X-Vitrine-Job-Id"] == str(paid.pk)
    assert not job_storage().exists(name)
    again = client.delete(url, headers=as_owner)
    assert again.status_code == 200 and again.json()["image"] == body["image"]
    assert client.get(f"/v1/jobs/{paid.pk}", headers=as_owner).json()["image"] == body["image"]

    queued = services.job_create(
        card=card, image_bytes=encode(blocks_image(64, 64, seed=4)), owner=owner
    )
    refused = client.delete(f"/v1/jobs/{queued.pk}/image", headers=as_owner)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "job_not_finished"
    assert job_storage().exists(queued.image_name)


def test_a_runs_image_cannot_be_deleted_while_it_runs(client, storage, card, owner):
    from playground.storage import job_storage

    job = services.job_create(
        card=card, image_bytes=encode(blocks_image(64, 64, seed=4)), owner=owner
    )
    client.force_login(owner)
    assert 'id="image-delete"' not in client.get(urls(job)["page"]).content.decode()
    client.post(reverse("playground:job_image_delete", args=[job.pk]))
    page = client.get(urls(job)["page"]).content.decode()
    assert "its image can be deleted once it has finished" in page
    job.refresh_from_db()
    assert job.image_deleted_at is None and job_storage().exists(job.image_name)


def test_an_anonymous_try_belongs_to_its_session(client, storage, card):
    client.get("/runs")  # no session yet: nothing listed, and none created
    assert "sessionid" not in client.cookies
    client.get(f"/models/{card.model_id}/try")
    client.session.save()
    job = services.job_create(
        card=card,
        image_bytes=encode(blocks_image(320, 240, seed=3)),
        session_key=client.session.session_key,
    )
    run_detection(str(job.pk))

    page = client.get(urls(job)["page"]).content.decode()
    assert "threshold 0.5" in page and "none (a free try)" in page and "Make public" in page
    listing = client.get("/runs").content.decode()
    assert f'data-run="{job.pk}"' in listing and "free" in listing

    from django.test import Client

    stranger = Client()
    assert stranger.get(urls(job)["page"]).status_code == 404
    assert f'data-run="{job.pk}"' not in stranger.get("/runs").content.decode()


def test_my_runs_lists_the_users_runs_newest_first_a_page_at_a_time(
    client, paid, card, owner, other_user
):
    theirs = Job.objects.get(pk=paid.pk)
    base = {
        f.name: getattr(theirs, f.name)
        for f in Job._meta.concrete_fields
        if f.name not in ("id", "created_at", "is_public")
    }
    extra = [Job.objects.create(**base, is_public=n == 0) for n in range(runs.RUNS_PER_PAGE)]
    Job.objects.create(**{**base, "owner": other_user, "cost_ref": ""})  # someone else's
    client.force_login(owner)

    first = client.get("/runs").content.decode()
    order = [extra[-1].pk, *[j.pk for j in reversed(extra[:-1])]]
    positions = [first.index(f'data-run="{pk}"') for pk in order]
    assert positions == sorted(positions)
    assert f'data-run="{paid.pk}"' not in first  # the oldest is on page 2
    # Keyset pages (session 48): "Older" starts after the page's last run.
    older = re.search(r'<a href="([^"]+)" rel="next">Older</a>', first)
    assert older and 'rel="prev"' not in first
    second = client.get(older.group(1).replace("&amp;", "&")).content.decode()
    assert f'data-run="{paid.pk}"' in second
    assert second.count("data-run=") == 1
    # Each row: model, status, detections above the run's threshold, cost, public flag.
    row = second.split(f'data-run="{paid.pk}"')[1].split("</tr>")[0]
    assert paid.card.display_name in row and "Succeeded" in row and "$0.0002" in row
    assert f'<td class="num">{len(shown(paid, FLOOR))}</td>' in row and "Private" in row
    assert first.count(">Public</span>") == 1
    assert 'href="/runs" aria-current="page">My runs</a>' in first


def test_an_unfinished_run_exports_json_only(client, storage, card, owner):
    job = services.job_create(
        card=card, image_bytes=encode(blocks_image(64, 64, seed=4)), owner=owner
    )
    client.force_login(owner)
    assert client.get(urls(job)["json"]).json()["status"] == "queued"
    for fmt in ("coco", "csv", "png"):
        response = client.get(urls(job)[fmt])
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "job_not_succeeded"
    page = client.get(urls(job)["page"]).content.decode()
    assert 'http-equiv="refresh"' in page and 'id="exports"' not in page


@pytest.mark.parametrize(
    ("labels", "label_map", "expected"),
    [
        # The model's own ids; a repeated name maps to its lowest id.
        (["cat", "N/A"], {0: "N/A", 1: "cat", 2: "N/A"}, {"cat": 1, "N/A": 0}),
        # No label map here: 1..n in the labels' order.
        (["dog", "cat", "dog"], None, {"cat": 1, "dog": 2}),
        # A class the config did not name keeps its number, else the next free id.
        (["LABEL_5", "zebra"], {1: "cat"}, {"LABEL_5": 5, "zebra": 6}),
        (["LABEL_1"], {1: "cat"}, {"LABEL_1": 2}),
    ],
)
def test_coco_category_ids(labels, label_map, expected):
    categories, ids = exports.coco_categories(labels, label_map)
    assert {label: ids[label] for label in expected} == expected
    assert len({c["id"] for c in categories}) == len(categories)


def test_the_palette_gives_each_label_one_colour():
    assert label_hash("cat") == (((7 * 31 + 99) * 31 + 97) * 31 + 116) % 65521
    assert label_colour("cat") == PALETTE[label_hash("cat") % len(PALETTE)]
    assert len(set(PALETTE)) == len(PALETTE)


@pytest.mark.parametrize(
    ("timings", "shown"),
    [
        ({"forward": 0.2, "decode": 0.004}, ["decode 4 ms", "forward 200 ms"]),
        # A cold start reads like every other number on the site: thousands separated.
        ({"queue": 3.05, "load": 48.2104, "batch": 2}, ["queue 3,050 ms", "load 48,210 ms",
                                                        "batch of 2"]),
    ],
)  # fmt: skip
def test_the_permalinks_timings_in_stage_order_and_the_site_number_format(timings, shown):
    assert runs._timings(timings) == shown
