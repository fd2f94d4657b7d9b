"""A checkpoint's label map (``config.json``'s ``id2label``), read without loading the model.

The COCO export names its categories by the model's own class ids. Looked up where the
worker would load from (the local directory, ``$VITRINE_WEIGHTS_DIR``, the Hugging Face
cache); never downloads. None when the config is not on this machine. No Django here.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

from playground.runtime.weights import DEFAULT_REVISION, CheckpointSpec, weights_dir_for

logger = logging.getLogger(__name__)
MODEL_CONFIG = "config.json"


def label_map(spec: CheckpointSpec) -> dict[int, str] | None:
    """``{class id: label}`` of the checkpoint, or None when its config is not here.

    Cached per process: a pinned checkpoint's config does not change.
    """
    return _label_map(spec)


@lru_cache(maxsize=256)
def _label_map(spec: CheckpointSpec) -> dict[int, str] | None:
    path: Path | None = None
    try:
        if spec.local_dir:
            path = Path(spec.local_dir).expanduser() / MODEL_CONFIG
        elif spec.repo:
            folder = weights_dir_for(spec)
            if folder is not None and (folder / MODEL_CONFIG).is_file():
                path = folder / MODEL_CONFIG
            else:
                from huggingface_hub import try_to_load_from_cache

                found = try_to_load_from_cache(
                    spec.repo, MODEL_CONFIG, revision=spec.revision or DEFAULT_REVISION
                )
                path = Path(found) if isinstance(found, str) else None
        if path is None or not path.is_file():
            return None
        raw = json.loads(path.read_text()).get("id2label")
        if not isinstance(raw, dict) or not raw:
            return None
        return {int(key): str(value) for key, value in raw.items()}
    except Exception:  # an unreadable config costs the export its ids, not the export
        logger.warning("could not read the label map of %s", spec.label, exc_info=True)
        return None
