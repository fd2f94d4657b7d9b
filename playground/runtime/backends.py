"""More backends for the same checkpoint: the forward pass compiled by OpenVINO or run by
ONNX Runtime.

Only the forward differs. The torch model, the OpenVINO IR and the ONNX graph take the same
preprocessed tensors (the checkpoint's own image processor) and return the same ``logits``
and ``pred_boxes``, which go to the same post-processing; so every fidelity test runs on all.

- ``export_backend(...)`` converts the torch model that ``load_detector`` loads (OpenVINO's
  ``convert_model``, or ``torch.onnx.export``), checks it against torch on a few images
  (``compare_outputs``) and only then writes it, with an ``export.json`` manifest: exporter
  versions, the source files' sha256, the check's figures and the export's own sha256.
- ``load_export(...)`` compiles an accepted export (an OpenVINO compiled model, an ONNX
  Runtime session), refusing one whose source files changed since (the weights were
  replaced) or whose files no longer have their recorded hash.

Settings (read by ``detector.load_detector``):

- ``VITRINE_BACKEND``: ``torch``, ``openvino``, ``onnxruntime`` or ``auto`` (default): on
  the CPU, the first accepted export found in ``EXPORT_BACKENDS`` order (OpenVINO first:
  measured the fastest with equal detections), torch otherwise. Which is faster depends on
  the model and the CPU, so an export records its forward's speed against torch's per CPU
  (``measure_speed``, in the manifest's ``speed``) and ``auto`` leaves out one measured
  slower than torch on this CPU and tries the faster first when both are measured here
  (``auto_order``).
- ``VITRINE_PRECISION``: ``f32`` (default), or one of two separate, labelled fast options
  that move detections (see the README's bench): ``bf16``, or ``int8``. OpenVINO's CPU
  plugin picks bf16 by itself on a CPU that has it, so f32 is always requested explicitly.
  On a CPU without bf16 arithmetic (``cpu_has_bf16``) ``bf16`` runs f32, says so in the
  log, and the job records fp32: emulated bf16 would be slower than f32 and still move the
  detections. ``int8`` runs an int8 OpenVINO export (``export_model --precision int8``:
  NNCF's post-training quantization, calibrated on images), its convolutions and matmuls in
  int8 (VNNI) and the rest in bf16 where the CPU has it, else f32; nothing else runs int8,
  so without that export the model does not load (no silent f32).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from playground.runtime.allocator import cpu_identity, cpuinfo_fields
from playground.runtime.env import CHOICES, env_choice
from playground.runtime.errors import DetectorRuntimeError

logger = logging.getLogger(__name__)

BACKEND_ENV = "VITRINE_BACKEND"
BACKENDS = CHOICES[BACKEND_ENV]
# The backends that run an export, in the order ``auto`` tries them: fastest first, as the
# bench measured on DETR-R50 (bench/bench_detector.py: OpenVINO f32 ahead of ONNX Runtime).
EXPORT_BACKENDS = ("openvino", "onnxruntime")
BACKEND_NAMES = {"openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}
PACKAGES = {"openvino": "openvino", "onnxruntime": "onnxruntime"}
DEFAULT_BACKEND = "auto"
PRECISION_ENV = "VITRINE_PRECISION"
PRECISIONS = CHOICES[PRECISION_ENV]
DEFAULT_PRECISION = "f32"
EXPORTS_DIR_ENV = "VITRINE_EXPORTS_DIR"

EXPORT_DIRNAME = "openvino"
MANIFEST = "export.json"
IR_XML = "model.xml"
IR_BIN = "model.bin"
ONNX_FILE = "model.onnx"
# What an export of each backend is made of (hashed into the manifest), in its own folder.
EXPORT_FILES = {"openvino": (IR_XML, IR_BIN), "onnxruntime": (ONNX_FILE,)}
EXPORT_DIRNAMES = {"openvino": EXPORT_DIRNAME, "onnxruntime": "onnxruntime"}
# The int8 export lives beside the f32 one: both can be kept and chosen by VITRINE_PRECISION.
INT8_DIRNAME = "openvino-int8"
# What the int8 quantization covers: NNCF's transformer preset (softmax, norms and the
# attention's activation-by-activation matmuls stay in float; the default) or its default
# preset, which also quantizes those and the residual adds: faster (277 vs 361 ms per DETR
# forward, measured on the Zen 4 EPYC) and its outputs move further (logits 2.2 vs 1.3).
INT8_SCOPES = ("transformer", "all")
# Calibration images for int8 (NNCF's statistics); more is steadier and slower (~2-3 s per
# image at 800 px on 2 cores).
CALIBRATION_LIMIT = 50
# The ONNX opset: 17 has LayerNormalization; every family exports with it.
ONNX_OPSET = 17
FORMAT_VERSION = 1

# Acceptance of an export, on raw outputs (queries matched, see compare_outputs):
# - logits within 2e-4: a softmax or sigmoid probability moves by at most half the logit
#   change, so scores stay within the fidelity tests' 1e-4;
# - boxes (normalised cx, cy, w, h) within 1e-4: 0.13 px on a 1333 px side, well inside
#   the fidelity tests' 1 px.
# Measured: 5e-5 to 7e-5 logits and < 1e-6 boxes on DETR (f32, LATENCY hint).
LOGIT_TOLERANCE = 2e-4
BOX_TOLERANCE = 1e-4

# Files of a checkpoint whose content the export depends on.
SOURCE_FILES = ("config.json", "model.safetensors", "pytorch_model.bin")
# Allocators that crash OpenVINO's compile_model when preloaded (free(): invalid pointer).
CONFLICTING_PRELOADS = ("tcmalloc", "jemalloc")

# ``auto`` leaves out an export whose forward was measured slower than torch's on this CPU
# (below 1.0x: the median of the check images' ratios). Measured on a Zen 3 EPYC: DETR-R50's
# OpenVINO f32 forward at 1.27x torch's (batch norms folded), YOLOS tiny's within ~15% of
# torch either way (slower at 512x768, faster at 512x512). A measurement is kept per CPU
# (``cpu_identity``): another CPU's says nothing about this one.
AUTO_MIN_SPEEDUP = 1.0

NOT_INSTALLED_MESSAGE = "{name} is not installed (pip install {package})."
NO_EXPORT_MESSAGE = (
    "No {name} export of {label} at {path}: run `manage.py export_model <model id>{flag}`."
)
STALE_EXPORT_MESSAGE = (
    "The {backend} export at {path} was made from other files than {label}'s ({name} "
    "changed): export it again."
)
TAMPERED_EXPORT_MESSAGE = (
    "The {backend} export at {path} does not match its manifest ({name} changed): export it again."
)
UNLOADABLE_EXPORT_MESSAGE = (
    "The {backend} export at {path} does not load ({error}): export it again."
)
F32_ONLY_MESSAGE = (
    "ONNX Runtime runs f32 only here: VITRINE_PRECISION=bf16 is an OpenVINO or torch option."
)
PRELOAD_MESSAGE = (
    "OpenVINO crashes with {preload} preloaded (LD_PRELOAD): unset it or use VITRINE_BACKEND=torch."
)
CPU_ONLY_MESSAGE = "The {name} backend runs on the CPU; this detector is on {device}."
SLOWER_MESSAGE = (
    "The {name} export at {path} ran its forward at {x:.2f}x torch's speed on this CPU "
    "({cpu}, measured {measured}): auto leaves it out (`manage.py export_model <model id> "
    "--check` measures again; VITRINE_BACKEND={backend} runs it anyway)."
)
INT8_OPENVINO_ONLY_MESSAGE = (
    "VITRINE_PRECISION=int8 runs an int8 OpenVINO export only, not {name}: use "
    "VITRINE_BACKEND=openvino or auto."
)
NO_INT8_EXPORT_MESSAGE = (
    "No int8 OpenVINO export of {label} at {path}: run `manage.py export_model <model id> "
    "--precision int8` (VITRINE_PRECISION=int8 runs nothing else)."
)
OPENVINO_NO_BF16_LOG = (
    "%s: bf16 asked for, but OpenVINO's CPU plugin compiled %s on this CPU: running that"
)
NOT_INT8_MESSAGE = "The export at {path} is not an int8 export (its manifest says {precision})."
QUANTIZER_MESSAGE = "An int8 export needs NNCF (pip install nncf)."
NOT_FINITE_MESSAGE = "The int8 export gives non-finite outputs on the check images. Not written."
REFUSED_MESSAGE = (
    "The export differs from torch beyond the tolerance: logits {logits:.2e} "
    "(tolerance {logit_tol:.0e}), boxes {boxes:.2e} (tolerance {box_tol:.0e}), "
    "{unmatched} queries without a partner. Not written."
)


class BackendUnavailable(DetectorRuntimeError):
    """The requested backend cannot run this checkpoint here; ``message`` says why."""

    code = "backend_unavailable"


class ExportRefused(DetectorRuntimeError):
    """An export that differs from torch beyond the tolerance."""

    code = "export_refused"


def backend_setting() -> str:
    return env_choice(BACKEND_ENV, DEFAULT_BACKEND, BACKENDS)


def precision_setting() -> str:
    return env_choice(PRECISION_ENV, DEFAULT_PRECISION, PRECISIONS)


def int8_compute_precision() -> str:
    """What an int8 export computes in outside its int8 operations: bf16 on a CPU with bf16
    arithmetic (OpenVINO's own default there), else f32."""
    return "bf16" if cpu_has_bf16() else "f32"


def cpu_has_bf16() -> bool:
    """bf16 arithmetic in this CPU's hardware (AVX-512 BF16 or AMX). Without it torch and
    OpenVINO emulate bf16 through fp32, slower than fp32 itself (measured on an Ice Lake
    Xeon: a 4096 matmul at 59 GFLOP/s in torch and 6 in OpenVINO against 301 in fp32)."""
    flags = cpuinfo_fields().get("flags", "").split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def available(backend: str) -> bool:
    """Whether ``backend``'s package imports here (torch always does)."""
    if backend == "torch":
        return True
    import importlib

    try:
        importlib.import_module(PACKAGES[backend])
    except ImportError:
        return False
    return True


def openvino_available() -> bool:
    return available("openvino")


def no_export_message(backend: str, *, label: str, path: Any) -> str:
    flag = "" if backend == "openvino" else f" --backend {backend}"
    return NO_EXPORT_MESSAGE.format(name=BACKEND_NAMES[backend], label=label, path=path, flag=flag)


def not_installed_message(backend: str) -> str:
    return NOT_INSTALLED_MESSAGE.format(name=BACKEND_NAMES[backend], package=PACKAGES[backend])


def conflicting_preload() -> str | None:
    """The preloaded allocator OpenVINO cannot live with, if any."""
    preload = os.environ.get("LD_PRELOAD", "")
    for name in CONFLICTING_PRELOADS:
        if name in preload:
            return name
    return None


def export_dir(
    *,
    source_path: str | Path,
    is_local: bool,
    repo: str = "",
    revision: str = "",
    backend: str = "openvino",
    int8: bool = False,
) -> Path:
    """Where a checkpoint's export for ``backend`` lives (``int8``: the int8 OpenVINO one).

    Next to the weights (``<checkpoint dir>/openvino``, ``.../onnxruntime``,
    ``.../openvino-int8``) when they are a folder of ours; for a checkpoint in the Hugging
    Face cache, ``$VITRINE_EXPORTS_DIR`` (default ``var/exports`` of the checkout)
    ``/<org>/<name>/<revision>/<backend>``.
    """
    dirname = INT8_DIRNAME if int8 else EXPORT_DIRNAMES[backend]
    if is_local:
        return Path(source_path) / dirname
    root = os.environ.get(EXPORTS_DIR_ENV, "").strip()
    base = Path(root) if root else Path(__file__).resolve().parents[2] / "var" / "exports"
    org, name = repo.split("/", 1)
    return base / org / name / (revision or "main").replace("/", "--") / dirname


def source_fingerprint(folder: str | Path) -> dict[str, str]:
    """sha256 of each file of the checkpoint that the export is made from."""
    folder = Path(folder)
    return {name: _sha256(folder / name) for name in SOURCE_FILES if (folder / name).is_file()}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_inputs(model: torch.nn.Module) -> tuple[str, ...]:
    """The preprocessed tensors the model's forward uses: DETR and Conditional DETR take the
    pixel mask, RT-DETR and YOLOS do not (YOLOS's processor makes one; its forward drops it)."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return ("pixel_values", "pixel_mask") if "pixel_mask" in params else ("pixel_values",)


class _RawOutputs(torch.nn.Module):
    """The detector's forward as a graph: tensors in, (logits, pred_boxes) out."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None):
        kwargs = {} if pixel_mask is None else {"pixel_mask": pixel_mask}
        outputs = self.model(pixel_values=pixel_values, **kwargs)
        return outputs.logits, outputs.pred_boxes


@dataclass
class Comparison:
    """How far one backend's raw outputs are from torch's, over all checked images."""

    logits: float = 0.0
    boxes: float = 0.0
    unmatched: int = 0
    permuted: int = 0
    images: int = 0
    nonfinite: int = 0

    def within(self, logit_tol: float, box_tol: float) -> bool:
        return (
            self.nonfinite == 0
            and self.unmatched == 0
            and self.logits <= logit_tol
            and self.boxes <= box_tol
        )

    def add(self, other: Comparison) -> None:
        self.logits = max(self.logits, other.logits)
        self.boxes = max(self.boxes, other.boxes)
        self.unmatched += other.unmatched
        self.permuted += other.permuted
        self.images += other.images
        self.nonfinite += other.nonfinite

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_logit_difference": self.logits,
            "max_box_difference": self.boxes,
            "unmatched_queries": self.unmatched,
            "permuted_queries": self.permuted,
            "images": self.images,
            "nonfinite_values": self.nonfinite,
        }


