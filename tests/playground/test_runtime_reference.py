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


@pytest.mark.same_on_any_database
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
@pytest.mark.same_on_any_database
def test_a_mismatch_fails_the_command(case, what):
    checkpoint, folder, entry, decoded = case
    sha256 = "0" * 64 if what == "image" else decoded.sha256
    path = write_reference(folder, _perturbed(entry, what), sha256)
    with pytest.raises(CommandError, match="mismatch"):
        verify(checkpoint, folder, path)


# --- tolerances and models with no published outputs ---------------------------------------
@pytest.mark.parametrize(
    ("got", "want", "ok"),
    [
        (-19.1194 + 1.5e-3, -19.1194, True),  # a large logit: rtol 1e-4 * 19 + atol 1e-4
        (-19.1194 + 2.5e-3, -19.1194, False),
        (0.4433 + 1.2e-4, 0.4433, True),  # a box coordinate: atol dominates
        (0.4433 + 3e-4, 0.4433, False),
    ],
)
@pytest.mark.same_on_any_database
def test_tolerances_are_transformers_relative_plus_absolute(got, want, ok):
    from playground.runtime.reference import Tolerance

    assert Tolerance(rtol=1e-4, atol=1e-4).close(got, want) is ok


def verify_catalogue(folder, expected_path, *extra) -> str:
    out = io.StringIO()
    call_command(
        "verify", "--catalogue", "--expected", expected_path, "--image",
        str(folder / "image.png"), *extra, stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    return out.getvalue()


def test_a_model_with_no_published_outputs_is_checked_against_the_pipeline(
    db, runtime_checkpoint, tmp_path
):
    """YOLOS tiny, as the catalogue sells it: the reference file has no entry for it."""
    from tests import factories

    (tmp_path / "image.png").write_bytes(encode(blocks_image(160, 120, seed=11)))
    expected = tmp_path / "expected_outputs.json"
    expected.write_text(json.dumps({"models": {"hustvl/yolos-small": {}}}))
    factories.card(
        checkpoint_repo="hustvl/yolos-tiny",
        checkpoint_revision="main",
        checkpoint_local_dir=str(runtime_checkpoint("yolos_tiny")),
    )

    out = verify_catalogue(tmp_path, str(expected), "--threshold", "0.15", "--device", "cpu")

    assert "hustvl/yolos-tiny: no published reference output" in out
    assert "checks the serving path, not that the weights are the published ones" in out
    assert "ok   detections: all" in out
    assert "matches transformers' pipeline (cpu)" in out


def test_the_catalogue_check_fails_on_a_model_whose_weights_are_missing(db, tmp_path):
    from tests import factories

    (tmp_path / "image.png").write_bytes(encode(blocks_image(160, 120, seed=11)))
    expected = tmp_path / "expected_outputs.json"
    expected.write_text(json.dumps({"models": {}}))
    card = factories.card(checkpoint_local_dir=str(tmp_path / "nowhere"))
    with pytest.raises(CommandError, match=f"mismatch: {card.model_id}"):
        verify_catalogue(tmp_path, str(expected))
