"""COCO evaluation: the conversion to COCO results, pycocotools' reference numbers, and
``manage.py evaluate`` end to end on a synthetic dataset with a random-weight checkpoint."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from catalog.models import EvaluationResult
from playground.runtime import decode_image, load_detector
from playground.runtime.checkpoints import COCO_91, COCO_UNUSED_IDS
from playground.runtime.coco import CocoDataset, coco_metrics, to_coco_results
from playground.runtime.weights import CheckpointSpec
from tests import factories
from tests.playground.runtime_helpers import blocks_image, encode

REPO = Path(__file__).resolve().parents[2]
# The shared test data beside the checkout (or beside the main checkout, from a worktree),
# or where VITRINE_TESTDATA says; never copied into the repository.
TESTDATA = next(
    (
        path
        for path in (
            Path(os.environ.get("VITRINE_TESTDATA", "/nonexistent")),
            REPO.parent / "shared/testdata",
            REPO.parent.parent / "shared/testdata",
        )
        if path.is_dir()
    ),
    REPO.parent / "shared/testdata",
)
FAKE100 = TESTDATA / "cocoeval-fake100"

CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 17, "name": "cat", "supercategory": "animal"},
    {"id": 63, "name": "couch", "supercategory": "furniture"},
]
NAMES = {c["name"]: c["id"] for c in CATEGORIES}


def ground_truth(boxes_by_image: dict[int, list[tuple[int, list[float]]]]) -> dict:
    """A COCO instances dict: images 100x80, boxes as (category id, [x, y, w, h])."""
    images, annotations = [], []
    for image_id, boxes in boxes_by_image.items():
        name = f"{image_id:012d}.png"
        images.append({"id": image_id, "file_name": name, "width": 100, "height": 80})
        for category, (x, y, w, h) in boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def as_detections(gt: dict, image_id: int, *, integer: bool = False) -> list[dict]:
    """The ground truth of one image as runtime detections (xyxy), optionally truncated."""
    names = {c["id"]: c["name"] for c in gt["categories"]}
    out = []
    for a in gt["annotations"]:
        if a["image_id"] != image_id:
            continue
        x, y, w, h = a["bbox"]
        box = {"xmin": x, "ymin": y, "xmax": x + w, "ymax": y + h}
        if integer:
            box = {k: int(v) for k, v in box.items()}
        out.append({"label": names[a["category_id"]], "score": 0.9, "box": box})
    return out


# Small objects with fractional corners, as COCO's are.
HAND_MADE = {
    1: [(17, [10.6, 12.4, 7.7, 6.8]), (63, [40.2, 30.9, 50.5, 40.3])],
    2: [(1, [3.5, 4.5, 8.6, 9.7]), (17, [60.8, 10.1, 20.4, 30.6])],
}


@pytest.mark.same_on_any_database
def test_detections_equal_to_the_ground_truth_score_ap_1_with_float_boxes():
    gt = ground_truth(HAND_MADE)
    results = []
    for image_id in HAND_MADE:
        mapped, dropped = to_coco_results(
            as_detections(gt, image_id), image_id=image_id, category_ids=NAMES
        )
        results += mapped
        assert dropped == 0
    metrics = coco_metrics(gt, results)
    assert metrics["AP"] == 1.0
    assert metrics["AP50"] == 1.0
    assert metrics["AP75"] == 1.0


@pytest.mark.same_on_any_database
def test_the_apis_integer_boxes_would_cap_the_ap_of_the_same_detections():
    """Why evaluation takes the float boxes: truncating the same perfect boxes loses AP."""
    gt = ground_truth(HAND_MADE)
    results = []
    for image_id in HAND_MADE:
        results += to_coco_results(
            as_detections(gt, image_id, integer=True), image_id=image_id, category_ids=NAMES
        )[0]
    assert coco_metrics(gt, results)["AP"] < 0.9


@pytest.mark.same_on_any_database
def test_labels_map_by_name_and_unknown_labels_are_dropped_and_counted():
    detections = [
        {"label": "cat", "score": 0.5, "box": {"xmin": 1.5, "ymin": 2.0, "xmax": 11.5, "ymax": 7}},
        {"label": "N/A", "score": 0.9, "box": {"xmin": 0, "ymin": 0, "xmax": 1, "ymax": 1}},
        {"label": "couch", "score": 0.7, "box": {"xmin": 0, "ymin": 0, "xmax": 4, "ymax": 3}},
    ]
    results, dropped = to_coco_results(
        detections, image_id=7, category_ids=NAMES, max_detections=100
    )
    assert dropped == 1
    assert results == [
        {"image_id": 7, "category_id": 63, "bbox": [0.0, 0.0, 4.0, 3.0], "score": 0.7},
        {"image_id": 7, "category_id": 17, "bbox": [1.5, 2.0, 10.0, 5.0], "score": 0.5},
    ]
    best, _ = to_coco_results(detections, image_id=7, category_ids=NAMES, max_detections=1)
    assert best == results[:1]


@pytest.mark.same_on_any_database
def test_no_detections_score_zero():
    assert coco_metrics(ground_truth(HAND_MADE), [])["AP"] == 0.0


@pytest.mark.skipif(not FAKE100.is_dir(), reason=f"{FAKE100} is absent (the shared test data)")
@pytest.mark.same_on_any_database
def test_the_cocoapi_reference_pair_gives_its_published_ap():
    metrics = coco_metrics(
        FAKE100 / "instances_val2014_100.json",
        FAKE100 / "instances_val2014_fakebbox100_results.json",
    )
    assert metrics["AP"] == 0.504581
    assert metrics["AP50"] == 0.696973
    assert metrics["AP75"] == 0.572982


@pytest.mark.same_on_any_database
def test_float_boxes_are_the_served_integer_boxes_before_truncation(runtime_checkpoint):
    detector = load_detector(
        CheckpointSpec(local_dir=str(runtime_checkpoint("detr"))), device="cpu", warm_up=False
    )
    image = decode_image(encode(blocks_image(300, 200, seed=3)), max_pixels=10**7)
    [served] = detector.detect([image], threshold=0.0)
    [floats] = detector.detect([image], threshold=0.0, float_boxes=True)
    assert len(served.detections) == len(floats.detections) > 0
    assert any(v != int(v) for d in floats.detections for v in d["box_float"].values())
    for s, f in zip(served.detections, floats.detections, strict=True):
        assert s["label"] == f["label"] and s["score"] == f["score"]
        assert s["box"] == f["box"] == {k: int(v) for k, v in f["box_float"].items()}
        assert all(isinstance(v, int) for v in s["box"].values())


# --- the command --------------------------------------------------------------------------
def synthetic_dataset(root: Path, count: int = 5) -> tuple[Path, Path]:
    """``count`` block images and an instances JSON with two boxes on each."""
    images_dir = root / "val"
    images_dir.mkdir()
    boxes = {}
    for i in range(1, count + 1):
        width, height = 160 + 16 * i, 120
        (images_dir / f"{i:012d}.png").write_bytes(encode(blocks_image(width, height, seed=i)))
        boxes[i] = [(17, [5.5, 6.0, 40.0, 30.5]), (1, [50.0, 20.0, 60.0, 80.0])]
    gt = ground_truth(boxes)
    # All 80 COCO categories under their original ids, as instances_val2017.json has them.
    gt["categories"] = [
        {"id": i, "name": name, "supercategory": ""}
        for i, name in enumerate(COCO_91)
        if i and i not in COCO_UNUSED_IDS
    ]
    for image in gt["images"]:
        image["width"] = 160 + 16 * image["id"]
        image["height"] = 120
    annotations = root / "instances_val2017.json"
    annotations.write_text(json.dumps(gt))
    return images_dir, annotations


@pytest.fixture
def untrained_card(db, runtime_checkpoint):
    return factories.card(checkpoint_local_dir=str(runtime_checkpoint("detr")))


def run_evaluate(*args, **options) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("evaluate", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def test_evaluate_runs_end_to_end_and_writes_the_report(untrained_card, tmp_path):
    images_dir, annotations = synthetic_dataset(tmp_path)
    report_path = tmp_path / "report.json"

    out, err = run_evaluate(
        untrained_card.model_id,
        images=str(images_dir),
        annotations=str(annotations),
        json_out=str(report_path),
        device="cpu",
    )

    report = json.loads(report_path.read_text())
    assert set(report["metrics"]) >= {"AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L"}
    assert all(-1 <= v <= 1 for v in report["metrics"].values())
    assert report["dataset"] == {
        "name": "COCO val2017",
        "annotations_file": str(annotations),
        "images": 5,
        "annotations": 10,
        "of_images": 5,
    }
    assert report["weights"]["untrained"] is True
    assert report["weights"]["revision"].startswith("sha256:")
    assert report["runtime"]["threshold"] == 0.0
    assert report["runtime"]["max_detections"] == 100
    assert report["runtime"]["precision"] == "fp32"
    assert report["runtime"]["evaluator"].startswith("pycocotools ")
    assert 0 < report["counts"]["detections"] <= 5 * 100
    assert report["timing"]["seconds"] > 0
    assert "AP    " in out and "5 images, 10 boxes" in out
    assert "untrained" in err
    assert "5/5" in err  # the progress bar reached the end
    stored = EvaluationResult.objects.get(card=untrained_card)
    assert stored.untrained is True
    assert stored.images == 5
    assert stored.ap == report["metrics"]["AP"]
    assert stored.resolved_revision == report["weights"]["revision"]


def test_limit_evaluates_only_the_first_images(untrained_card, tmp_path):
    images_dir, annotations = synthetic_dataset(tmp_path)
    report_path = tmp_path / "report.json"
    run_evaluate(
        untrained_card.model_id, images=str(images_dir), annotations=str(annotations),
        limit=2, json_out=str(report_path), no_save=True, no_progress=True, device="cpu",
    )  # fmt: skip
    report = json.loads(report_path.read_text())
    assert report["dataset"]["images"] == 2
    assert report["dataset"]["annotations"] == 4
    assert not EvaluationResult.objects.exists()


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("missing image", "is not in"),
        ("not coco", "is not a COCO instances file"),
        ("unknown model", "No model 'nobody/nothing'"),
    ],
)
def test_evaluate_refuses_bad_input_clearly(untrained_card, tmp_path, problem, message):
    images_dir, annotations = synthetic_dataset(tmp_path, count=2)
    model_id = untrained_card.model_id
    if problem == "missing image":
        (images_dir / "000000000002.png").unlink()
    elif problem == "not coco":
        annotations.write_text(json.dumps({"images": []}))
    else:
        model_id = "nobody/nothing"
    with pytest.raises(CommandError, match=message):
        run_evaluate(
            model_id, images=str(images_dir), annotations=str(annotations), no_progress=True
        )


@pytest.mark.same_on_any_database
def test_dataset_loads_images_in_id_order(tmp_path):
    _, annotations = synthetic_dataset(tmp_path, count=3)
    dataset = CocoDataset.load(annotations)
    assert [image["id"] for image in dataset.images] == [1, 2, 3]
    assert len(dataset.category_ids) == 80
    assert dataset.category_ids["cat"] == 17
    assert dataset.category_ids["toothbrush"] == 90