def compare_outputs(
    reference: dict[str, torch.Tensor],
    got: dict[str, torch.Tensor],
    *,
    logit_tol: float = LOGIT_TOLERANCE,
    box_tol: float = BOX_TOLERANCE,
) -> Comparison:
    """Max |difference| of logits and boxes, query by query.

    RT-DETR picks its 300 queries by a top-k over encoder scores; two runtimes' last-bit
    differences can order near-equal scores differently. The decoder treats queries as a set
    (the same query gives the same output wherever it sits) and post-processing ranks by
    score, so the order carries no meaning: rows that differ in place are matched to their
    nearest partner, and a row with no partner within the tolerance counts as unmatched.
    """
    result = Comparison()
    ref_rows = torch.cat([reference["logits"], reference["pred_boxes"]], -1).float()
    got_rows = torch.cat([got["logits"], got["pred_boxes"]], -1).float()
    result.nonfinite = int((~torch.isfinite(got_rows)).sum())
    classes = reference["logits"].shape[-1]
    for ref, mine in zip(ref_rows, got_rows, strict=True):
        result.images += 1
        diff = (ref - mine).abs()
        in_place = (diff[:, :classes].amax(-1) <= logit_tol) & (
            diff[:, classes:].amax(-1) <= box_tol
        )
        good = diff[in_place]
        if good.numel():
            result.logits = max(result.logits, good[:, :classes].max().item())
            result.boxes = max(result.boxes, good[:, classes:].max().item())
        moved = (~in_place).nonzero().flatten().tolist()
        if not moved:
            continue
        free = set(moved)
        for row in moved:
            best, best_diff = None, None
            for other in free:
                d = (ref[other] - mine[row]).abs()
                if best_diff is None or d.max() < best_diff.max():
                    best, best_diff = other, d
            if best is None:
                result.unmatched += 1
                continue
            logit_d, box_d = best_diff[:classes].max().item(), best_diff[classes:].max().item()
            if logit_d <= logit_tol and box_d <= box_tol:
                free.discard(best)
                result.permuted += 1
                result.logits = max(result.logits, logit_d)
                result.boxes = max(result.boxes, box_d)
            else:
                result.unmatched += 1
                result.logits = max(result.logits, logit_d)
                result.boxes = max(result.boxes, box_d)
    return result


