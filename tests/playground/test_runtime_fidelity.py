"""The runtime gives the detections `transformers.pipeline("object-detection")` gives."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from transformers import pipeline

from playground.runtime import CheckpointSpec, decode_image, get_detector, load_detector
from tests.playground.runtime_helpers import (
    assert_same_detections,
    blocks_image,
    clipped,
    encode,
)

pytestmark = pytest.mark.same_on_any_database

MAX_PIXELS = 10_000_000
# Random weights put each family's scores in its own band (see checkpoints.SPREAD); these
# thresholds leave roughly 5-40 detections on the test images: the published architectures
# (torch) and the test-sized ones the exports are made from (conftest.TEST_SIZED_...).
THRESHOLDS = {"detr": 0.7, "conditional_detr": 0.948, "rt_detr": 0.38, "yolos_tiny": 0.15}
TEST_SIZED_THRESHOLDS = {
    "detr": 0.18,
    "conditional_detr": 0.812,
    "rt_detr": 0.31,
    "yolos_tiny": 0.12,
}
# Two sizes; the first and last share a size, so a batch of all three runs them together.
IMAGES = [(160, 120, 1), (96, 128, 2), (160, 120, 3)]


# Every backend gives the pipeline's detections: only the forward differs between them.
BACKENDS = ("torch", "openvino", "onnxruntime")


@pytest.fixture(scope="module", params=sorted(THRESHOLDS))
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def threshold(family, backend) -> float:
    return (THRESHOLDS if backend == "torch" else TEST_SIZED_THRESHOLDS)[family]


@pytest.fixture(scope="module")
def models(family, backend, runtime_checkpoint, request):
    if backend == "torch":
        path = str(runtime_checkpoint(family))
        detector = get_detector(CheckpointSpec(local_dir=path), device="cpu")
    else:
        # An accepted export next to a copy of the same checkpoint (skips without the package).
        path = str(request.getfixturevalue("runtime_export")(family, backend))
        detector = load_detector(CheckpointSpec(local_dir=path), device="cpu", backend=backend)
    assert detector.backend == backend
    pipe = pipeline("object-detection", model=path, device="cpu")
    return detector, pipe


@pytest.fixture(scope="module")
def uploads() -> list[bytes]:
    return [encode(blocks_image(w, h, seed)) for w, h, seed in IMAGES]


@pytest.fixture(scope="module")
def expected(models, uploads, threshold) -> list[list[dict]]:
    """The pipeline's detections, boxes clipped to the image as the runtime clips them."""
    _, pipe = models
    out = []
    for data in uploads:
        image = Image.open(io.BytesIO(data))
        out.append(clipped(pipe(image, threshold=threshold), *image.size))
    return out


def test_single_images_match_the_pipeline(models, uploads, expected, threshold):
    detector, _ = models
    for data, want in zip(uploads[:2], expected[:2], strict=True):
        decoded = decode_image(data, max_pixels=MAX_PIXELS)
        [result] = detector.detect([decoded], threshold=threshold)
        assert_same_detections(result.detections, want, threshold=threshold)


def test_a_batch_of_mixed_sizes_matches_the_pipeline_image_by_image(
    models, uploads, expected, threshold
):
    detector, _ = models
    decoded = [decode_image(data, max_pixels=MAX_PIXELS) for data in uploads]
    results = detector.detect(decoded, threshold=threshold, batch_size=3)
    assert len(results) == len(uploads)
    for result, want in zip(results, expected, strict=True):
        assert_same_detections(result.detections, want, threshold=threshold)


def test_detections_have_the_pipeline_shape_sorted_and_inside_the_image(models, uploads, family):
    detector, _ = models
    decoded = decode_image(uploads[1], max_pixels=MAX_PIXELS)
    [result] = detector.detect([decoded], threshold=0.0)
    width, height = decoded.oriented_size
    scores = [d["score"] for d in result.detections]
    assert scores == sorted(scores, reverse=True)
    assert len(result.detections) >= 100
    for d in result.detections:
        assert set(d) == {"label", "score", "box"}
        assert type(d["score"]) is float and isinstance(d["label"], str)
        box = d["box"]
        assert list(box) == ["xmin", "ymin", "xmax", "ymax"]
        assert all(type(v) is int for v in box.values())
        assert 0 <= box["xmin"] <= width and 0 <= box["xmax"] <= width
        assert 0 <= box["ymin"] <= height and 0 <= box["ymax"] <= height
    assert set(result.timings) == {"preprocess", "forward", "postprocess"}
    assert all(seconds > 0 for seconds in result.timings.values())
