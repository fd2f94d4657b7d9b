"""Images and detection comparisons shared by the runtime tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def blocks_image(width: int, height: int, seed: int) -> Image.Image:
    """An asymmetric RGB image of random 16 px colour blocks (no two orientations alike)."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    big = Image.fromarray(cells).resize(
        ((width // 16 + 1) * 16, (height // 16 + 1) * 16), Image.Resampling.NEAREST
    )
    return big.crop((0, 0, width, height))


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def clipped(detections: list[dict], width: int, height: int) -> list[dict]:
    """The pipeline's detections with boxes clipped to the image, as the runtime reports them."""
    out = []
    for d in detections:
        box = d["box"]
        out.append(
            {
                "label": d["label"],
                "score": d["score"],
                "box": {
                    "xmin": min(max(box["xmin"], 0), width),
                    "ymin": min(max(box["ymin"], 0), height),
                    "xmax": min(max(box["xmax"], 0), width),
                    "ymax": min(max(box["ymax"], 0), height),
                },
            }
        )
    return out


def assert_same_detections(
    got: list[dict],
    expected: list[dict],
    *,
    threshold: float,
    score_tol: float = 1e-4,
    box_tol: int = 1,
    min_count: int = 5,
    max_count: int = 50,
) -> int:
    """Equal as multisets: each detection has a partner with the same label, a score within
    ``score_tol`` and box corners within ``box_tol`` px. Detections within ``score_tol`` of
    the threshold may fall either side of it and are left out; near-equal scores may come in
    either order. Returns how many were compared."""
    near = lambda d: abs(d["score"] - threshold) <= score_tol  # noqa: E731
    got = [d for d in got if not near(d)]
    expected = [d for d in expected if not near(d)]
    assert min_count <= len(expected) <= max_count, (
        f"threshold {threshold} leaves {len(expected)} detections: pick another"
    )
    assert len(got) == len(expected), (len(got), len(expected))
    unmatched = list(expected)
    for d in got:
        for candidate in unmatched:
            if (
                candidate["label"] == d["label"]
                and abs(candidate["score"] - d["score"]) <= score_tol
                and all(abs(candidate["box"][k] - d["box"][k]) <= box_tol for k in d["box"])
            ):
                unmatched.remove(candidate)
                break
        else:
            raise AssertionError(f"no match for {d} among {unmatched}")
    return len(got)
