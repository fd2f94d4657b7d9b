"""Which weights a loaded detector runs, exactly: the provenance recorded on every job.

- **Revision.** Loaded from the Hugging Face cache: the commit of the snapshot the cache
  resolved the card's revision to (a branch such as ``no_timm`` moves; the commit does not),
  written ``<40 hex>``. Loaded from a folder (``checkpoint_local_dir`` or
  ``$VITRINE_WEIGHTS_DIR``): ``sha256:<hex>``, a digest of the checkpoint's files (weights,
  config and image-processor config: what ``from_pretrained`` reads), computed once when the
  model is loaded, not per job. Empty when neither can be told.
- **Untrained.** A checkpoint is marked untrained by ``"vitrine_untrained": true`` in its
  ``config.json``; ``build_checkpoint`` (``manage.py make_checkpoints`` and the tests'
  random-weight checkpoints) writes it. The flag travels with the files, so a folder of
  random weights copied anywhere stays marked; a published checkpoint never has it.
- **Backend and precision.** The libraries and device that computed the boxes, and the
  arithmetic (``fp32``, or ``fp16``/``bf16`` under autocast, ``int8`` for the int8 export).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

UNTRAINED_FLAG = "vitrine_untrained"
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_SNAPSHOT_RE = re.compile(r"snapshots/([0-9a-f]{40})/")
# The files from_pretrained reads for an object detector; their bytes are the model.
DIGEST_PATTERNS = ("*.safetensors", "*.bin", "config.json", "preprocessor_config.json")
DIGEST_PREFIX = "sha256:"
_CHUNK = 1 << 20


def is_commit(revision: str) -> bool:
    """True for a full 40-hex commit id, False for a branch or tag name (which can move)."""
    return bool(COMMIT_RE.match(revision or ""))


def is_untrained(config: Any) -> bool:
    return bool(getattr(config, UNTRAINED_FLAG, False))


def folder_digest(path: str | Path) -> str:
    """``sha256:<hex>`` over the checkpoint files in ``path`` (names and bytes, sorted)."""
    root = Path(path)
    files = sorted({f for pattern in DIGEST_PATTERNS for f in root.glob(pattern) if f.is_file()})
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return DIGEST_PREFIX + digest.hexdigest()


def hub_commit(repo: str, revision: str) -> str:
    """The commit the local Hugging Face cache resolves ``repo@revision`` to; "" if unknown.

    Reads the cache only (``refs/<branch>`` -> ``snapshots/<commit>``): no network.
    """
    if is_commit(revision):
        return revision
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, "config.json", revision=revision or None)
    if not isinstance(found, str):
        return ""
    match = _SNAPSHOT_RE.search(Path(found).as_posix())
    return match.group(1) if match else ""


def resolved_revision(*, path: str, is_local: bool, repo: str = "", revision: str = "") -> str:
    """The revision a loaded checkpoint's files are: a commit or a folder digest."""
    if is_local:
        return folder_digest(path)
    return hub_commit(repo, revision)


def backend_description(device_type: str, image_backend: str) -> str:
    import torch
    import transformers

    return (
        f"transformers {transformers.__version__}, torch {torch.__version__}, "
        f"{device_type}, {image_backend} preprocessing"
    )
