"""Checking a loaded detector against published outputs (reference/expected_outputs.json).

An entry gives raw outputs (``logits_0_3x3``, ``pred_boxes_0_3x3``: the first 3 queries x
first 3 values) and post-processed ones at its ``threshold``, in one of two layouts:

- ``scores``, ``labels`` (ids), ``first_box``: every detection above the threshold, in the
  model's query order, and the float box of the first one (DETR, Conditional DETR, YOLOS);
- ``top4_scores``, ``top4_labels``, ``top4_boxes``: the four best (RT-DETR, threshold 0).

``pipeline_detections`` (HF pipeline output, when present) came from a different encoding
of the image, so it is reported but does not fail the check.

Tolerances are those of the transformers integration tests these values come from
(``torch.testing.assert_close(..., rtol=1e-4, atol=1e-4)``): a value passes when
``|got - want| <= atol + rtol * |want|``, with ``atol`` the entry's ``tolerance`` when it
has one (the file's 2e-4) and 1e-4 otherwise. A logit of -19 may so differ by 2.1e-3,
which is what float32 on another CPU or GPU kernel gives; a flat 2e-4 false-fails there.
Served boxes are integers: they must be within ``BOX_TOLERANCE_PX`` of the reference.

Where no published output exists for a checkpoint (``hustvl/yolos-tiny``: the file has
YOLOS-small), ``compare_with_pipeline`` checks the serving path against transformers'
own ``pipeline("object-detection")`` on the same weights instead: it proves the runtime
serves what transformers computes, not that the weights are the published ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from playground.runtime.images import DecodedImage

RTOL = 1e-4
ATOL = 1e-4
BOX_TOLERANCE_PX = 1


@dataclass(frozen=True)
class Tolerance:
    rtol: float = RTOL
    atol: float = ATOL

    def close(self, got: float, want: float) -> bool:
        return abs(got - want) <= self.atol + self.rtol * abs(want)

    def __str__(self) -> str:
        return f"rtol {self.rtol:.0e} + atol {self.atol:.0e}"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def compare_with_reference(
    detector: Any,
    image: DecodedImage,
    entry: dict[str, Any],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    image_sha256: str | None = None,
) -> list[Check]:
    """Run ``detector`` on ``image`` and compare with ``entry``; one Check per aspect."""
    tol = Tolerance(
        rtol=RTOL if rtol is None else rtol,
        atol=atol if atol is not None else float(entry.get("tolerance", ATOL)),
    )
    checks: list[Check] = []
    if image_sha256:
        checks.append(
            Check(
                "image",
                image.sha256 == image_sha256,
                f"sha256 {image.sha256[:12]}... (reference {image_sha256[:12]}...)",
            )
        )
    outputs = detector.forward(detector.preprocess(image.image))
    for key, name in (("logits_0_3x3", "logits"), ("pred_boxes_0_3x3", "pred_boxes")):
        if key in entry:
            got = outputs[name][0, :3, :3].float().cpu().tolist()
            checks.append(_close_matrix(key, got, entry[key], tol))

    width, height = image.oriented_size
    [result] = detector.detect([image], threshold=float(entry["threshold"]))
    detections = result.detections
    if "scores" in entry:
        checks.extend(_check_all_above_threshold(detector, detections, entry, tol, width, height))
    if "top4_scores" in entry:
        checks.extend(_check_top4(detector, detections, entry, tol, width, height))
    if "pipeline_detections" in entry:
        checks.append(_check_pipeline(detections, entry["pipeline_detections"], entry))
    return checks


def _close_matrix(
    name: str, got: list[list[float]], want: list[list[float]], tol: Tolerance
) -> Check:
    pairs = [(g, w) for gr, wr in zip(got, want, strict=True) for g, w in zip(gr, wr, strict=True)]
    worst = max(abs(g - w) for g, w in pairs)
    ok = all(tol.close(g, w) for g, w in pairs)
    return Check(name, ok, f"max |difference| {worst:.2e} (tolerance {tol})")


def _expected_box(box: list[float], width: int, height: int) -> dict[str, int]:
    """A reference float box as the runtime reports it: int() of each value, clipped."""
    xmin, ymin, xmax, ymax = (int(v) for v in box)
    clip = lambda v, limit: min(max(v, 0), limit)  # noqa: E731
    return {
        "xmin": clip(xmin, width),
        "ymin": clip(ymin, height),
        "xmax": clip(xmax, width),
        "ymax": clip(ymax, height),
    }


def _box_close(got: dict[str, int], want: dict[str, int]) -> bool:
    return all(abs(got[k] - want[k]) <= BOX_TOLERANCE_PX for k in want)


def _check_all_above_threshold(
    detector: Any, detections: list[dict], entry: dict, tol: Tolerance, width: int, height: int
) -> list[Check]:
    labels = [detector.id2label[i] for i in entry["labels"]]
    wanted = list(zip(entry["scores"], labels, strict=True))
    checks = [
        Check(
            "count",
            len(detections) == len(wanted),
            f"{len(detections)} detections above {entry['threshold']} (reference {len(wanted)})",
        )
    ]
    # The reference lists detections in query order, the runtime by score: match as sets.
    unmatched = list(detections)
    partners = []
    for score, label in wanted:
        partner = next(
            (d for d in unmatched if d["label"] == label and tol.close(d["score"], score)), None
        )
        partners.append(partner)
        if partner is not None:
            unmatched.remove(partner)
    missing = [
        f"{label} {score}" for (score, label), p in zip(wanted, partners, strict=True) if p is None
    ]
    checks.append(
        Check(
            "scores and labels",
            not missing and not unmatched,
            "all match"
            if not missing and not unmatched
            else f"missing {missing}; unexpected ({len(unmatched)}) "
            f"{[(d['label'], round(d['score'], 4)) for d in unmatched[:10]]}",
        )
    )
    if "first_box" in entry:
        want = _expected_box(entry["first_box"], width, height)
        first = partners[0] if partners else None
        checks.append(
            Check(
                "first box",
                first is not None and _box_close(first["box"], want),
                f"{first['box'] if first else None} (reference {want})",
            )
        )
    return checks


def _check_top4(
    detector: Any, detections: list[dict], entry: dict, tol: Tolerance, width: int, height: int
) -> list[Check]:
    top = detections[:4]
    want_labels = [detector.id2label[i] for i in entry["top4_labels"]]
    checks = [
        Check(
            "top 4 scores",
            len(top) == 4
            and all(
                tol.close(d["score"], s) for d, s in zip(top, entry["top4_scores"], strict=True)
            ),
            f"{[round(d['score'], 5) for d in top]} (reference "
            f"{[round(s, 5) for s in entry['top4_scores']]})",
        ),
        Check(
            "top 4 labels",
            [d["label"] for d in top] == want_labels,
            f"{[d['label'] for d in top]} (reference {want_labels})",
        ),
    ]
    want_boxes = [_expected_box(b, width, height) for b in entry["top4_boxes"]]
    checks.append(
        Check(
            "top 4 boxes",
            len(top) == 4
            and all(_box_close(d["box"], w) for d, w in zip(top, want_boxes, strict=True)),
            f"{[d['box'] for d in top]} (reference {want_boxes})",
        )
    )
    return checks


def _check_pipeline(detections: list[dict], reference: list[dict], entry: dict) -> Check:
    note = entry.get("pipeline_note", "")
    unmatched = list(detections)
    found = 0
    for want in reference:
        partner = next(
            (
                d
                for d in unmatched
                if d["label"] == want["label"]
                and abs(d["score"] - want["score"]) <= 5e-3
                and _box_close(d["box"], want["box"])
            ),
            None,
        )
        if partner is not None:
            unmatched.remove(partner)
            found += 1
    return Check(
        "pipeline detections",
        found == len(reference),
        f"{found}/{len(reference)} within 5e-3 and {BOX_TOLERANCE_PX} px"
        + (f" (informational: {note})" if note else " (informational)"),
        required=False,
    )


def pipeline_detections(model: Any, processor: Any, image: Any, *, threshold: float, device: Any):
    """transformers' own ``pipeline("object-detection")`` on ``image``, boxes clipped to it
    as the runtime clips them."""
    from transformers import pipeline

    pipe = pipeline("object-detection", model=model, image_processor=processor, device=device)
    width, height = image.size
    clip = lambda v, limit: min(max(v, 0), limit)  # noqa: E731
    out = []
    for d in pipe(image, threshold=threshold):
        box = d["box"]
        out.append(
            {
                "label": d["label"],
                "score": float(d["score"]),
                "box": {
                    "xmin": clip(box["xmin"], width),
                    "ymin": clip(box["ymin"], height),
                    "xmax": clip(box["xmax"], width),
                    "ymax": clip(box["ymax"], height),
                },
            }
        )
    return out


def compare_with_pipeline(
    detector: Any,
    image: DecodedImage,
    reference: list[dict],
    *,
    threshold: float,
    tolerance: Tolerance | None = None,
) -> list[Check]:
    """The runtime's detections against the pipeline's (``pipeline_detections``) on the
    same weights: equal as multisets (label, score within the tolerance, box corners within
    ``BOX_TOLERANCE_PX``). Detections whose score is within the tolerance of the threshold
    may fall either side of it and are left out of both."""
    tol = tolerance or Tolerance()
    [result] = detector.detect([image], threshold=threshold)
    near = lambda d: tol.close(d["score"], threshold)  # noqa: E731
    got = [d for d in result.detections if not near(d)]
    want = [d for d in reference if not near(d)]
    checks = [
        Check(
            "count",
            len(got) == len(want),
            f"{len(got)} detections above {threshold} (pipeline {len(want)})",
        )
    ]
    unmatched = list(want)
    extra = []
    for d in got:
        partner = next(
            (
                w
                for w in unmatched
                if w["label"] == d["label"]
                and tol.close(d["score"], w["score"])
                and _box_close(d["box"], w["box"])
            ),
            None,
        )
        if partner is None:
            extra.append(d)
        else:
            unmatched.remove(partner)
    ok = not extra and not unmatched
    checks.append(
        Check(
            "detections",
            ok,
            f"all {len(got)} match (scores {tol}, boxes {BOX_TOLERANCE_PX} px)"
            if ok
            else f"runtime only {[(d['label'], round(d['score'], 4)) for d in extra[:10]]}; "
            f"pipeline only {[(d['label'], round(d['score'], 4)) for d in unmatched[:10]]}",
        )
    )
    return checks
