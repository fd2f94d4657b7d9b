"""A quote (``dry_run=true``) for a checkpoint whose files are not on the web machine uses
the resize its repository publishes, not DETR's: session 49's probe got 1066x800 for
hustvl/yolos-tiny, whose processor resizes to a 512 px short side (at most 1333 px), with
its sides floored to 16 px."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.core.management import call_command
from PIL import Image

from billing.services.keys import api_key_create
from catalog.models import ModelCard
from playground.runtime.fit import PUBLISHED_PROCESSORS, resized_size, rule_from_config
from tests import factories

pytestmark = pytest.mark.django_db
YOLOS_TINY = "hustvl/yolos-tiny"
# A revision no machine has: the checkpoint is certainly not installed here.
ABSENT = "s49-not-installed"


def jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 90)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def auth(other_user):
    _, plaintext = api_key_create(user=other_user, name="s49")
    return {"Authorization": f"Bearer {plaintext}"}


def quote(client, auth, model_id: str, width: int = 640, height: int = 480) -> dict:
    response = client.post(
        f"/v1/inference/{model_id}?dry_run=true",
        data=jpeg(width, height),
        content_type="image/jpeg",
        headers=auth,
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_yolos_tiny_without_its_files_is_quoted_at_its_own_512_px_rule(client, auth):
    call_command("seed_catalog", stdout=io.StringIO())
    card = ModelCard.objects.by_model_id(YOLOS_TINY).get()
    card.checkpoint_revision = ABSENT
    card.save()

    resize = quote(client, auth, YOLOS_TINY)["resize"]

    # 640x480 -> short side 512: 682.67 x 512, floored to multiples of 16 -> 672x512.
    assert resize == {
        "width": 672,
        "height": 512,
        "rule": {"shortest_edge": 512, "longest_edge": 1333, "mod_size": 16},
        "from_checkpoint": False,
    }
    # The page's stated input size is that rule.
    body = client.get(f"/models/{YOLOS_TINY}").content.decode()
    size = re.search(r"<tr><th>Input size</th><td>([^<]+)</td></tr>", body)[1]
    assert size.startswith("512 px shortest edge") and "1333 px" in size


@pytest.mark.parametrize(
    ("repo", "expected"),
    [
        ("PekingU/rtdetr_r50vd", (640, 640)),
        ("microsoft/conditional-detr-resnet-50", (1066, 800)),
        ("acme/unknown-detector", (1066, 800)),  # DETR's 800/1333 stays the default
    ],
)
def test_other_checkpoints_without_their_files_use_their_published_rule(
    client, auth, repo, expected
):
    card = factories.card(checkpoint_repo=repo, checkpoint_revision=ABSENT)
    factories.route(card=card)

    resize = quote(client, auth, card.model_id)["resize"]

    assert (resize["width"], resize["height"]) == expected
    assert resize["from_checkpoint"] is False


def test_yolos_tinys_published_config_read_from_disk_keeps_the_16_px_floor(client, auth, tmp_path):
    """Its Hub config names the processor only as ``feature_extractor_type``: the floor was
    missed when the file was on the machine (682x512)."""
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"feature_extractor_type": "YolosFeatureExtractor", "size": 512,
                    "max_size": 1333, "do_resize": True})
    )  # fmt: skip
    card = factories.card(checkpoint_local_dir=str(tmp_path))
    factories.route(card=card)

    resize = quote(client, auth, card.model_id)["resize"]

    assert (resize["width"], resize["height"], resize["from_checkpoint"]) == (672, 512, True)


def test_the_published_table_is_what_the_seeded_specs_state(client):
    call_command("seed_catalog", stdout=io.StringIO())
    for card in ModelCard.objects.all():
        config = PUBLISHED_PROCESSORS[card.checkpoint_repo]
        rule = rule_from_config(config)
        stated = card.specs.get(label="Input size").value
        if "height" in rule:
            assert stated.startswith(f"{rule['width']}x{rule['height']}"), card.model_id
        else:
            assert stated.startswith(f"{rule['shortest_edge']} px shortest edge"), card.model_id
            assert f"at most {rule['longest_edge']} px" in stated, card.model_id
        assert resized_size(640, 480, rule) is not None
