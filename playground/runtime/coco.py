"""COCO bbox evaluation of a loaded detector: the runtime's detections scored by pycocotools.

The images go through ``Detector.detect`` exactly as a worker's jobs do (same decoding,
preprocessing, batching and post-processing), except for two settings that COCO's protocol
needs and the API does not:

- **Float boxes.** The API's integer boxes truncate each corner (up to 1 px), which caps
  the AP of perfect boxes (small objects lose most); COCO results take float ``[x, y, w, h]``.
- **A low score floor and the top 100 per image.** Every detection the post-processor gives
  above ``EVAL_THRESHOLD`` (0.0: all of DETR's 100 queries, RT-DETR's top 300), then the
  ``MAX_DETECTIONS`` (100) best per image, as the COCO detection leaderboard counts them
  (COCOeval's ``maxDets=100``). A serving floor such as 0.05 or 0.5 would cut the
  low-confidence tail that AP integrates over and under-report the model.

Labels map to the dataset's category ids by name (``categories[].name``); detections whose
label the dataset does not have (DETR's ``N/A``, ``street sign``) are dropped and counted.
Image ids come from the annotations' ``images[].file_name``. No Django here.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from playground.runtime.images import DecodedImage, decode_image

EVAL_THRESHOLD = 0.0
MAX_DETECTIONS = 100
# COCO val2017's largest image is 640 px a side; this only bounds a stray huge file.
MAX_PIXELS = 100_000_000
# Decoded images held at once, in batches (the detector batches within each window); the
# progress bar moves a window at a time.
WINDOW_BATCHES = 4
# COCOeval.stats, in its order.
STAT_NAMES = (
    "AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L",
    "AR1", "AR10", "AR100", "AR_S", "AR_M", "AR_L",
)  # fmt: skip
AP_NAMES = STAT_NAMES[:6]

NO_IMAGES_MESSAGE = "{path} lists no images."
MISSING_FILE_MESSAGE = "{file} (image {image_id} of the annotations) is not in {folder}."
NOT_COCO_MESSAGE = "{path} is not a COCO instances file: {problem}."


class CocoError(ValueError):
    """The dataset cannot be evaluated (a bad annotations file, a missing image)."""


@dataclass
class CocoDataset:
    """An instances JSON: images by id and file name, category ids by name."""

    path: Path
    data: dict[str, Any]
    images: list[dict[str, Any]]
    category_ids: dict[str, int]

    @classmethod
    def load(cls, path: str | Path) -> CocoDataset:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CocoError(NOT_COCO_MESSAGE.format(path=path, problem=exc)) from exc
        if not isinstance(data, dict):
            raise CocoError(NOT_COCO_MESSAGE.format(path=path, problem="not a JSON object"))
        missing = [key for key in ("images", "annotations", "categories") if key not in data]
        if missing:
            problem = f"no {', '.join(missing)}"
            raise CocoError(NOT_COCO_MESSAGE.format(path=path, problem=problem))
        images = sorted(data["images"], key=lambda image: image["id"])
        if not images:
            raise CocoError(NO_IMAGES_MESSAGE.format(path=path))
        categories = {c["name"]: int(c["id"]) for c in data["categories"]}
        return cls(path=path, data=data, images=images, category_ids=categories)

    def image_ids_by_file(self) -> dict[str, int]:
        return {image["file_name"]: int(image["id"]) for image in self.images}

    def annotation_count(self, image_ids: Iterable[int]) -> int:
        wanted = set(image_ids)
        return sum(1 for a in self.data["annotations"] if a["image_id"] in wanted)


def to_coco_results(
    detections: Sequence[dict[str, Any]],
    *,
    image_id: int,
    category_ids: dict[str, int],
    max_detections: int = MAX_DETECTIONS,
) -> tuple[list[dict[str, Any]], int]:
    """COCO results for one image's detections (float xyxy boxes), and how many were
    dropped for a label the dataset lacks. The best ``max_detections`` are kept."""
    results, unmapped = [], 0
    for detection in sorted(detections, key=lambda d: d["score"], reverse=True):
        category = category_ids.get(detection["label"])
        if category is None:
            unmapped += 1
            continue
        box = detection.get("box_float", detection["box"])  # floats when the runtime kept them
        x, y = float(box["xmin"]), float(box["ymin"])
        results.append(
            {
                "image_id": image_id,
                "category_id": category,
                "bbox": [x, y, float(box["xmax"]) - x, float(box["ymax"]) - y],
                "score": float(detection["score"]),
            }
        )
    return results[:max_detections], unmapped


def coco_metrics(
    ground_truth: dict[str, Any] | str | Path,
    results: list[dict[str, Any]] | str | Path,
    *,
    image_ids: Sequence[int] | None = None,
) -> dict[str, float]:
    """COCOeval bbox statistics (``STAT_NAMES``) of ``results`` against ``ground_truth``,
    over ``image_ids`` only when given. No results at all scores 0 everywhere."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        if isinstance(ground_truth, dict):
            gt = COCO()
            gt.dataset = ground_truth
            gt.createIndex()
        else:
            gt = COCO(str(ground_truth))
        if isinstance(results, (str, Path)):
            results = json.loads(Path(results).read_text())
        if not results:
            return dict.fromkeys(STAT_NAMES, 0.0)
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, "bbox")
        if image_ids is not None:
            evaluator.params.imgIds = list(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # -1 means "no ground truth of that size": reported as is, not as 0.
    return {name: round(float(v), 6) for name, v in zip(STAT_NAMES, evaluator.stats, strict=True)}


@dataclass
class EvaluationRun:
    """What ``evaluate`` measured, ready for a JSON report."""

    metrics: dict[str, float]
    images: int
    annotations: int
    detections: int
    unmapped: int
    orientation_ignored: int
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)


