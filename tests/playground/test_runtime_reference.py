"""`manage.py verify`: the check to run wherever the real weights are, tried on a reference
file written (with plain transformers) for a random-weight checkpoint."""

from __future__ import annotations

import copy
import io
import json

import pytest
import torch
from django.core.management import CommandError, call_command
from transformers import AutoImageProcessor, AutoModelForObjectDetection

from playground.runtime import CheckpointSpec, decode_image, load_detector
from playground.runtime.reference import compare_with_reference
from tests.playground.runtime_helpers import blocks_image, encode

MODEL_ID = "vitrine/test-detector"


def published_style_entry(checkpoint, image, *, threshold: float, layout: str) -> dict:
    """What the transformers integration tests record, computed without the runtime."""
    model = AutoModelForObjectDetection.from_pretrained(checkpoint).eval()
    processor = AutoImageProcessor.from_pretrained(checkpoint, backend="pil")
    with torch.no_grad():
        outputs = model(**processor(images=image, return_tensors="pt"))
    [raw] = processor.post_process_object_detection(
        outputs, threshold=threshold, target_sizes=[image.size[::-1]]
    )
    entry = {
        "logits_0_3x3": outputs.logits[0, :3, :3].tolist(),
        "pred_boxes_0_3x3": outputs.pred_boxes[0, :3, :3].tolist(),
        "threshold": threshold,
    }
    if layout == "all":  # DETR, Conditional DETR, YOLOS: every detection, query order
        entry |= {
            "tolerance": 2e-4,
            "scores": [round(s, 4) for s in raw["scores"].tolist()],
            "labels": raw["labels"].tolist(),
            "first_box": raw["boxes"][0].tolist(),
        }
    else:  # RT-DETR: the four best
        order = raw["scores"].argsort(descending=True)[:4]
        entry |= {
            "top4_scores": raw["scores"][order].tolist(),
            "top4_labels": raw["labels"][order].tolist(),
            "top4_boxes": raw["boxes"][order].tolist(),
        }
    return entry


@pytest.fixture(scope="module")
def reference_png() -> bytes:
    return encode(blocks_image(160, 120, seed=11))


@pytest.fixture(scope="module", params=[("detr", 0.7, "all"), ("rt_detr", 0.0, "top4")])
def case(request, runtime_checkpoint, reference_png, tmp_path_factory):
    family, threshold, layout = request.param
    checkpoint = runtime_checkpoint(family)
    decoded = decode_image(reference_png, max_pixels=1_000_000)
    entry = published_style_entry(checkpoint, decoded.image, threshold=threshold, layout=layout)
    folder = tmp_path_factory.mktemp(family)
    (folder / "image.png").write_bytes(reference_png)
    return checkpoint, folder, entry, decoded


def write_reference(folder, entry, sha256) -> str:
    path = folder / "expected_outputs.json"
    path.write_text(json.dumps({"image_sha256": sha256, "models": {MODEL_ID: entry}}))
    return str(path)


def verify(checkpoint, folder, expected_path) -> str:
    out = io.StringIO()
    call_command(
        "verify",
        "--checkpoint",
        str(checkpoint),
        "--expected",
        expected_path,
        "--model-id",
        MODEL_ID,
        "--image",
        str(folder / "image.png"),
        stdout=out,
        stderr=io.StringIO(),
    )
    return out.getvalue()


def test_the_runtime_matches_a_reference_written_by_transformers(case):
    checkpoint, folder, entry, decoded = case
    detector = load_detector(CheckpointSpec(local_dir=str(checkpoint)), warm_up=False)
    checks = compare_with_reference(detector, decoded, entry, image_sha256=decoded.sha256)
    assert [c.name for c in checks if not c.ok] == []
    assert len(checks) >= 5
    out = verify(checkpoint, folder, write_reference(folder, entry, decoded.sha256))
    assert f"{MODEL_ID}: matches the reference" in out


def _perturbed(entry: dict, what: str) -> dict:
    changed = copy.deepcopy(entry)
    if what == "logits":
        changed["logits_0_3x3"][1][2] += 1e-2
    elif what == "score":
        key = "scores" if "scores" in changed else "top4_scores"
        changed[key][-1] += 1e-2
    elif what == "label":
        key = "labels" if "labels" in changed else "top4_labels"
        changed[key][0] = (changed[key][0] + 1) % 80
    elif what == "box":
        key = "first_box" if "first_box" in changed else "top4_boxes"
        target = changed[key] if key == "first_box" else changed[key][0]
        target[:] = [20.0, 20.0, 60.0, 60.0]  # inside the image: clipping cannot hide it
    return changed


@pytest.mark.parametrize("what", ["logits", "score", "label", "box", "image"])
def test_a_mismatch_fails_the_command(case, what):
    checkpoint, folder, entry, decoded = case
    sha256 = "0" * 64 if what == "image" else decoded.sha256
    path = write_reference(folder, _perturbed(entry, what), sha256)
    with pytest.raises(CommandError, match="mismatch"):
        verify(checkpoint, folder, path)
