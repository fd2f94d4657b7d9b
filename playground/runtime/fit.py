"""Whether a decoded image survives the model's image processor, checked without the model.

The processors of the DETR family resize an image so its short side is ``shortest_edge``
unless that makes the long side exceed ``longest_edge``; then the long side is
``longest_edge`` and the short side ``round(longest_edge * short / long)``. A 10000x10 strip
becomes 320x0 (or YOLOS floors a side to a multiple of its 16 px patch: 320x15 -> 320x0) and
the processor raises ``ValueError: ... SizeDict(height=0, ...)`` deep in the worker. So the
web process checks the same arithmetic before a job is queued or charged, from the
checkpoint's ``preprocessor_config.json`` when it is on this machine (read as JSON: no
transformers import, no model load), else from the config its repository publishes when it
is one of the seeded checkpoints (``PUBLISHED_PROCESSORS``), else from DETR's published
defaults (``DEFAULT_RESIZE``); the worker checks again with its loaded processor.

``MIN_MODEL_SIDE`` (16 px, YOLOS's patch size) is the smallest resized side every family we
serve accepts: measured on random-weight YOLOS tiny and DETR R50 with a 224/320 processor,
320x16 runs and 320x15 fails on YOLOS. An image smaller than that on both sides is fine: the
processor scales it up.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from playground.runtime.errors import IMAGE_ASPECT_UNSUPPORTED, IMAGE_TOO_SMALL, ImageError
from playground.runtime.weights import CheckpointSpec, local_checkpoint_file

logger = logging.getLogger(__name__)

MIN_MODEL_SIDE = 16
# facebook/detr-resnet-50's published processor size: the rule for a checkpoint whose
# config is neither on this machine nor in PUBLISHED_PROCESSORS.
DEFAULT_RESIZE: dict[str, int] = {"shortest_edge": 800, "longest_edge": 1333}
PROCESSOR_CONFIG = "preprocessor_config.json"
# What the seeded checkpoints' preprocessor_config.json says on the Hub (the keys that
# decide the resize), for a web machine without their files: the quote and the fit check
# then use the checkpoint's own rule, not DETR's (hustvl/yolos-tiny is 512/1333, not
# 800/1333; PekingU/rtdetr_r50vd a fixed 640x640). Keyed by repository: every revision the
# catalogue pins (DETR's no_timm included) has the same processor.
PUBLISHED_PROCESSORS: dict[str, dict[str, Any]] = {
    "facebook/detr-resnet-50": {
        "image_processor_type": "DetrImageProcessor",
        "size": {"shortest_edge": 800, "longest_edge": 1333},
    },
    "microsoft/conditional-detr-resnet-50": {
        "image_processor_type": "ConditionalDetrImageProcessor",
        "size": {"shortest_edge": 800, "longest_edge": 1333},
    },
    "hustvl/yolos-tiny": {
        "feature_extractor_type": "YolosFeatureExtractor",
        "size": 512,
        "max_size": 1333,
    },
    "PekingU/rtdetr_r50vd": {
        "image_processor_type": "RTDetrImageProcessor",
        "size": {"height": 640, "width": 640},
    },
}

IMAGE_TOO_THIN_MESSAGE = (
    "The image is {width}x{height}: this model scales images to at most {longest} px on the "
    "long side, which leaves {resized} px on the short side; it needs at least {minimum} px. "
    "Send an image whose long side is at most {ratio} times its short side."
)
IMAGE_TOO_SMALL_MESSAGE = (
    "The image is {width}x{height}: this model needs each side to be at least {minimum} px."
)

_SIZE_KEYS = ("height", "width", "shortest_edge", "longest_edge", "max_height", "max_width")


def resize_rule(size: Any, *, max_size: Any = None, do_resize: bool = True) -> dict[str, int]:
    """A processor's ``size`` (a dict, transformers' ``SizeDict`` or a legacy int with
    ``max_size``) as a plain dict of the keys that decide the resized size; {} means the
    processor does not resize."""
    if not do_resize:
        return {}
    if isinstance(size, int) and not isinstance(size, bool):
        rule = {"shortest_edge": size}
        if isinstance(max_size, int):
            rule["longest_edge"] = max_size
        return rule
    rule = {}
    for key in _SIZE_KEYS:
        value = size.get(key) if isinstance(size, Mapping) else getattr(size, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            rule[key] = value
    if "shortest_edge" in rule and "longest_edge" not in rule and isinstance(max_size, int):
        rule["longest_edge"] = max_size
    return rule


def rule_from_processor(processor: Any) -> dict[str, int]:
    """The resize rule of a loaded transformers image processor."""
    return resize_rule(
        getattr(processor, "size", None),
        max_size=getattr(processor, "max_size", None),
        do_resize=bool(getattr(processor, "do_resize", True)),
    )


def rule_from_config(config: Mapping[str, Any] | None) -> dict[str, int]:
    """The resize rule of a ``preprocessor_config.json``; the DETR default when unknown."""
    if not config:
        return dict(DEFAULT_RESIZE)
    rule = resize_rule(
        config.get("size"),
        max_size=config.get("max_size"),
        do_resize=bool(config.get("do_resize", True)),
    )
    if config.get("do_resize", True) and not rule:
        return dict(DEFAULT_RESIZE)
    return rule


def resized_short_side(width: int, height: int, rule: Mapping[str, int]) -> int | None:
    """The short side after the processor's resize, as transformers rounds it; None when
    the rule fixes both sides (e.g. RT-DETR's 640x640: any aspect ratio fits)."""
    short, long = min(width, height), max(width, height)
    if "height" in rule and "width" in rule:
        return None
    if "max_height" in rule and "max_width" in rule:
        scale = min(rule["max_height"] / height, rule["max_width"] / width)
        return int(short * scale)
    if "shortest_edge" in rule:
        target = rule["shortest_edge"]
        longest = rule.get("longest_edge")
        if longest is not None and long / short * target > longest:
            return round(longest * short / long)
        return target
    if "longest_edge" in rule:
        return round(rule["longest_edge"] * short / long)
    return short  # no resize: the image goes in as it is


def check_model_fit(width: int, height: int, rule: Mapping[str, int]) -> None:
    """Raise ``ImageError`` when the processor would shrink a side under ``MIN_MODEL_SIDE``."""
    resized = resized_short_side(width, height, rule)
    if resized is None or resized >= MIN_MODEL_SIDE:
        return
    if not rule:
        raise ImageError(
            IMAGE_TOO_SMALL_MESSAGE.format(width=width, height=height, minimum=MIN_MODEL_SIDE),
            code=IMAGE_TOO_SMALL,
        )
    longest = rule.get("longest_edge") or max(rule.get("max_height", 0), rule.get("max_width", 0))
    raise ImageError(
        IMAGE_TOO_THIN_MESSAGE.format(
            width=width,
            height=height,
            longest=longest,
            resized=resized,
            minimum=MIN_MODEL_SIDE,
            ratio=max(longest // MIN_MODEL_SIDE, 1),
        ),
        code=IMAGE_ASPECT_UNSUPPORTED,
    )


def processor_config(spec: CheckpointSpec) -> dict[str, Any] | None:
    """The checkpoint's ``preprocessor_config.json`` if it is on this machine, else the one
    its repository publishes (``published_processor_config``), else None (then
    ``rule_from_config`` gives ``DEFAULT_RESIZE``)."""
    return local_processor_config(spec) or published_processor_config(spec)


def local_processor_config(spec: CheckpointSpec) -> dict[str, Any] | None:
    """The checkpoint's ``preprocessor_config.json`` if it is on this machine, else None.

    Looks where the worker would load from (the local directory, ``$VITRINE_WEIGHTS_DIR``,
    the Hugging Face cache); never downloads. Cached per process: the file of a pinned
    checkpoint does not change, and a web process restarts with new weights anyway.
    """
    return _processor_config(spec)


def published_processor_config(spec: CheckpointSpec) -> dict[str, Any] | None:
    """The processor config a seeded Hub checkpoint publishes (``PUBLISHED_PROCESSORS``);
    None for a local directory or another repository."""
    if spec.local_dir or spec.repo not in PUBLISHED_PROCESSORS:
        return None
    return dict(PUBLISHED_PROCESSORS[spec.repo])


@lru_cache(maxsize=256)
def _processor_config(spec: CheckpointSpec) -> dict[str, Any] | None:
    try:
        path = local_checkpoint_file(spec, PROCESSOR_CONFIG)
        if path is None:
            return None
        config = json.loads(path.read_text())
    except Exception:  # an unreadable config must not refuse uploads: the defaults apply
        logger.warning("could not read the processor config of %s", spec.label, exc_info=True)
        return None
    return config if isinstance(config, dict) else None


def resize_mod_size(processor_type: str) -> int | None:
    """YOLOS floors both resized sides to a multiple of its 16 px patch; the others do not."""
    return 16 if processor_type.lower().startswith("yolos") else None


def config_processor_type(config: Mapping[str, Any] | None) -> str:
    """The processor class a config names: ``image_processor_type``, else the older
    ``feature_extractor_type`` (hustvl/yolos-tiny's published config has only that one)."""
    config = config or {}
    return str(config.get("image_processor_type") or config.get("feature_extractor_type") or "")


def resized_size(
    width: int, height: int, rule: Mapping[str, int], *, mod_size: int | None = None
) -> tuple[int, int] | None:
    """(width, height) of the image the processor hands to the model, before any batch
    padding; the same arithmetic as transformers' ``get_size_with_aspect_ratio`` (and the
    YOLOS variant with ``mod_size``), ``get_image_size_for_max_height_width`` and a fixed
    ``height``/``width``. None for a rule it does not know (the quote then says so)."""
    if not rule:
        return width, height
    if "height" in rule and "width" in rule:
        return rule["width"], rule["height"]
    if "max_height" in rule and "max_width" in rule:
        scale = min(rule["max_height"] / height, rule["max_width"] / width)
        return int(width * scale), int(height * scale)
    if "shortest_edge" not in rule:
        return None
    size, max_size = rule["shortest_edge"], rule.get("longest_edge")
    raw_size = None
    if max_size is not None:
        short, long = float(min(height, width)), float(max(height, width))
        if long / short * size > max_size:
            raw_size = max_size * short / long
            size = round(raw_size)  # int(round(...)) in transformers: the same int
    same = (height <= width and height == size) or (width <= height and width == size)
    if same and not (mod_size is not None and width < height):
        out_h, out_w = height, width
    elif width < height:
        out_w = size
        out_h = int((raw_size if raw_size is not None else size) * height / width)
    else:
        out_h = size
        out_w = int((raw_size if raw_size is not None else size) * width / height)
    if mod_size is not None:
        out_w -= out_w % mod_size
        out_h -= out_h % mod_size
    return out_w, out_h
