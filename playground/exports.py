"""A run's downloads, from its detections: COCO annotations, CSV rows, a PNG with the boxes.

Pure functions of the detections (the API's ``{label, score, box}`` shape, already filtered
by the threshold) and the image; the views in playground/runs.py pick the job, the
threshold and the label map. No ORM here.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from playground.palette import label_colour

CSV_FIELDS = ("label", "score", "xmin", "ymin", "xmax", "ymax")
COCO_IMAGE_ID = 1
_UNMAPPED = re.compile(r"^LABEL_(\d+)$")
# Sizes of the page's canvas drawing (playground.js), at 960 px wide; the PNG scales them
# with the image so that a large photo's boxes and labels stay as readable.
LINE_WIDTH, FONT_SIZE, LABEL_HEIGHT, REFERENCE_WIDTH = 2, 14, 18, 960
PNG_COMPRESS_LEVEL = 3


def coco_categories(
    labels: Iterable[str], label_map: Mapping[int, str] | None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """COCO ``categories`` and the category id of each label.

    With the model's label map (``id2label``) every class is listed under the model's own
    id, and a label maps to the lowest id carrying it (DETR repeats ``N/A``). A label the
    map lacks (``LABEL_17``, from a class the config did not name) keeps its number, or
    gets the next free id. Without a map, ids 1..n follow the labels' sorted order.
    """
    ids: dict[str, int] = {}
    categories: dict[int, str] = {}
    if label_map:
        for class_id in sorted(label_map):
            categories[class_id] = label_map[class_id]
            ids.setdefault(label_map[class_id], class_id)
    for label in sorted(set(labels)):
        if label in ids:
            continue
        match = _UNMAPPED.match(label)
        if match and int(match.group(1)) not in categories:
            class_id = int(match.group(1))
        else:
            class_id = max(categories, default=0) + 1
        categories[class_id] = label
        ids[label] = class_id
    listed = [{"id": k, "name": v, "supercategory": ""} for k, v in sorted(categories.items())]
    return listed, ids


def coco_document(
    *,
    detections: list[dict[str, Any]],
    width: int,
    height: int,
    file_name: str,
    label_map: Mapping[int, str] | None,
    info: dict[str, Any],
) -> dict[str, Any]:
    """One image's detections as a COCO instances file with scores: loadable by
    ``pycocotools.coco.COCO`` as a dataset, and its ``annotations`` by ``COCO.loadRes`` as
    results. Boxes are float ``[x, y, width, height]`` in the upright image's pixels."""
    categories, ids = coco_categories((d["label"] for d in detections), label_map)
    annotations = []
    for number, item in enumerate(detections, start=1):
        box = item["box"]
        x, y = float(box["xmin"]), float(box["ymin"])
        w, h = float(box["xmax"]) - x, float(box["ymax"]) - y
        annotations.append(
            {
                "id": number,
                "image_id": COCO_IMAGE_ID,
                "category_id": ids[item["label"]],
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
                "score": float(item["score"]),
            }
        )
    return {
        "info": info,
        "licenses": [],
        "images": [{"id": COCO_IMAGE_ID, "file_name": file_name, "width": width, "height": height}],
        "annotations": annotations,
        "categories": categories,
    }


def csv_text(detections: list[dict[str, Any]]) -> str:
    """One row per detection: label, score, xmin, ymin, xmax, ymax (a header first)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for item in detections:
        box = item["box"]
        writer.writerow(
            [item["label"], repr(float(item["score"]))]
            + [box[key] for key in ("xmin", "ymin", "xmax", "ymax")]
        )
    return out.getvalue()


def png_render(
    image: Image.Image, detections: list[dict[str, Any]], *, max_width: int | None = None
) -> bytes:
    """The upright image with each detection's box and ``label score`` tag drawn in its
    class colour (playground/palette.py), as the page's canvas draws them, as PNG bytes.

    ``max_width`` first shrinks a wider image (and its boxes) to that width: the permalink
    page shows that, a download is the full size.
    """
    canvas, factor = png_canvas(image, max_width=max_width)
    return png_draw(canvas, detections, factor)


def png_canvas(image: Image.Image, *, max_width: int | None = None) -> tuple[Image.Image, float]:
    """The picture ``png_draw`` draws on, shrunk to ``max_width`` when wider, and the factor
    its boxes are scaled by: what a drawing costs (decoded and shrunk once, it can be kept
    and drawn on at any threshold; playground/runs.py)."""
    canvas = image.convert("RGB")
    factor = 1.0
    if max_width and canvas.width > max_width:
        factor = max_width / canvas.width
        size = (max_width, max(1, round(canvas.height * factor)))
        canvas = canvas.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return canvas, factor


def png_draw(canvas: Image.Image, detections: list[dict[str, Any]], factor: float) -> bytes:
    """``detections`` drawn on a copy of ``canvas`` (``png_canvas``), as PNG bytes."""
    canvas = canvas.copy()
    scale = max(1.0, canvas.width / REFERENCE_WIDTH)
    line = max(LINE_WIDTH, round(LINE_WIDTH * scale))
    tag_height = round(LABEL_HEIGHT * scale)
    font = ImageFont.load_default(size=round(FONT_SIZE * scale))
    draw = ImageDraw.Draw(canvas)
    for item in detections:
        box = item["box"]
        colour = label_colour(item["label"])
        xmin, ymin = float(box["xmin"]) * factor, float(box["ymin"]) * factor
        xmax, ymax = float(box["xmax"]) * factor, float(box["ymax"]) * factor
        draw.rectangle((xmin, ymin, xmax, ymax), outline=colour, width=line)
        text = f"{item['label']} {float(item['score']):.2f}"
        text_width = draw.textlength(text, font=font) + 6 * scale
        top = max(0.0, ymin - tag_height)
        draw.rectangle((xmin, top, xmin + text_width, top + tag_height), fill=colour)
        draw.text((xmin + 3 * scale, top + tag_height / 2), text, fill="#ffffff", font=font,
                  anchor="lm")  # fmt: skip
    out = io.BytesIO()
    # zlib level 3: about half the time of the default 6 for a few percent more bytes.
    canvas.save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return out.getvalue()
