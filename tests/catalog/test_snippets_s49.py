"""What the model pages' snippets say about their own limits and needs (session 49's
outside probe): the Cloudflare SDK's image size, the local pipeline's packages."""

from __future__ import annotations

import html
import io
import json
import re

import pytest
from django.core.management import call_command

from catalog import snippets
from playground import body_limits
from tests.catalog.test_snippets import page_snippets

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded():
    call_command("seed_catalog", stdout=io.StringIO())


@pytest.mark.parametrize("max_image", [20 * 1024 * 1024, 1024 * 1024, 3_000_001])
def test_the_cloudflare_sdk_snippet_names_a_size_its_json_body_takes(
    client, seeded, settings, max_image
):
    """``image=list(f.read())`` sends Workers AI's JSON array of byte values (up to four
    bytes of JSON each: 255,), about 3.6 times the image: the comment's size must fit the
    JSON body limit (playground/body_limits.py) whatever the bytes, and follow the setting."""
    settings.VITRINE_MAX_UPLOAD_BYTES = max_image
    code = page_snippets(client, "/models/facebook/detr-resnet-50")["cloudflare_sdk"][1]
    said = re.search(r"takes images up to ([\d.]+) MB \(413 over that\)", code)
    assert said, code
    assert f"up to {max_image / 2**20:g} MiB, goes as the raw request body" in code
    worst = int(float(said[1]) * 1e6)
    body = json.dumps({"image": [255] * worst}, separators=(",", ":"))  # as httpx sends it
    limit = body_limits.body_limit("application/json")
    assert len(body) <= limit
    # Not a needlessly small figure: within 0.1 MB of what fits.
    assert (limit - len(body)) / 4 < 100_000


@pytest.mark.parametrize(
    ("model", "install"),
    [
        # The Hub's main revision builds a timm ResNet (config: use_timm_backbone).
        ("microsoft/conditional-detr-resnet-50", "transformers torch pillow timm"),
        # no_timm: transformers' own ResNet; YOLOS is a ViT, RT-DETR its own ResNet-vd.
        ("facebook/detr-resnet-50", "transformers torch pillow"),
        ("hustvl/yolos-tiny", "transformers torch pillow"),
        ("PekingU/rtdetr_r50vd", "transformers torch pillow"),
    ],
)
def test_the_local_snippet_installs_what_its_checkpoint_needs(client, seeded, model, install):
    body = client.get(f"/models/{model}").content.decode()
    code = page_snippets(client, f"/models/{model}")["transformers"][1]
    assert code.startswith(f"# pip install {install}\n")
    assert f"(pip install {install})." in html.unescape(body)


def test_timm_follows_the_pinned_revision_not_the_model():
    assert snippets.local_install("facebook/detr-resnet-50", "main").endswith(" timm")
    assert not snippets.local_install("facebook/detr-resnet-50", "no_timm").endswith(" timm")
