"""A checkpoint's label map (``config.json``'s ``id2label``), read without loading the model.

The COCO export names its categories by the model's own class ids. Looked up where the
worker would load from (the local directory, ``$VITRINE_WEIGHTS_DIR``, the Hugging Face
cache); never downloads. None when the config is not on this machine. No Django here.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache

from playground.runtime.weights import CheckpointSpec, local_checkpoint_file

logger = logging.getLogger(__name__)
MODEL_CONFIG = "config.json"


def label_map(spec: CheckpointSpec) -> dict[int, str] | None:
    """``{class id: label}`` of the checkpoint, or None when its config is not here.

    Cached per process: a pinned checkpoint's config does not change.
    """
    return _label_map(spec)


@lru_cache(maxsize=256)
def _label_map(spec: CheckpointSpec) -> dict[int, str] | None:
    try:
        path = local_checkpoint_file(spec, MODEL_CONFIG)
        if path is None:
            return None
        raw = json.loads(path.read_text()).get("id2label")
        if not isinstance(raw, dict) or not raw:
            return None
        return {int(key): str(value) for key, value in raw.items()}
    except Exception:  # an unreadable config costs the export its ids, not the export
        logger.warning("could not read the label map of %s", spec.label, exc_info=True)
        return None
