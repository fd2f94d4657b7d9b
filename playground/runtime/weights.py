"""Which checkpoint to load and where its files are.

Lookup order for a ``CheckpointSpec``:

1. ``local_dir`` when set: that directory, nothing else.
2. ``$VITRINE_WEIGHTS_DIR/<org>/<name>/<revision>`` when the variable is set and that
   directory exists (``<revision>`` is ``main`` when the spec pins none; a ``/`` in a
   revision is written ``--``). Fill it with e.g.
   ``hf download facebook/detr-resnet-50 --revision no_timm
   --local-dir $VITRINE_WEIGHTS_DIR/facebook/detr-resnet-50/no_timm``.
3. The Hugging Face cache, by Hub id at the pinned revision, without network access
   unless ``VITRINE_ALLOW_DOWNLOAD=1``.

Anything missing ends in ``WeightsNotInstalled`` naming the places that were tried.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from playground.runtime.env import env_bool
from playground.runtime.errors import WeightsNotInstalled

WEIGHTS_DIR_ENV = "VITRINE_WEIGHTS_DIR"
ALLOW_DOWNLOAD_ENV = "VITRINE_ALLOW_DOWNLOAD"
DEFAULT_REVISION = "main"

_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")

NO_SOURCE_MESSAGE = "A checkpoint needs a Hub repo id or a local directory."
BAD_REPO_MESSAGE = "Not a Hub repo id of the form org/name: {repo!r}."
LOCAL_DIR_MISSING_MESSAGE = "The weights of {what} are not installed: {path} {problem}."
HUB_MISSING_MESSAGE = (
    "The weights of {repo} at revision {revision} are not installed: looked in {places}. {hint}"
)
HUB_MISSING_HINT_OFFLINE = (
    "Install them in $VITRINE_WEIGHTS_DIR/<org>/<name>/<revision> or the Hugging Face cache, "
    "or set VITRINE_ALLOW_DOWNLOAD=1 on a machine with network access."
)
HUB_MISSING_HINT_DOWNLOAD = "Downloading them failed: {error}"


@dataclass(frozen=True)
class CheckpointSpec:
    """A detector checkpoint: a Hub id pinned to a revision, and/or a local directory."""

    repo: str = ""
    revision: str = ""
    local_dir: str = ""

    @property
    def key(self) -> str:
        """A stable identity for caches: the directory, or the Hub id at its revision."""
        if self.local_dir:
            return f"dir:{Path(self.local_dir).expanduser().resolve()}"
        return f"hub:{self.repo}@{self.revision or DEFAULT_REVISION}"

    @property
    def label(self) -> str:
        """How messages name this checkpoint."""
        if self.repo:
            return f"{self.repo}@{self.revision or DEFAULT_REVISION}"
        return self.local_dir


@dataclass(frozen=True)
class WeightsSource:
    """Arguments for ``from_pretrained``: a path or Hub id, and the Hub keyword arguments."""

    path: str
    kwargs: dict
    is_local: bool


def resolve_weights(spec: CheckpointSpec) -> WeightsSource:
    """Where ``spec``'s files are; WeightsNotInstalled when a named directory is missing.

    A Hub id is only checked when ``from_pretrained`` runs (see ``weights_error``).
    """
    if spec.local_dir:
        path = Path(spec.local_dir).expanduser()
        _require_checkpoint_dir(path, what=spec.label)
        return WeightsSource(str(path), {"local_files_only": True}, is_local=True)
    if not spec.repo:
        raise ValueError(NO_SOURCE_MESSAGE)
    if not _REPO_RE.match(spec.repo) or ".." in spec.repo:
        raise ValueError(BAD_REPO_MESSAGE.format(repo=spec.repo))
    folder = weights_dir_for(spec)
    if folder is not None and folder.is_dir():
        _require_checkpoint_dir(folder, what=spec.label)
        return WeightsSource(str(folder), {"local_files_only": True}, is_local=True)
    kwargs = {
        "revision": spec.revision or None,
        "local_files_only": not env_bool(ALLOW_DOWNLOAD_ENV),
    }
    return WeightsSource(spec.repo, kwargs, is_local=False)


def weights_dir_for(spec: CheckpointSpec) -> Path | None:
    """``$VITRINE_WEIGHTS_DIR/<org>/<name>/<revision>`` for a Hub spec, None when unset."""
    root = os.environ.get(WEIGHTS_DIR_ENV, "").strip()
    if not root or not spec.repo:
        return None
    return weights_path(Path(root), spec)


def local_checkpoint_file(spec: CheckpointSpec, filename: str) -> Path | None:
    """One file of the checkpoint where the worker would load it from (the local directory,
    ``$VITRINE_WEIGHTS_DIR``, the Hugging Face cache), or None when it is not on this machine.
    Never downloads."""
    path: Path | None = None
    if spec.local_dir:
        path = Path(spec.local_dir).expanduser() / filename
    elif spec.repo:
        folder = weights_dir_for(spec)
        if folder is not None and (folder / filename).is_file():
            path = folder / filename
        else:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(
                spec.repo, filename, revision=spec.revision or DEFAULT_REVISION
            )
            path = Path(found) if isinstance(found, str) else None
    return path if path is not None and path.is_file() else None


def weights_path(root: Path, spec: CheckpointSpec) -> Path:
    """Where a Hub spec's files live under a weights root: ``<root>/<org>/<name>/<revision>``."""
    revision = (spec.revision or DEFAULT_REVISION).replace("/", "--")
    if revision in (".", "..") or os.sep in revision:
        raise ValueError(f"Unusable revision for a directory name: {spec.revision!r}")
    org, name = spec.repo.split("/", 1)
    return root.expanduser() / org / name / revision


def weights_error(
    spec: CheckpointSpec, source: WeightsSource, exc: Exception
) -> WeightsNotInstalled:
    """The WeightsNotInstalled for a ``from_pretrained`` failure on missing or unreachable files."""
    if source.is_local:
        return WeightsNotInstalled(
            LOCAL_DIR_MISSING_MESSAGE.format(
                what=spec.label, path=source.path, problem=f"is incomplete ({exc})"
            )
        )
    places = []
    folder = weights_dir_for(spec)
    if folder is not None:
        places.append(str(folder))
    places.append("the Hugging Face cache")
    downloading = not source.kwargs.get("local_files_only", True)
    hint = (
        HUB_MISSING_HINT_DOWNLOAD.format(error=str(exc).splitlines()[0] if str(exc) else exc)
        if downloading
        else HUB_MISSING_HINT_OFFLINE
    )
    return WeightsNotInstalled(
        HUB_MISSING_MESSAGE.format(
            repo=spec.repo,
            revision=spec.revision or DEFAULT_REVISION,
            places=" and ".join(places),
            hint=hint,
        )
    )


def _require_checkpoint_dir(path: Path, *, what: str) -> None:
    if not path.is_dir():
        problem = "does not exist" if not path.exists() else "is not a directory"
    elif not (path / "config.json").is_file():
        problem = "has no config.json"
    else:
        return
    raise WeightsNotInstalled(
        LOCAL_DIR_MISSING_MESSAGE.format(what=what, path=path, problem=problem)
    )
