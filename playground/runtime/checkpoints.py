"""Random-weight checkpoints with the published architectures, for tests, benches and demos.

Real weights cannot be downloaded everywhere; these have the published models' configs,
image processors and label lists, so every code path (loading, preprocessing, forward,
post-processing) is the real one and only the numbers are meaningless. Each config carries
``"vitrine_untrained": true`` so nothing mistakes them for a trained model.

With the library's own initialisation every query of these models predicts the same thing
(tiny attention weights average the image away; YOLOS's detection tokens start at zero), so
all 100 detections share one label, one box and one score to 1e-5. That is useless for
comparing two code paths or for drawing boxes, so ``spread`` (on by default) redraws the
learned queries at unit scale and sharpens the attention and heads that turn them into
detections: the detections then differ in score, label and box, as a trained model's do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from playground.runtime.provenance import UNTRAINED_FLAG

# COCO category names by the 91 original ids (0 and the ten ids COCO never used included),
# as in facebook/detr-resnet-50's config.
COCO_91 = (
    "N/A", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "street sign", "stop sign", "parking meter",
    "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
    "giraffe", "hat", "backpack", "umbrella", "shoe", "eye glasses", "handbag", "tie",
    "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat",
    "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "plate",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "mirror", "dining table", "window", "desk", "toilet", "door", "tv",
    "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster",
    "sink", "refrigerator", "blender", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip
# Ids in the 91 list that no COCO annotation uses.
COCO_UNUSED_IDS = frozenset({12, 26, 29, 30, 45, 66, 68, 69, 71, 83})
# The 80 used categories, zero-based (RT-DETR's labels).
COCO_80 = tuple(name for i, name in enumerate(COCO_91) if i and i not in COCO_UNUSED_IDS)

# hustvl/yolos-tiny's config.json, the values that differ from YolosConfig's defaults or
# matter to the architecture (a fresh clone has no copy of the published file).
YOLOS_TINY_CONFIG: dict[str, Any] = {
    "hidden_size": 192,
    "num_hidden_layers": 12,
    "num_attention_heads": 3,
    "intermediate_size": 768,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "image_size": [800, 1333],
    "patch_size": 16,
    "num_channels": 3,
    "qkv_bias": True,
    "num_detection_tokens": 100,
    "use_mid_position_embeddings": False,
    "auxiliary_loss": False,
    "class_cost": 1,
    "bbox_cost": 5,
    "giou_cost": 2,
    "bbox_loss_coefficient": 5,
    "giou_loss_coefficient": 2,
    "eos_coefficient": 0.1,
}
YOLOS_TINY_PROCESSOR_SIZE = {"shortest_edge": 512, "longest_edge": 1333}


def _id2label_91(*, unused_as_na: bool) -> dict[int, str]:
    return {
        i: "N/A" if unused_as_na and i in COCO_UNUSED_IDS else name
        for i, name in enumerate(COCO_91)
    }


def _detr(**overrides: Any) -> tuple[Any, Any]:
    from transformers import DetrConfig, DetrImageProcessorPil

    # The native (transformers) ResNet-50 backbone, as in the checkpoint's `no_timm`
    # revision; no pretrained backbone is fetched.
    config = DetrConfig(
        use_timm_backbone=False, id2label=_id2label_91(unused_as_na=False), **overrides
    )
    return config, DetrImageProcessorPil


def _conditional_detr(**overrides: Any) -> tuple[Any, Any]:
    from transformers import ConditionalDetrConfig, ConditionalDetrImageProcessorPil

    config = ConditionalDetrConfig(
        use_timm_backbone=False, id2label=_id2label_91(unused_as_na=False), **overrides
    )
    return config, ConditionalDetrImageProcessorPil


def _rt_detr(**overrides: Any) -> tuple[Any, Any]:
    from transformers import RTDetrConfig, RTDetrImageProcessorPil

    # RTDetrConfig's defaults are PekingU/rtdetr_r50vd (ResNet-50-vd backbone, 640x640).
    config = RTDetrConfig(id2label=dict(enumerate(COCO_80)), **overrides)
    return config, RTDetrImageProcessorPil


def _yolos_tiny(**overrides: Any) -> tuple[Any, Any]:
    from transformers import YolosConfig, YolosImageProcessorPil

    config = YolosConfig(
        **{**YOLOS_TINY_CONFIG, **overrides}, id2label=_id2label_91(unused_as_na=True)
    )

    def processor(**kwargs: Any) -> Any:
        kwargs.setdefault("size", YOLOS_TINY_PROCESSOR_SIZE)
        return YolosImageProcessorPil(**kwargs)

    return config, processor


# Per family: (parameter-name pattern, "draw" from N(0, value**2) or "scale" by value).
SPREAD: dict[str, tuple[tuple[str, str, float], ...]] = {
    "detr": (
        (r"^model\.query_position_embeddings\.weight$", "draw", 1.0),
        (r"^model\.decoder\.layers\.\d+\.encoder_attn\.[qk]_proj\.weight$", "scale", 10.0),
        (r"^class_labels_classifier\.weight$", "scale", 10.0),
        (r"^bbox_predictor\.layers\.2\.weight$", "scale", 10.0),
    ),
    "conditional_detr": (
        (r"^model\.query_position_embeddings\.weight$", "draw", 1.0),
        (
            r"^model\.decoder\.layers\.\d+\.(self_attn|encoder_attn)\."
            r"(q_content|k_content|q_pos|k_pos|q_pos_sine)_proj\.weight$",
            "scale",
            10.0,
        ),
        (r"^class_labels_classifier\.weight$", "scale", 3.0),
        (r"^bbox_predictor\.layers\.2\.weight$", "scale", 10.0),
    ),
    "rt_detr": (
        # The library draws BatchNorm scales from N(0, 0.01**2): stacked, they shrink the
        # encoder's memory to ~1e-9, every position gets the same score and the top-300
        # query selection becomes a pure tie-break (which another runtime breaks otherwise).
        # Unit-scale BN weights give each position its own score, as trained weights do.
        (
            r"^model\.(encoder_input_proj\.\d+\.1|encoder\..*\.norm|decoder_input_proj\.\d+\.1)"
            r"\.weight$",
            "draw",
            1.0,
        ),
    ),
    "yolos_tiny": (
        (r"^vit\.embeddings\.(cls_token|detection_tokens|position_embeddings)$", "draw", 1.0),
        (r"^class_labels_classifier\.layers\.2\.weight$", "scale", 100.0),
        (r"^bbox_predictor\.layers\.2\.weight$", "scale", 10.0),
    ),
}


def spread_weights(model: torch.nn.Module, family: str) -> None:
    """Apply ``SPREAD[family]``; an unmatched pattern (a renamed parameter) is an error."""
    rules = SPREAD[family]
    used = set()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            for pattern, action, value in rules:
                if re.search(pattern, name):
                    used.add(pattern)
                    if action == "draw":
                        parameter.normal_(0.0, value)
                    else:
                        parameter.mul_(value)
    unused = [pattern for pattern, _, _ in rules if pattern not in used]
    if unused:
        raise RuntimeError(f"{family}: no parameter matches {unused}")


FAMILIES: dict[str, Callable[[], tuple[Any, Any]]] = {
    "detr": _detr,
    "conditional_detr": _conditional_detr,
    "rt_detr": _rt_detr,
    "yolos_tiny": _yolos_tiny,
}
# The published repositories these mirror (for messages and docs).
PUBLISHED = {
    "detr": "facebook/detr-resnet-50",
    "conditional_detr": "microsoft/conditional-detr-resnet-50",
    "rt_detr": "PekingU/rtdetr_r50vd",
    "yolos_tiny": "hustvl/yolos-tiny",
}


# Small inputs keep a random DETR-R50 forward near 0.1 s instead of ~2 s; the processor,
# model and post-processing code paths are the published ones (only ``size`` differs). The
# tests' sizes, and bench/bench_gpu.py's --test-size.
TEST_PROCESSOR_SIZES = {
    "detr": {"shortest_edge": 224, "longest_edge": 320},
    "conditional_detr": {"shortest_edge": 224, "longest_edge": 320},
    "rt_detr": {"height": 256, "width": 256},
    "yolos_tiny": {"shortest_edge": 224, "longest_edge": 320},
}


def build_checkpoint(
    family: str,
    out_dir: str | Path,
    *,
    seed: int = 0,
    processor_size: dict[str, int] | None = None,
    spread: bool = True,
    config_overrides: dict[str, Any] | None = None,
) -> Path:
    """Write a random-weight checkpoint of ``family`` into ``out_dir`` and return it.

    ``processor_size`` replaces the image processor's published ``size`` (tests use small
    inputs to stay fast; the code path is the same). ``spread``: see the module docstring.
    ``config_overrides``: config values replacing the published ones (fewer layers, a
    smaller backbone: a test-sized model of the same classes; recorded in the config as
    ``vitrine_config_overrides``).
    """
    from transformers import AutoModelForObjectDetection

    try:
        make = FAMILIES[family]
    except KeyError:
        raise ValueError(f"Unknown family {family!r}; choose from {', '.join(FAMILIES)}") from None
    config, processor_class = make(**(config_overrides or {}))
    setattr(config, UNTRAINED_FLAG, True)
    if config_overrides:
        config.vitrine_config_overrides = sorted(config_overrides)
    config.vitrine_family = family
    config.vitrine_seed = seed
    config.vitrine_spread = spread
    processor_kwargs = {"size": processor_size} if processor_size else {}
    processor = processor_class(**processor_kwargs)

    # The same seed gives the same weights (torch's CPU generator is platform-independent);
    # a private generator state so callers' randomness is left alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForObjectDetection.from_config(config)
        if spread:
            spread_weights(model, family)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_checkpoints(
    out_dir: str | Path,
    families: Iterable[str] = tuple(FAMILIES),
    *,
    seed: int = 0,
    processor_size: dict[str, dict[str, int]] | None = None,
) -> dict[str, Path]:
    """``build_checkpoint`` for each family into ``out_dir/<family>``."""
    sizes = processor_size or {}
    return {
        family: build_checkpoint(
            family, Path(out_dir) / family, seed=seed, processor_size=sizes.get(family)
        )
        for family in families
    }
