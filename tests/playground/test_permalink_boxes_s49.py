"""A run's permalink shows the run's own picture with its boxes and labels drawn over it by
the page (no script): the labels in the page's type at any scale, where a PNG drawn by the
server and shrunk to the screen took them down to 5 or 6 px. Its space is kept before it
loads (width and height attributes), and the threshold form still filters the boxes."""

from __future__ import annotations

import io
import re

import pytest
from django.test import Client
from django.urls import reverse
from PIL import Image

from tests import factories
from tests.playground.test_playground_page import card  # noqa: F401

pytestmark = pytest.mark.django_db

RESULT = [
    {"label": "dog", "score": 0.9, "box": {"xmin": 100, "ymin": 50, "xmax": 300, "ymax": 250}},
    {"label": "cat", "score": 0.4, "box": {"xmin": 10, "ymin": 20, "xmax": 60, "ymax": 80}},
    # at the picture's bottom right corner, beyond its edge by a rounding
    {"label": "kite", "score": 0.7, "box": {"xmin": 760, "ymin": 380, "xmax": 801, "ymax": 400}},
]


def picture(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 140, 220)).save(out, "PNG")
    return out.getvalue()


def page(job, **query) -> str:
    return Client().get(reverse("playground:job", args=[job.pk]), query).content.decode()


def boxes(html: str) -> list[tuple[str, ...]]:
    return re.findall(
        r'<rect class="swatch-\d+" x="([\d.]+)%" y="([\d.]+)%" width="([\d.]+)%" '
        r'height="([\d.]+)%"/>',
        html,
    )


def labels(html: str) -> list[str]:
    return re.findall(r'<span class="run-tag swatch-\d+">([^<]+)</span>', html)


def test_the_boxes_are_drawn_in_percentages_over_the_runs_own_picture(card):  # noqa: F811
    job = factories.finished_run(
        card=card, image_bytes=picture(800, 400), result=RESULT, is_public=True,
        parameters={"threshold": 0.5},
    )  # fmt: skip
    html = page(job)
    image = re.search(r'<img id="run-image"[^>]*>', html).group()
    # The picture as uploaded (a stranger's copy without its metadata: job_image), not the
    # PNG export, which stays a download.
    assert f'src="{reverse("playground:job_image", args=[job.pk])}"' in image
    assert 'width="800" height="400"' in image
    assert 'href="{}"'.format(reverse("playground:job_export", args=[job.pk, "png"])) in html
    # Larger box first (a small one's label on top), each clamped inside the picture.
    assert boxes(html) == [
        ("12.500", "12.500", "25.000", "50.000"),
        ("95.000", "95.000", "5.000", "5.000"),
    ]
    assert labels(html) == ["dog 0.90", "kite 0.70"]
    # Each label's place: the gap above it (its box's top) and the gap to its left.
    assert re.findall(
        r'<svg width="1" height="([\d.]+)%"></svg><div><svg width="([\d.]+)%"', html
    ) == [
        ("12.500", "12.500"),
        ("95.000", "95.000"),
    ]
    # Drawn with attributes, not style attributes (the page's Content-Security-Policy).
    assert not re.search(r"<[^>]+\sstyle\s*=", html)


def test_the_threshold_form_filters_the_drawn_boxes(card):  # noqa: F811
    job = factories.finished_run(
        card=card, image_bytes=picture(800, 400), result=RESULT, is_public=True,
        parameters={"threshold": 0.5},
    )  # fmt: skip
    assert labels(page(job, threshold="0.3")) == ["dog 0.90", "cat 0.40", "kite 0.70"]
    assert labels(page(job, threshold="0.8")) == ["dog 0.90"]
    nothing = page(job, threshold="0.95")
    assert boxes(nothing) == [] and 'class="run-boxes"' not in nothing
    assert 'id="run-image"' in nothing  # the picture itself still shows


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        ((2000, 1000), (1280, 640)),  # no wider than the page's 1280
        ((300, 2000), (108, 720)),  # no taller than PAGE_IMAGE_MAX_HEIGHT
        ((16, 16), (320, 320)),  # a tiny one enlarged (square pixels)
    ],
)
def test_the_pictures_space_is_given_before_it_loads(card, size, shown):  # noqa: F811
    job = factories.finished_run(
        card=card, image_bytes=picture(*size), result=RESULT[:1], is_public=True
    )
    image = re.search(r'<img id="run-image"[^>]*>', page(job)).group()
    assert f'width="{shown[0]}" height="{shown[1]}"' in image
