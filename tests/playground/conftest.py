from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from playground.runtime.checkpoints import TEST_PROCESSOR_SIZES, build_checkpoint

CHECKPOINT_SEED = 0
# Test-sized architectures of the same model classes (one block per ResNet stage, fewer and
# narrower transformer layers), for the tests that export: converting a graph costs time in
# proportion to its operations (DETR-R50's OpenVINO conversion ~35 s on a 2-core machine,
# this one's ~6 s), and what an export test proves (the export path, the check, the shared
# pre/post-processing) is the same on both. Everything else runs the published sizes.
_BASIC_RESNET = {"depths": [1, 1, 1, 1], "layer_type": "basic"}
TEST_SIZED_ARCHITECTURES = {
    "detr": {
        "backbone_config": {
            "model_type": "resnet",
            **_BASIC_RESNET,
            "hidden_sizes": [32, 64, 128, 256],
            "embedding_size": 32,
            "out_features": ["stage4"],
        },
        "encoder_layers": 1,
        "decoder_layers": 2,
        "d_model": 64,
        "encoder_ffn_dim": 128,
        "decoder_ffn_dim": 128,
    },
    "rt_detr": {
        "backbone_config": {
            "model_type": "rt_detr_resnet",
            **_BASIC_RESNET,
            "hidden_sizes": [64, 128, 256, 512],
            "embedding_size": 64,
            "out_features": ["stage2", "stage3", "stage4"],
        },
        "encoder_in_channels": [128, 256, 512],
        "decoder_layers": 1,
    },
    "yolos_tiny": {"num_hidden_layers": 2},
}
TEST_SIZED_ARCHITECTURES["conditional_detr"] = TEST_SIZED_ARCHITECTURES["detr"]


def _builder(root: Path, architectures: dict[str, dict] | None = None) -> Callable[[str], Path]:
    """``get(family)``: the family's checkpoint under ``root``, built on first request."""
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_checkpoint(
                family,
                root / family,
                seed=CHECKPOINT_SEED,
                processor_size=TEST_PROCESSOR_SIZES[family],
                config_overrides=(architectures or {}).get(family),
            )
        return built[family]

    return get


@pytest.fixture(scope="session")
def runtime_checkpoint(tmp_path_factory) -> Callable[[str], Path]:
    """``runtime_checkpoint(family)``: a random-weight checkpoint directory, built once per
    session on first request (fixed seed, test-sized image processor)."""
    return _builder(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="session")
def test_sized_checkpoint(tmp_path_factory) -> Callable[[str], Path]:
    """``test_sized_checkpoint(family)``: as ``runtime_checkpoint`` with the family's
    ``TEST_SIZED_ARCHITECTURES`` (for the export tests)."""
    return _builder(tmp_path_factory.mktemp("test-sized"), TEST_SIZED_ARCHITECTURES)


@pytest.fixture(scope="session")
def runtime_export(test_sized_checkpoint, tmp_path_factory) -> Callable[..., Path]:
    """``runtime_export(family, backend="openvino")``: a copy of
    ``test_sized_checkpoint(family)`` with an accepted export for ``backend`` (``openvino``
    or ``onnxruntime``) next to its weights (a copy, so that VITRINE_BACKEND=auto elsewhere
    keeps finding no export and running torch). Skips when the backend's package is not
    installed."""
    import shutil

    from playground.runtime import CheckpointSpec
    from playground.runtime.backends import PACKAGES, write_manifest
    from playground.runtime.export import export_checkpoint

    root = tmp_path_factory.mktemp("exports")
    built: dict[tuple[str, str], Path] = {}

    def get(family: str, backend: str = "openvino") -> Path:
        pytest.importorskip(PACKAGES[backend])
        if (family, backend) not in built:
            folder = root / backend / family
            shutil.copytree(test_sized_checkpoint(family), folder)
            spec = CheckpointSpec(local_dir=str(folder))
            written, manifest = export_checkpoint(spec, backend=backend)
            # This machine's timing of the export against torch would decide what auto runs
            # (backends.auto_order); the tests that need a measurement plant their own.
            del manifest["speed"]
            write_manifest(written, manifest)
            built[family, backend] = folder
        return built[family, backend]

    return get
