from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from playground.runtime.checkpoints import build_checkpoint

CHECKPOINT_SEED = 0
# Small inputs keep a random DETR-R50 forward near 0.1 s instead of ~2 s; the processor,
# model and post-processing code paths are the published ones (only `size` differs).
TEST_PROCESSOR_SIZES = {
    "detr": {"shortest_edge": 224, "longest_edge": 320},
    "conditional_detr": {"shortest_edge": 224, "longest_edge": 320},
    "rt_detr": {"height": 256, "width": 256},
    "yolos_tiny": {"shortest_edge": 224, "longest_edge": 320},
}


@pytest.fixture(scope="session")
def runtime_checkpoint(tmp_path_factory) -> Callable[[str], Path]:
    """``runtime_checkpoint(family)``: a random-weight checkpoint directory, built once per
    session on first request (fixed seed, test-sized image processor)."""
    root = tmp_path_factory.mktemp("checkpoints")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_checkpoint(
                family,
                root / family,
                seed=CHECKPOINT_SEED,
                processor_size=TEST_PROCESSOR_SIZES[family],
            )
        return built[family]

    return get


@pytest.fixture(scope="session")
def runtime_export(runtime_checkpoint, tmp_path_factory) -> Callable[..., Path]:
    """``runtime_export(family, backend="openvino")``: a copy of ``runtime_checkpoint(family)``
    with an accepted export for ``backend`` (``openvino`` or ``onnxruntime``) next to its
    weights (a copy, so that VITRINE_BACKEND=auto elsewhere keeps finding no export and
    running torch). Skips when the backend's package is not installed."""
    import shutil

    from playground.runtime import CheckpointSpec
    from playground.runtime.backends import PACKAGES
    from playground.runtime.export import export_checkpoint

    root = tmp_path_factory.mktemp("exports")
    built: dict[tuple[str, str], Path] = {}

    def get(family: str, backend: str = "openvino") -> Path:
        pytest.importorskip(PACKAGES[backend])
        if (family, backend) not in built:
            folder = root / backend / family
            shutil.copytree(runtime_checkpoint(family), folder)
            export_checkpoint(CheckpointSpec(local_dir=str(folder)), backend=backend)
            built[family, backend] = folder
        return built[family, backend]

    return get