def _decode(path: Path, annotated: tuple[int, int]) -> tuple[DecodedImage, bool]:
    """The image as a worker decodes it; COCO's boxes are in the stored pixels' frame, so a
    file whose EXIF orientation turns it away from the annotated size is taken as stored."""
    data = path.read_bytes()
    decoded = decode_image(data, max_pixels=MAX_PIXELS)
    if decoded.oriented_size != annotated and decoded.original_size == annotated:
        with Image.open(io.BytesIO(data)) as raw:
            image = raw.convert("RGB")
        return DecodedImage(
            image, decoded.original_size, decoded.original_size, decoded.format, decoded.sha256
        ), True
    return decoded, False


def evaluate(
    detector: Any,
    dataset: CocoDataset,
    images_dir: str | Path,
    *,
    limit: int | None = None,
    batch_size: int | None = None,
    threshold: float = EVAL_THRESHOLD,
    max_detections: int = MAX_DETECTIONS,
    progress: Callable[[int], None] | None = None,
) -> EvaluationRun:
    """Run ``detector`` on the dataset's first ``limit`` images (by id; all by default) and
    score them. ``progress(n)`` is called as each window of ``n`` images is done."""
    folder = Path(images_dir)
    chosen = dataset.images[:limit] if limit else dataset.images
    for image in chosen:
        if not (folder / image["file_name"]).is_file():
            raise CocoError(
                MISSING_FILE_MESSAGE.format(
                    file=image["file_name"], image_id=image["id"], folder=folder
                )
            )
    results: list[dict[str, Any]] = []
    unmapped = turned = 0
    stages: dict[str, float] = {"decode": 0.0}
    began = time.perf_counter()
    size = (batch_size or detector.default_batch_size) * WINDOW_BATCHES
    for start in range(0, len(chosen), size):
        window = chosen[start : start + size]
        decoded = []
        for image in window:
            tick = time.perf_counter()
            item, was_turned = _decode(
                folder / image["file_name"], (image["width"], image["height"])
            )
            stages["decode"] += time.perf_counter() - tick
            decoded.append(item)
            turned += was_turned
        outputs = detector.detect(
            decoded, threshold=threshold, batch_size=batch_size, float_boxes=True
        )
        for image, output in zip(window, outputs, strict=True):
            for stage, seconds in output.timings.items():
                stages[stage] = stages.get(stage, 0.0) + seconds
            mapped, dropped = to_coco_results(
                output.detections,
                image_id=int(image["id"]),
                category_ids=dataset.category_ids,
                max_detections=max_detections,
            )
            results.extend(mapped)
            unmapped += dropped
        if progress is not None:
            progress(len(window))
    seconds = time.perf_counter() - began
    image_ids = [int(image["id"]) for image in chosen]
    metrics = coco_metrics(dataset.data, results, image_ids=image_ids)
    return EvaluationRun(
        metrics=metrics,
        images=len(chosen),
        annotations=dataset.annotation_count(image_ids),
        detections=len(results),
        unmapped=unmapped,
        orientation_ignored=turned,
        seconds=seconds,
        stage_seconds={k: round(v, 3) for k, v in stages.items()},
        results=results,
    )