class OpenVinoForward:
    """A compiled OpenVINO model called like the torch forward: tensors in, raw outputs out."""

    backend = "openvino"

    def __init__(self, compiled: Any, *, path: Path, precision: str, manifest: dict) -> None:
        self.compiled = compiled
        self.path = path
        self.precision = precision
        self.manifest = manifest
        self.input_names = [port.get_any_name() for port in compiled.inputs]
        self._request = compiled.create_infer_request()
        # One infer request, reused (its buffers are allocated once): one call at a time.
        self._lock = threading.Lock()

    def __call__(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feed = {name: inputs[name].numpy() for name in self.input_names}
        with self._lock:
            self._request.infer(feed)
            # Copies: the request's output buffers are reused by the next call.
            logits = torch.from_numpy(self._request.get_output_tensor(0).data.copy())
            boxes = torch.from_numpy(self._request.get_output_tensor(1).data.copy())
        return {"logits": logits.float(), "pred_boxes": boxes.float()}


class OnnxRuntimeForward:
    """An ONNX Runtime session called like the torch forward: tensors in, raw outputs out."""

    backend = "onnxruntime"

    def __init__(self, session: Any, *, path: Path, precision: str, manifest: dict) -> None:
        self.session = session
        self.path = path
        self.precision = precision
        self.manifest = manifest
        self.input_names = [port.name for port in session.get_inputs()]

    def __call__(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feed = {name: inputs[name].numpy() for name in self.input_names}
        # run() is thread-safe and returns fresh arrays.
        logits, boxes = self.session.run(["logits", "pred_boxes"], feed)
        return {
            "logits": torch.from_numpy(logits).float(),
            "pred_boxes": torch.from_numpy(boxes).float(),
        }


def session_options(*, threads: int | None) -> Any:
    """ONNX Runtime CPU settings: all graph optimisations, ``threads`` intra-op threads
    (default: one per core), one operator at a time (the graph is a chain), no spinning."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.log_severity_level = 3  # errors only: its warnings are about unused initialisers
    # Its threads would otherwise spin for a while after each run, taking the cores from the
    # pre- and post-processing of the next image (and from the web process beside it).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def compile_config(*, precision: str, threads: int | None) -> dict[str, Any]:
    """CPU plugin settings: LATENCY (one request at a time, all threads on it), the precision
    asked for (f32 explicitly: the default on a bf16 CPU is bf16; for an int8 export, what
    its other operations compute in), and the thread count."""
    config: dict[str, Any] = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": int8_compute_precision() if precision == "int8" else precision,
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


def read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def write_manifest(folder: Path, manifest: dict) -> None:
    """Write ``export.json`` whole: a worker reading it sees the old one or the new one."""
    staging = Path(folder) / f".{MANIFEST}.{os.getpid()}"
    staging.write_text(json.dumps(manifest, indent=2) + "\n")
    staging.replace(Path(folder) / MANIFEST)


def load_export(
    backend: str,
    folder: Path,
    *,
    source_path: str | Path,
    label: str,
    precision: str = DEFAULT_PRECISION,
    threads: int | None = None,
    check_hashes: bool = True,
) -> OpenVinoForward | OnnxRuntimeForward:
    """Load the accepted ``backend`` export in ``folder``; BackendUnavailable says why it
    cannot be used."""
    name = BACKEND_NAMES[backend]
    if not available(backend):
        raise BackendUnavailable(not_installed_message(backend))
    if backend == "openvino":
        preload = conflicting_preload()
        if preload:
            raise BackendUnavailable(PRELOAD_MESSAGE.format(preload=preload))
    if precision == "int8" and backend != "openvino":
        raise BackendUnavailable(INT8_OPENVINO_ONLY_MESSAGE.format(name=name))
    if backend == "onnxruntime" and precision != "f32":
        raise BackendUnavailable(F32_ONLY_MESSAGE)
    manifest = read_manifest(folder)
    if manifest is None and not check_hashes:
        # The export being checked, before its manifest is written.
        manifest = {"precision": precision} if precision == "int8" else {}
    if manifest is None or not (folder / EXPORT_FILES[backend][0]).is_file():
        if precision == "int8":
            raise BackendUnavailable(NO_INT8_EXPORT_MESSAGE.format(label=label, path=folder))
        raise BackendUnavailable(no_export_message(backend, label=label, path=folder))
    made_for = manifest.get("precision", "f32")
    if (made_for == "int8") != (precision == "int8"):
        raise BackendUnavailable(NOT_INT8_MESSAGE.format(path=folder, precision=made_for))
    if check_hashes:
        current = source_fingerprint(source_path)
        recorded = manifest.get("source", {}).get("files", {})
        for file in sorted(set(current) | set(recorded)):
            if current.get(file) != recorded.get(file):
                raise BackendUnavailable(
                    STALE_EXPORT_MESSAGE.format(backend=name, path=folder, label=label, name=file)
                )
        for file, digest in manifest.get("ir", {}).items():
            if not (folder / file).is_file() or _sha256(folder / file) != digest:
                raise BackendUnavailable(
                    TAMPERED_EXPORT_MESSAGE.format(backend=name, path=folder, name=file)
                )
    try:
        return _open_export(backend, folder, manifest, precision=precision, threads=threads)
    except Exception as exc:  # the runtime's own error for a file it cannot read or compile
        error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BackendUnavailable(
            UNLOADABLE_EXPORT_MESSAGE.format(backend=name, path=folder, error=error)
        ) from exc


def _open_export(
    backend: str, folder: Path, manifest: dict, *, precision: str, threads: int | None
) -> OpenVinoForward | OnnxRuntimeForward:
    if backend == "onnxruntime":
        import onnxruntime as ort

        session = ort.InferenceSession(
            str(folder / ONNX_FILE),
            session_options(threads=threads),
            providers=["CPUExecutionProvider"],
        )
        return OnnxRuntimeForward(session, path=folder, precision=precision, manifest=manifest)
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        str(folder / IR_XML), "CPU", compile_config(precision=precision, threads=threads)
    )
    if precision == "bf16":
        # The CPU plugin takes the hint only where it can run bf16 (on an AVX2-only CPU it
        # compiles f32 and says so in the property): the job records what runs.
        runs = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if runs != "bf16":
            logger.warning(OPENVINO_NO_BF16_LOG, folder, runs)
            precision = runs
    return OpenVinoForward(compiled, path=folder, precision=precision, manifest=manifest)


def load_openvino(folder: Path, **kwargs: Any) -> OpenVinoForward:
    """``load_export("openvino", ...)``."""
    return load_export("openvino", folder, **kwargs)


def versions(backend: str = "openvino", *, int8: bool = False) -> dict[str, str]:
    """The versions of what made an export (recorded in its manifest)."""
    import transformers

    found = {"torch": torch.__version__, "transformers": transformers.__version__}
    if backend == "openvino":
        import openvino as ov

        found["openvino"] = ov.get_version()
        if int8:
            import nncf

            found["nncf"] = nncf.__version__
    else:
        import onnx
        import onnxruntime as ort

        found.update(
            onnx=onnx.__version__,
            onnxruntime=ort.__version__,
            exporter="torch.onnx.export (TorchScript)",
            opset=str(ONNX_OPSET),
        )
    return found


def _convert_openvino(wrapper: torch.nn.Module, example: dict, names: tuple, staging: Path):
    import openvino as ov
    from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder

    ports = [("pixel_values", ov.PartialShape([-1, 3, -1, -1]), ov.Type.f32)]
    if "pixel_mask" in names:
        ports.append(("pixel_mask", ov.PartialShape([-1, -1, -1]), ov.Type.i64))
    with torch.no_grad():
        # What convert_model builds from a module, less torch.jit.trace's own check (it
        # runs the model twice more on the example to compare the trace with itself: a
        # third of DETR's conversion); the check below compares the compiled export
        # with torch on three images of other shapes, which that check cannot.
        decoder = TorchScriptPythonDecoder(
            wrapper, example_input=example, trace_kwargs={"check_trace": False}
        )
        converted = ov.convert_model(decoder, input=ports)
    for port, name in zip(converted.outputs, ("logits", "pred_boxes"), strict=True):
        port.get_tensor().set_names({name})
    # compress_to_fp16 defaults to True: the weights would be rounded to fp16.
    ov.save_model(converted, str(staging / IR_XML), compress_to_fp16=False)


def quantizer_available() -> bool:
    try:
        import nncf  # noqa: F401
    except ImportError:
        return False
    return True


def _quantize_openvino(
    staging: Path,
    names: tuple,
    calibration: list[dict[str, torch.Tensor]],
    scope: str = "transformer",
) -> dict:
    """Replace the f32 IR in ``staging`` by NNCF's post-training int8 quantization of it:
    statistics from ``calibration`` (preprocessed images); ``scope`` (``INT8_SCOPES``):
    ``transformer`` (softmax, layer norms and the attention's matmuls of two activations stay
    in float; SmoothQuant on the linear layers) or ``all`` (NNCF's default preset)."""
    import nncf
    import openvino as ov

    # Its INFO lines name every operation it leaves in float (hundreds for DETR).
    nncf.set_log_level(logging.WARNING)
    model = ov.Core().read_model(str(staging / IR_XML))
    samples = [{name: inputs[name].numpy() for name in names} for inputs in calibration]
    began = time.perf_counter()
    preset = {"model_type": nncf.ModelType.TRANSFORMER} if scope == "transformer" else {}
    quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples), **preset)
    # Written beside, then moved over the f32 IR: the model read above maps model.bin, and
    # writing into a mapped file kills the process (SIGBUS).
    ov.save_model(quantized, str(staging / "int8.xml"), compress_to_fp16=False)
    del model, quantized
    os.replace(staging / "int8.xml", staging / IR_XML)
    os.replace(staging / "int8.bin", staging / IR_BIN)
    return {
        "tool": f"NNCF {nncf.__version__} post-training quantization",
        "scope": scope,
        "calibration_images": len(samples),
        "seconds": round(time.perf_counter() - began, 1),
    }


def _convert_onnx(wrapper: torch.nn.Module, example: dict, names: tuple, staging: Path):
    import warnings

    axes = {"pixel_values": {0: "batch", 2: "height", 3: "width"}}
    if "pixel_mask" in names:
        axes["pixel_mask"] = {0: "batch", 1: "height", 2: "width"}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer's warnings about Python booleans from shapes: the check on three
        # aspect ratios below is what proves the graph generalises.
        warnings.simplefilter("ignore")
        # The TorchScript exporter: the dynamo one needs onnxscript and took minutes here.
        torch.onnx.export(
            wrapper,
            tuple(example[name] for name in names),
            str(staging / ONNX_FILE),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=list(names),
            output_names=["logits", "pred_boxes"],
            dynamic_axes=axes,
        )


def export_backend(
    detector: Any,
    folder: Path,
    *,
    backend: str = "openvino",
    source_path: str | Path,
    source: dict[str, str],
    check_inputs: list[dict[str, torch.Tensor]],
    logit_tol: float = LOGIT_TOLERANCE,
    box_tol: float = BOX_TOLERANCE,
    threads: int | None = None,
    log: Any = None,
    precision: str = "f32",
    calibration_inputs: list[dict[str, torch.Tensor]] | None = None,
    calibration: dict[str, Any] | None = None,
    int8_scope: str = "transformer",
) -> dict:
    """Convert ``detector``'s torch model for ``backend`` (OpenVINO IR or ONNX), check it
    against torch on ``check_inputs`` (preprocessed by the detector's processor) and write it
    to ``folder`` with its manifest. Raises ExportRefused (nothing written) beyond the
    tolerance.

    ``precision="int8"`` (OpenVINO only): the IR is then quantized by NNCF with statistics
    from ``calibration_inputs`` (``calibration`` describes them for the manifest). An int8
    export is the labelled fast variant: its differences from torch are measured and
    recorded, not held to the f32 tolerance; one that gives non-finite outputs is refused.

    Shapes are dynamic (batch, height, width): one export serves every image size.
    """
    if backend not in EXPORT_BACKENDS:
        raise ValueError(f"backend must be one of {EXPORT_BACKENDS}, got {backend!r}")
    if not available(backend):
        raise BackendUnavailable(not_installed_message(backend))
    int8 = precision == "int8"
    if int8 and backend != "openvino":
        raise BackendUnavailable(INT8_OPENVINO_ONLY_MESSAGE.format(name=BACKEND_NAMES[backend]))
    if int8 and not quantizer_available():
        raise BackendUnavailable(QUANTIZER_MESSAGE)
    if int8 and not calibration_inputs:
        raise ValueError("an int8 export needs calibration_inputs")
    if int8_scope not in INT8_SCOPES:
        raise ValueError(f"int8_scope must be one of {INT8_SCOPES}, got {int8_scope!r}")
    say = log or (lambda message: logger.info("%s", message))
    model = detector.model
    # What the forward takes and the processor gives (RT-DETR's forward takes a mask that its
    # processor does not make).
    names = tuple(name for name in model_inputs(model) if name in check_inputs[0])
    example = {name: check_inputs[0][name] for name in names}
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{backend}-", dir=folder.parent))
    try:
        began = time.perf_counter()
        wrapper = _RawOutputs(model).eval()
        # The contiguous layout: tracing a channels_last model bakes its strides into the
        # graph for nothing (both runtimes pick their own layouts).
        model.to(memory_format=torch.contiguous_format)
        try:
            convert = _convert_openvino if backend == "openvino" else _convert_onnx
            convert(wrapper, example, names, staging)
        finally:
            if detector.channels_last:
                model.to(memory_format=torch.channels_last)
        converted_s = time.perf_counter() - began
        made_by = versions(backend, int8=int8)
        say(
            f"converted in {converted_s:.1f}s ("
            + ", ".join(f"{k} {v}" for k, v in made_by.items() if k in ("openvino", "onnx"))
            + ")"
        )
        quantization = None
        if int8:
            quantization = {
                **_quantize_openvino(staging, names, calibration_inputs, int8_scope),
                **(calibration or {}),
            }
            say(
                f"quantized to int8 ({int8_scope} scope) in {quantization['seconds']:.1f}s on "
                f"{quantization['calibration_images']} calibration images (nncf "
                f"{made_by['nncf']})"
            )
        forward = load_export(
            backend,
            staging,
            source_path=source_path,
            label="the new export",
            precision=precision,
            threads=threads,
            check_hashes=False,
        )
        comparison = check_export(
            detector, forward, check_inputs, logit_tol=logit_tol, box_tol=box_tol
        )
        if int8:
            held = ("int8: recorded, not held to the f32 tolerance",) * 2
        else:
            held = (f"tolerance {logit_tol:.0e}", f"tolerance {box_tol:.0e}")
        say(
            f"checked on {comparison.images} images: max |logit difference| "
            f"{comparison.logits:.2e} ({held[0]}), max |box difference| "
            f"{comparison.boxes:.2e} ({held[1]}), queries reordered "
            f"{comparison.permuted}, without a partner {comparison.unmatched}"
        )
        if comparison.nonfinite:
            raise ExportRefused(NOT_FINITE_MESSAGE)
        if not int8 and not comparison.within(logit_tol, box_tol):
            raise ExportRefused(
                REFUSED_MESSAGE.format(
                    logits=comparison.logits,
                    boxes=comparison.boxes,
                    logit_tol=logit_tol,
                    box_tol=box_tol,
                    unmatched=comparison.unmatched,
                )
            )
        manifest = {
            "format": FORMAT_VERSION,
            "backend": backend,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "exporter": made_by,
            "source": {**source, "files": source_fingerprint(source_path)},
            "model_type": model.config.model_type,
            "inputs": list(names),
            "dynamic_shapes": True,
            "conversion_seconds": round(converted_s, 1),
            "precision": precision,
            "check": {
                **comparison.as_dict(),
                # An int8 export's differences are recorded, not held to a tolerance.
                "logit_tolerance": None if int8 else logit_tol,
                "box_tolerance": None if int8 else box_tol,
                "precision": precision,
            },
            "ir": {name: _sha256(staging / name) for name in EXPORT_FILES[backend]},
        }
        # Timed after the check (both warm): what auto weighs on this CPU.
        speed = measure_speed(detector, forward, check_inputs)
        say(speed_line(speed))
        manifest["speed"] = {cpu_identity(): speed}
        if quantization is not None:
            # The rest of the graph ran in this precision during the check (the CPU's).
            manifest["quantization"] = {**quantization, "other_ops": int8_compute_precision()}
        write_manifest(staging, manifest)
        del forward  # the session or compiled model holds the files open
        if folder.exists():
            shutil.rmtree(folder)
        staging.chmod(0o755)  # mkdtemp's 0700 would hide it from a worker of another user
        staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return manifest


def export_openvino(detector: Any, folder: Path, **kwargs: Any) -> dict:
    """``export_backend(..., backend="openvino")``."""
    return export_backend(detector, folder, backend="openvino", **kwargs)


def measure_speed(
    detector: Any,
    forward: OpenVinoForward | OnnxRuntimeForward,
    inputs: list[dict[str, torch.Tensor]],
) -> dict[str, Any]:
    """The export's forward timed against the detector's torch forward on ``inputs``, each
    already run once by both (warm, every shape seen), interleaved per image and
    alternating which goes first. ``x_torch``: the export's speed as a multiple of torch's
    (the median of the per-image ratios; above 1 the export is faster)."""
    torch_s: list[float] = []
    export_s: list[float] = []
    for i, item in enumerate(inputs):
        runs = [(torch_s, detector.torch_forward), (export_s, forward)]
        for times, run in reversed(runs) if i % 2 else runs:
            began = time.perf_counter()
            run(item)
            times.append(time.perf_counter() - began)
    ratios = [t / e for t, e in zip(torch_s, export_s, strict=True)]
    return {
        "x_torch": round(statistics.median(ratios), 3),
        "torch_forward_ms": round(statistics.median(torch_s) * 1000, 1),
        "export_forward_ms": round(statistics.median(export_s) * 1000, 1),
        "images": len(inputs),
        "threads": torch.get_num_threads(),
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def speed_line(speed: dict[str, Any]) -> str:
    return (
        f"forward {speed['export_forward_ms']:,.1f} ms against torch's "
        f"{speed['torch_forward_ms']:,.1f} ms on this CPU ({cpu_identity()}, "
        f"{speed['threads']} threads): {speed['x_torch']:.2f}x torch"
    )


def measured_speed(manifest: dict | None) -> dict[str, Any] | None:
    """This CPU's measurement in an export's manifest (None: not measured on this CPU)."""
    return ((manifest or {}).get("speed") or {}).get(cpu_identity())


def record_speed(folder: Path, speed: dict[str, Any]) -> None:
    """Keep ``speed`` as this CPU's measurement in the export's manifest (others' stay)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        return
    manifest["speed"] = {**(manifest.get("speed") or {}), cpu_identity(): speed}
    write_manifest(folder, manifest)


def auto_order(folders: dict[str, Path]) -> tuple[list[str], list[str]]:
    """The backends ``auto`` tries, in order, among ``folders`` (backend -> its export
    folder, in ``EXPORT_BACKENDS`` order), and why any are left out: an export measured
    slower than torch on this CPU goes; when every one left was measured on this CPU, the
    faster goes first; otherwise the default order holds (a missing export is tried, and
    says so, as before)."""
    speeds = {name: measured_speed(read_manifest(Path(f))) or {} for name, f in folders.items()}
    order, reasons = [], []
    for name, folder in folders.items():
        x = speeds[name].get("x_torch")
        if x is not None and x < AUTO_MIN_SPEEDUP:
            reasons.append(
                SLOWER_MESSAGE.format(
                    name=BACKEND_NAMES[name],
                    path=folder,
                    x=x,
                    cpu=cpu_identity(),
                    measured=speeds[name].get("measured", "?"),
                    backend=name,
                )
            )
            continue
        order.append(name)
    if all("x_torch" in speeds[name] for name in order):
        order.sort(key=lambda name: -speeds[name]["x_torch"])  # stable: ties keep the order
    return order, reasons


def check_export(
    detector: Any,
    forward: OpenVinoForward | OnnxRuntimeForward,
    check_inputs: list[dict[str, torch.Tensor]],
    *,
    logit_tol: float = LOGIT_TOLERANCE,
    box_tol: float = BOX_TOLERANCE,
) -> Comparison:
    """Compare ``forward`` with the detector's torch forward on each of ``check_inputs``."""
    total = Comparison()
    for inputs in check_inputs:
        reference = detector.torch_forward(inputs)
        got = forward(inputs)
        total.add(compare_outputs(reference, got, logit_tol=logit_tol, box_tol=box_tol))
    return total
