"""Exporting a checkpoint to a second backend, checked against torch before it is accepted.

Used by ``manage.py export_model`` and the bench; plain Python (no Django).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from playground.runtime import backends
from playground.runtime.detector import (
    TORCH_THREADS_ENV,
    _local_checkpoint_path,
    export_dir_for,
    load_detector,
)
from playground.runtime.env import env_int
from playground.runtime.errors import WeightsNotInstalled
from playground.runtime.weights import CheckpointSpec, resolve_weights

# Three aspect ratios (landscape, portrait, square): an export whose graph kept one input
# shape as a constant fails the check on the others.
CHECK_SIZES = ((640, 480), (480, 640), (512, 512))
# Families whose export is known not to work, and why (none so far: DETR, Conditional DETR,
# RT-DETR and YOLOS all convert with dynamic shapes and pass the check, for both backends).
UNSUPPORTED: dict[str, str] = {}
# Without calibration photos an int8 export is calibrated on this many generated images.
GENERATED_CALIBRATION = 8
CALIBRATION_SEED = 1  # not the check images' seed: calibrating on the checked images flatters


def check_images(count: int = len(CHECK_SIZES), seed: int = 0) -> list[Image.Image]:
    """Synthetic images with structure at several scales (so the detections vary)."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        width, height = CHECK_SIZES[i % len(CHECK_SIZES)]
        cells = rng.integers(0, 256, (height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
        coarse = Image.fromarray(cells).resize((width, height), Image.Resampling.BILINEAR)
        noise = rng.integers(-24, 25, (height, width, 3))
        pixels = np.clip(np.asarray(coarse, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        images.append(Image.fromarray(pixels))
    return images


def export_location(
    spec: CheckpointSpec, backend: str = "openvino", *, int8: bool = False
) -> tuple[Path, str]:
    """(export folder, folder of the source files) of ``spec``; WeightsNotInstalled if absent."""
    source = resolve_weights(spec)
    local = _local_checkpoint_path(source)
    if local is None:
        raise WeightsNotInstalled(f"The weights of {spec.label} are not on this machine.")
    return export_dir_for(spec, source, local, backend=backend, int8=int8), local


def export_checkpoint(
    spec: CheckpointSpec,
    *,
    backend: str = "openvino",
    images: Sequence[Image.Image] | None = None,
    logit_tol: float = backends.LOGIT_TOLERANCE,
    box_tol: float = backends.BOX_TOLERANCE,
    log: Callable[[str], Any] | None = None,
    precision: str = "f32",
    calibration_images: Sequence[Image.Image] | None = None,
    calibration_source: str = "",
    int8_scope: str = "transformer",
) -> tuple[Path, dict]:
    """Export ``spec`` for ``backend`` (OpenVINO IR, or ONNX for ONNX Runtime) from the files
    the torch path loads, check it against torch on ``images`` (default: ``check_images()``)
    and write it with its manifest.

    ``precision="int8"``: the int8 OpenVINO export (its own folder), quantized with
    statistics from ``calibration_images`` (default: ``GENERATED_CALIBRATION`` generated
    images, fine for test checkpoints; a real model wants photos like its traffic, named by
    ``calibration_source`` in the manifest); ``int8_scope``: see ``backends.INT8_SCOPES``.

    Raises ExportRefused beyond the tolerance (the previous export, if any, is kept).
    """
    int8 = precision == "int8"
    folder, local = export_location(spec, backend, int8=int8)
    # Unfused: the exporters trace standard convolutions (the fused calls are torch's own
    # cuDNN/oneDNN ops); folded, as each runtime would fold them anyway.
    detector = load_detector(
        spec, device="cpu", warm_up=False, backend="torch", precision="f32", fuse_layers=False
    )
    family = detector.model_type
    if family in UNSUPPORTED:
        raise backends.BackendUnavailable(f"{family} cannot be exported: {UNSUPPORTED[family]}")
    inputs = [detector.preprocess(image) for image in (images or check_images())]
    calibration = None
    if int8:
        if not calibration_images:
            calibration_images = check_images(GENERATED_CALIBRATION, seed=CALIBRATION_SEED)
            calibration_source = "generated images"
        calibration = [detector.preprocess(image) for image in calibration_images]
    source = {
        "checkpoint": spec.label,
        "repo": spec.repo,
        "revision": spec.revision,
        # The Hub cache keeps a snapshot per commit: its folder name is the commit hash.
        "commit": Path(local).name if not spec.local_dir and spec.repo else "",
        "local_dir": spec.local_dir,
    }
    manifest = backends.export_backend(
        detector,
        folder,
        backend=backend,
        source_path=local,
        source=source,
        check_inputs=inputs,
        logit_tol=logit_tol,
        box_tol=box_tol,
        threads=env_int(TORCH_THREADS_ENV, None),
        log=log,
        precision=precision,
        calibration_inputs=calibration,
        calibration={"calibration_source": calibration_source} if int8 else None,
        int8_scope=int8_scope,
    )
    return folder, manifest


def check_existing(
    spec: CheckpointSpec,
    *,
    backend: str = "openvino",
    images: Sequence[Image.Image] | None = None,
    logit_tol: float = backends.LOGIT_TOLERANCE,
    box_tol: float = backends.BOX_TOLERANCE,
    precision: str = "f32",
) -> tuple[backends.Comparison, str | None, dict]:
    """Compare the existing export with torch again (the IR as it is on disk, even if it
    changed since it was accepted); also says why the runtime would refuse it, if it would,
    and times its forward against torch's on this CPU (kept in its manifest: what ``auto``
    weighs here; see ``backends.auto_order``)."""
    folder, local = export_location(spec, backend, int8=precision == "int8")
    detector = load_detector(spec, device="cpu", warm_up=False, backend="torch", precision="f32")
    refusal = None
    kwargs = {"source_path": local, "label": spec.label, "precision": precision}
    try:
        backends.load_export(backend, folder, **kwargs)
    except backends.BackendUnavailable as exc:
        refusal = exc.message
    try:
        forward = backends.load_export(backend, folder, check_hashes=False, **kwargs)
    except backends.BackendUnavailable as exc:
        if refusal and refusal != exc.message:
            raise backends.BackendUnavailable(f"{refusal} {exc.message}") from exc
        raise
    inputs = [detector.preprocess(image) for image in (images or check_images())]
    comparison = backends.check_export(
        detector, forward, inputs, logit_tol=logit_tol, box_tol=box_tol
    )
    speed = backends.measure_speed(detector, forward, inputs)
    backends.record_speed(folder, speed)
    return comparison, refusal, speed
