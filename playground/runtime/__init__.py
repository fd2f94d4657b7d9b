"""The detector runtime: decode uploads, load checkpoints, run detection. No Django here.

Decoding needs only Pillow; torch and transformers are imported when a detector name is
first used, so a web process that only validates uploads does not load them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from playground.runtime.errors import DetectorRuntimeError, ImageError, WeightsNotInstalled
from playground.runtime.images import DecodedImage, ImageFacts, decode_image, inspect_image
from playground.runtime.weights import CheckpointSpec

if TYPE_CHECKING:
    from playground.runtime.detector import (
        DetectionResult,
        Detector,
        clear_detector_cache,
        get_detector,
        load_detector,
        loaded_detectors,
    )

_LAZY = {
    "DetectionResult",
    "Detector",
    "clear_detector_cache",
    "get_detector",
    "load_detector",
    "loaded_detectors",
}

__all__ = [
    "CheckpointSpec",
    "DecodedImage",
    "DetectionResult",
    "Detector",
    "DetectorRuntimeError",
    "ImageError",
    "ImageFacts",
    "WeightsNotInstalled",
    "clear_detector_cache",
    "decode_image",
    "get_detector",
    "inspect_image",
    "load_detector",
    "loaded_detectors",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from playground.runtime import detector

        return getattr(detector, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
