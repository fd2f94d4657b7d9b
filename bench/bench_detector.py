"""One bench for the detector's speed: each backend and precision against the naive pipeline.

    .venv/bin/python bench/bench_detector.py --readme             # the README's DETR-R50 table
    .venv/bin/python bench/bench_detector.py                      # DETR-R50, RT-DETR, YOLOS tiny
    .venv/bin/python bench/bench_detector.py --families yolos_tiny --limit 2 --rounds 1  # short
    .venv/bin/python bench/bench_detector.py --allocators         # malloc/tcmalloc/jemalloc, torch
    .venv/bin/python bench/bench_detector.py --families detr,rt_detr \
        --backends torch,torch-unfolded --precisions f32          # batch norms folded or not
        --backends torch,torch-unfused --precisions f32,bf16      # layers fused or not

For each family a random-weight checkpoint with the published architecture and image size
is built (DETR-R50 with the native ResNet-50 from its config: the compute of the real
weights), exported to OpenVINO (checked against torch, as ``manage.py export_model`` does),
and timed from the image file's bytes to detections, batch 1, in interleaved rounds against
``transformers.pipeline("object-detection")``. Images: COCO val2017 from
``--images`` (default ../shared/testdata/coco-mini/val2017 when present, never copied), or
generated ones.

Printed and written to JSON (``--out``, default bench/results/detector.json): the CPU model,
a measured GEMM peak (4096x4096 matmul GFLOP/s, fp32 and bf16, best of torch's BLAS and
OpenVINO's oneDNN: on AMD CPUs torch's MKL matmul reaches a third of what oneDNN does, so
torch alone would put the "peak" far too low), measured again in every round between the
contenders, per contender images/s and the ratio to the pipeline, the forward's GFLOP/s and
its share of the peak of its precision measured in the same round (FLOPs counted by torch's
FlopCounterMode on the first image), the time outside the forward, and equality with the
pipeline:
at threshold 0.5 and at the worker's floor 0.05, detections paired by label and box with
boxes within 1 px and scores within 1e-4 ("equal"), the kept-set change and the worst box
and score moves (what a fast variant, bf16 or int8, must state). int8: an NNCF-quantized
OpenVINO export calibrated on images that are not among the measured ones.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from machine import cpu_model, cpu_signature  # noqa: E402  bench/machine.py (on the path)
from PIL import Image  # noqa: E402

from playground.runtime import CheckpointSpec, decode_image, load_detector  # noqa: E402
from playground.runtime.allocator import cpuinfo_fields  # noqa: E402
from playground.runtime.backends import (  # noqa: E402
    cpu_has_bf16,
    openvino_available,
    quantizer_available,
)
from playground.runtime.checkpoints import build_checkpoint  # noqa: E402

MAX_PIXELS = 50_000_000
DEFAULT_IMAGES = REPO.parent / "shared" / "testdata" / "coco-mini" / "val2017"
SYNTHETIC_SIZES = ((640, 480), (480, 640), (640, 427), (500, 375))
FLOOR = 0.05
# A contender name for --backends: the torch path with its batch norms left unfolded.
UNFOLDED = "torch-unfolded"
# And with its batch norms folded but its layers not fused with their activations.
UNFUSED = "torch-unfused"
KEPT = 0.5
SCORE_TOL = 1e-4
BOX_TOL = 1


def cpu_flags() -> list[str]:
    flags = cpuinfo_fields().get("flags", "").split()
    return [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni") if f in flags]


def gemm_peak(size: int, dtype: torch.dtype, repeats: int = 5) -> float:
    """Best GFLOP/s of a size x size torch matmul (2 n^3 FLOPs), on torch's threads (all
    cores unless --threads): MKL for fp32, oneDNN for bf16 in the CPU wheels."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best / 1e9


class OneDnnGemm:
    """The same matmul compiled by OpenVINO (oneDNN kernels), LATENCY hint, all threads.

    ``int8``: both operands through symmetric int8 FakeQuantize (as NNCF writes them), which
    OpenVINO runs as an int8 matmul (VNNI): the peak of the int8 export's arithmetic, in
    GOP/s."""

    def __init__(self, size: int, precision: str, threads: int | None) -> None:
        import openvino as ov
        from openvino import opset13 as ops

        rng = np.random.default_rng(0)
        a = ops.parameter([size, size], ov.Type.f32, name="a")
        hint = "f32" if precision == "int8" else precision
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.feed = {"a": rng.standard_normal((size, size), dtype=np.float32)}
        if precision == "int8":
            low, high = ops.constant(np.float32(-4.0)), ops.constant(np.float32(4 * 127 / 128))

            def quantized(x):
                return ops.fake_quantize(x, low, high, low, high, 256)

            weights = ops.constant(rng.uniform(-4, 4, (size, size)).astype(np.float32))
            model = ov.Model([ops.matmul(quantized(a), quantized(weights), False, True)], [a])
        else:
            b = ops.parameter([size, size], ov.Type.f32, name="b")
            model = ov.Model([ops.matmul(a, b, False, False)], [a, b])
            self.feed["b"] = rng.standard_normal((size, size), dtype=np.float32)
        self.request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
        self.flops = 2 * size**3
        self.request.infer(self.feed)

    def peak(self, repeats: int = 5) -> float:
        best = float("inf")
        for _ in range(repeats):
            began = time.perf_counter()
            self.request.infer(self.feed)
            best = min(best, time.perf_counter() - began)
        return self.flops / best / 1e9


class Peaks:
    """The fp32 and bf16 GEMM peaks: the best of torch's and OpenVINO's, measured once at the
    start (both libraries, printed) and then in every round with the faster library, so each
    round's forward is compared with the peak measured next to it on a loaded machine."""

    def __init__(self, size: int, threads: int | None, precisions: list[str]) -> None:
        self.size = size
        self.libraries: dict[str, dict[str, float]] = {}
        self.onednn: dict[str, OneDnnGemm] = {}
        dtypes = {"f32": torch.float32, "bf16": torch.bfloat16}
        for precision in precisions:
            # int8: OpenVINO's alone (the int8 export's library).
            found = {"torch": gemm_peak(size, dtypes[precision])} if precision in dtypes else {}
            if openvino_available():
                self.onednn[precision] = OneDnnGemm(size, precision, threads)
                found["openvino"] = self.onednn[precision].peak()
            self.libraries[precision] = found
        self.best_library = {p: max(found, key=found.get) for p, found in self.libraries.items()}
        self.rounds: dict[str, list[float]] = {p: [] for p in self.libraries}

    def start(self, precision: str) -> float:
        return max(self.libraries[precision].values())

    def measure(self, precision: str, repeats: int = 3) -> float:
        """The peak now, with the library that was faster at the start."""
        if self.best_library[precision] == "openvino":
            value = self.onednn[precision].peak(repeats)
        else:
            dtype = torch.float32 if precision == "f32" else torch.bfloat16
            value = gemm_peak(self.size, dtype, repeats)
        self.rounds[precision].append(value)
        return value


def synthetic_images(count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        width, height = SYNTHETIC_SIZES[i % len(SYNTHETIC_SIZES)]
        cells = rng.integers(0, 256, (height // 24 + 1, width // 24 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(cells).resize((width, height), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def load_images(args) -> tuple[list[bytes], str, list[bytes]]:
    """(measured images, where from, int8 calibration images): the calibration images are
    the next ones of the folder, never the measured ones (that would flatter int8)."""
    folder = args.images or (DEFAULT_IMAGES if DEFAULT_IMAGES.is_dir() else None)
    if folder and Path(folder).is_dir():
        paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".png"))
        if len(paths) > args.limit:
            measured = [p.read_bytes() for p in paths[: args.limit]]
            calibration = paths[args.limit : args.limit + args.calibration]
            return measured, str(folder), [p.read_bytes() for p in calibration]
    return (
        synthetic_images(args.limit, args.seed),
        "generated",
        synthetic_images(args.calibration, args.seed + 1),
    )


def clip(detections: list[dict], width: int, height: int) -> list[dict]:
    out = []
    for d in detections:
        box = {k: min(max(v, 0), width if k[0] == "x" else height) for k, v in d["box"].items()}
        out.append({**d, "box": box})
    return out


def equality(got: list[list[dict]], want: list[list[dict]], threshold: float) -> dict:
    """Pair each reference detection above ``threshold`` with the same-label detection of
    ``got`` with the nearest box; report how many pairs are equal (1 px, 1e-4), the kept-set
    change and the worst moves of paired detections."""
    equal = kept_want = kept_got = 0
    worst_box = worst_score = 0.0
    for mine, ref in zip(got, want, strict=True):
        mine = [d for d in mine if d["score"] > threshold]
        ref = [d for d in ref if d["score"] > threshold]
        kept_want += len(ref)
        kept_got += len(mine)
        free = list(mine)
        for d in sorted(ref, key=lambda d: -d["score"]):
            same = [c for c in free if c["label"] == d["label"]]
            if not same:
                continue
            partner = min(same, key=lambda c: _box_distance(c, d) + abs(c["score"] - d["score"]))
            free.remove(partner)
            box, score = _box_distance(partner, d), abs(partner["score"] - d["score"])
            worst_box, worst_score = max(worst_box, box), max(worst_score, score)
            equal += box <= BOX_TOL and score <= SCORE_TOL
    return {
        "threshold": threshold,
        "reference_kept": kept_want,
        "kept": kept_got,
        "equal": equal,
        "worst_box_px": worst_box,
        "worst_score": worst_score,
    }


def _box_distance(a: dict, b: dict) -> float:
    return max(abs(a["box"][k] - b["box"][k]) for k in a["box"])


def forward_flops(detector, image_bytes: bytes) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    inputs = detector.preprocess(decode_image(image_bytes, max_pixels=MAX_PIXELS).image)
    # FlopCounterMode's module tracker hooks tensors that require grad, which fails under
    # inference_mode: the weights stop requiring it (the detector never trains).
    detector.model.requires_grad_(False)
    counter = FlopCounterMode(display=False)
    with counter:
        detector.torch_forward(inputs)
    return float(counter.get_total_flops())


def run_family(
    family: str,
    args,
    images: list[bytes],
    folder: Path,
    peaks: Peaks,
    calibration: list[bytes],
) -> dict:
    from transformers import pipeline

    from playground.runtime.backends import EXPORT_BACKENDS, available

    checkpoint = build_checkpoint(family, folder / family, seed=args.seed)
    spec = CheckpointSpec(local_dir=str(checkpoint))
    export = {}
    backends = [b for b in args.backends.split(",") if b]
    precisions = [p for p in args.precisions.split(",") if p]
    for backend in [b for b in backends if b in EXPORT_BACKENDS]:
        if not available(backend):
            print(f"{family}: {backend} not installed, skipped")
            backends.remove(backend)
            continue
        from playground.runtime.export import export_checkpoint

        _, manifest = export_checkpoint(
            spec, backend=backend, log=lambda line, b=backend: print(f"{family} {b}: {line}")
        )
        export[backend] = {
            "conversion_s": manifest["conversion_seconds"],
            "check": manifest["check"],
            "speed": manifest["speed"],  # what auto weighs on this CPU (backends.auto_order)
        }
    int8_specs = {}  # contender name -> the checkpoint copy holding that int8 export
    if "int8" in precisions and "openvino" in backends:
        calibration_images = [decode_image(d, max_pixels=MAX_PIXELS).image for d in calibration]
        for scope in args.int8_scopes.split(","):
            name = "openvino int8" if scope == "transformer" else f"openvino int8-{scope}"
            copy = folder / f"{family}-int8-{scope}"
            shutil.copytree(checkpoint, copy, ignore=shutil.ignore_patterns("openvino*", "onnx*"))
            int8_specs[name] = CheckpointSpec(local_dir=str(copy))
            _, manifest = export_checkpoint(
                int8_specs[name],
                backend="openvino",
                precision="int8",
                calibration_images=calibration_images,
                calibration_source=f"{len(calibration)} images not among the measured ones",
                int8_scope=scope,
                log=lambda line, n=name: print(f"{family} {n}: {line}"),
            )
            export[name] = {
                "conversion_s": manifest["conversion_seconds"],
                "quantization": manifest["quantization"],
                "check": manifest["check"],
            }
    pipe = pipeline("object-detection", model=str(checkpoint), device="cpu")
    contenders = {}
    for backend in backends:
        for precision in precisions:
            if backend == UNFOLDED:
                # The torch path as it was before batch norms were folded (runtime/fold.py).
                if precision == "f32":
                    contenders[f"{UNFOLDED} f32"] = load_detector(
                        spec, device="cpu", backend="torch", fold_batch_norms=False
                    )
                continue
            if backend == UNFUSED:
                # The torch path before its layers were fused (runtime/fuse.py).
                if precision in ("f32", "bf16"):
                    contenders[f"{UNFUSED} {precision}"] = load_detector(
                        spec, device="cpu", backend="torch", precision=precision,
                        fuse_layers=False,
                    )  # fmt: skip
                continue
            if backend == "onnxruntime" and precision != "f32":
                continue  # ONNX Runtime's CPU provider runs these graphs in f32 only
            if precision == "int8":
                if backend == "openvino":  # the int8 export is OpenVINO's
                    for name, int8_spec in int8_specs.items():
                        contenders[name] = load_detector(
                            int8_spec, device="cpu", backend=backend, precision=precision
                        )
                continue
            contenders[f"{backend} {precision}"] = load_detector(
                spec, device="cpu", backend=backend, precision=precision
            )
    # Counted on the unfused model: torch's counter knows convolutions, not the fused calls
    # (runtime/fuse.py) that do the same work.
    flops = forward_flops(
        contenders.get(f"{UNFUSED} f32")
        or load_detector(spec, device="cpu", backend="torch", fuse_layers=False, warm_up=False),
        images[0],
    )
    sizes = [Image.open(io.BytesIO(d)).size for d in images]
    pipe(Image.open(io.BytesIO(images[0])), threshold=FLOOR)  # warm-up

    rates: dict[str, list[float]] = {"pipeline": []}
    forward_s: dict[str, list[float]] = {}
    shares: dict[str, list[float]] = {}
    outputs: dict[str, list[list[dict]]] = {}
    stages: dict[str, dict[str, list[float]]] = {}
    for name in contenders:
        rates[name], forward_s[name], shares[name] = [], [], []
        stages[name] = {"decode": [], "preprocess": [], "postprocess": []}
    for _ in range(args.rounds):  # interleaved: a noisy neighbour hurts every contender alike
        began = time.perf_counter()
        reference = [
            clip(pipe(Image.open(io.BytesIO(d)), threshold=FLOOR), *size)
            for d, size in zip(images, sizes, strict=True)
        ]
        rates["pipeline"].append(len(images) / (time.perf_counter() - began))
        for name, detector in contenders.items():
            precision = name.split()[-1].split("-")[0]  # "openvino int8-all": int8
            peak_before = peaks.measure(precision)
            began = time.perf_counter()
            decoded = []
            for d in images:
                started = time.perf_counter()
                decoded.append(decode_image(d, max_pixels=MAX_PIXELS))
                stages[name]["decode"].append(time.perf_counter() - started)
            results = detector.detect(decoded, threshold=FLOOR, batch_size=1)
            rates[name].append(len(images) / (time.perf_counter() - began))
            peak_after = peaks.measure(precision)
            seconds = statistics.mean(r.timings["forward"] for r in results)
            forward_s[name].append(seconds)
            # The share of the peak measured right before and after this contender's round.
            shares[name].append(flops / seconds / 1e9 / ((peak_before + peak_after) / 2))
            for stage in ("preprocess", "postprocess"):
                stages[name][stage].extend(r.timings[stage] for r in results)
            outputs[name] = [r.detections for r in results]
    naive = statistics.median(rates["pipeline"])
    rows = {"pipeline": {"images_per_s": naive, "ratio": 1.0, "spread": _spread(rates["pipeline"])}}
    for name in contenders:
        rate = statistics.median(rates[name])
        seconds = statistics.median(forward_s[name])
        per_round = [r / p for r, p in zip(rates[name], rates["pipeline"], strict=True)]
        rows[name] = {
            "images_per_s": rate,
            # Each round's ratio pairs neighbouring measurements (robust to a changing load).
            "ratio": statistics.median(per_round),
            "ratios_per_round": per_round,
            "spread": _spread(rates[name]),
            "forward_ms": seconds * 1000,
            "outside_forward_ms": 1000 / rate - seconds * 1000,
            "stage_ms": {k: 1000 * statistics.median(v) for k, v in stages[name].items()},
            "forward_gflops_per_s": flops / seconds / 1e9,
            "peak_share": statistics.median(shares[name]),
            "peak_shares_per_round": shares[name],
            "equality": [equality(outputs[name], reference, t) for t in (KEPT, FLOOR)],
        }
    return {
        "family": family,
        "input_sizes": sorted(set(sizes))[:4],
        "forward_gflops_per_image": flops / 1e9,
        "export": export,
        "rows": rows,
    }


def _spread(values: list[float]) -> list[float]:
    return [min(values), max(values)]


def print_family(result: dict) -> None:
    """``% peak``: of the GEMM peak of the row's precision (fp32, bf16, or int8 GOP/s), each
    measured in the same round as the forward (median over rounds)."""
    print(
        f"\n{result['family']}: {result['forward_gflops_per_image']:.1f} GFLOPs/image (first image)"
    )
    for backend, export in result["export"].items():
        check = export["check"]
        print(
            f"  {backend} export check: logits {check['max_logit_difference']:.1e}, boxes "
            f"{check['max_box_difference']:.1e}, {check['images']} images, converted in "
            f"{export['conversion_s']} s"
        )
    print(
        f"{'contender':16} {'img/s':>7} {'x naive':>8} {'fwd ms':>8} {'other ms':>8} "
        f"{'GFLOP/s':>8} {'% peak':>7}  equal@0.5 (kept)    worst box/score @0.5   "
        f"equal@0.05 (kept)"
    )
    for name, row in result["rows"].items():
        if name == "pipeline":
            print(f"{name:16} {row['images_per_s']:7.3f} {1.0:8.2f}")
            continue
        at_kept, at_floor = row["equality"]
        print(
            f"{name:16} {row['images_per_s']:7.3f} {row['ratio']:8.2f} {row['forward_ms']:8.0f} "
            f"{row['outside_forward_ms']:8.0f} "
            f"{row['forward_gflops_per_s']:8.1f} {100 * row['peak_share']:6.0f}%"
            f"  {at_kept['equal']:>4}/{at_kept['reference_kept']:<4}({at_kept['kept']:>4})"
            f"   {at_kept['worst_box_px']:6.1f} px {at_kept['worst_score']:.1e}"
            f"   {at_floor['equal']:>4}/{at_floor['reference_kept']:<4}({at_floor['kept']:>4})"
        )


def markdown_table(result: dict, machine: dict) -> str:
    """The README's table for one family."""
    lines = [
        f"| {result['family']} | img/s | x pipeline | forward | outside the forward "
        "| GFLOP/s (% of its peak) | equal at 0.5 (kept) | worst box / score at 0.5 "
        "| equal at 0.05 (kept) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in result["rows"].items():
        if name == "pipeline":
            lines.append(f"| pipeline | {row['images_per_s']:.3f} | 1.00 | | | | | | |")
            continue
        at_kept, at_floor = row["equality"]
        fast = "bf16" in name or "int8" in name
        label = f"{name} (fast, labelled)" if fast else name
        lines.append(
            f"| {label} | {row['images_per_s']:.3f} | {row['ratio']:.2f} "
            f"| {row['forward_ms']:,.0f} ms | {row['outside_forward_ms']:,.0f} ms "
            f"| {row['forward_gflops_per_s']:,.0f} ({100 * row['peak_share']:.0f}%) "
            f"| {at_kept['equal']}/{at_kept['reference_kept']} ({at_kept['kept']}) "
            f"| {at_kept['worst_box_px']:.0f} px / {at_kept['worst_score']:.1g} "
            f"| {at_floor['equal']}/{at_floor['reference_kept']} ({at_floor['kept']}) |"
        )
    peaks = machine["gemm_gflops"]
    lines.append("")
    lines.append(
        f"{machine['cpu']} ({machine.get('cpu_signature', '')}), {machine['cores']} threads; "
        f"GEMM {machine['gemm_size']} peak at the "
        f"start: fp32 {peaks['f32']['best']:,.0f} GFLOP/s (torch {peaks['f32']['torch']:,.0f}"
        + (f", OpenVINO {peaks['f32']['openvino']:,.0f}" if "openvino" in peaks["f32"] else "")
        + ")"
        + (f", bf16 {peaks['bf16']['best']:,.0f} GFLOP/s" if "bf16" in peaks else "")
        + (f", int8 {peaks['int8']['best']:,.0f} GOP/s (OpenVINO)" if "int8" in peaks else "")
        + f"; per round (median): fp32 {peaks['f32']['rounds_median']:,.0f}"
        + (f", bf16 {peaks['bf16']['rounds_median']:,.0f}" if "bf16" in peaks else "")
        + (f", int8 {peaks['int8']['rounds_median']:,.0f}" if "int8" in peaks else "")
        + ("." if "bf16" in peaks else "; no bf16 arithmetic on this CPU.")
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--readme",
        action="store_true",
        help="the README's run: DETR-R50, 3 COCO images, 3 rounds, every backend; markdown",
    )
    parser.add_argument(
        "--allocators",
        action="store_true",
        help="compare malloc/tcmalloc/jemalloc for the torch backend (see bench_allocators)",
    )
    parser.add_argument("--families", default="detr,rt_detr,yolos_tiny")
    parser.add_argument(
        "--backends",
        default="torch,openvino,onnxruntime",
        help=f"also {UNFOLDED} (the torch path without its batch norms folded) and "
        f"{UNFUSED} (without its layers fused with their activations): A/Bs",
    )
    parser.add_argument(
        "--precisions",
        help="f32,bf16,int8 (default: bf16 only where the CPU has it in hardware; int8 where "
        "NNCF is installed)",
    )
    parser.add_argument(
        "--calibration", type=int, default=16, help="int8 calibration images (default 16)"
    )
    parser.add_argument(
        "--int8-scopes",
        default="transformer,all",
        help="int8 exports measured (export_model --int8-scope; default both)",
    )
    parser.add_argument("--images", type=Path, help="folder of JPEG/PNG images")
    parser.add_argument("--limit", type=int, default=None, help="images used (default 6)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch and OpenVINO threads")
    parser.add_argument("--gemm-size", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "detector.json")
    args = parser.parse_args()
    if args.allocators:
        from bench_allocators import main as allocators_main  # bench/ is on sys.path

        allocators_main(args)
        return
    if args.readme:
        args.families = "detr"
        args.limit = args.limit or 3
    args.limit = args.limit or 6

    if args.threads:
        import os

        os.environ["VITRINE_TORCH_THREADS"] = str(args.threads)  # OpenVINO reads it too
        torch.set_num_threads(args.threads)
    flags = cpu_flags()
    if args.precisions is None:
        # Without bf16 hardware the runtime runs f32 for bf16 (backends.cpu_has_bf16):
        # there is no fast variant to measure.
        bf16 = cpu_has_bf16()
        args.precisions = "f32,bf16" if bf16 else "f32"
        if not bf16:
            print("bf16: this CPU has no bf16 arithmetic (avx512_bf16/amx_bf16); not measured")
        if quantizer_available() and openvino_available():
            args.precisions += ",int8"
    images, source, calibration = load_images(args)
    peaks = Peaks(args.gemm_size, args.threads, args.precisions.split(","))
    machine = {
        "cpu": cpu_model(),
        "cpu_signature": cpu_signature(),
        "cores": torch.get_num_threads(),
        "flags": flags,
        "gemm_size": args.gemm_size,
        "gemm_gflops": {
            p: {**found, "best": max(found.values())} for p, found in peaks.libraries.items()
        },
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    for package in ("openvino", "onnxruntime"):
        try:
            module = __import__(package)
        except ImportError:
            continue
        machine[package] = getattr(module, "get_version", lambda m=module: m.__version__)()
    found = "; ".join(
        f"{p}: " + ", ".join(f"{lib} {v:.0f}" for lib, v in libs.items())
        for p, libs in peaks.libraries.items()
    )
    print(
        f"{machine['cpu']} ({machine['cpu_signature']}; {', '.join(machine['flags'])}), "
        f"{machine['cores']} threads; "
        f"GEMM {args.gemm_size} GFLOP/s ({found}): peak "
        + ", ".join(f"{peaks.start(p):.0f} {p}" for p in peaks.libraries)
        + f"; images: {len(images)} from {source}; "
        f"rounds {args.rounds} (median, interleaved)"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families.split(","):
            result = run_family(family, args, images, Path(tmp), peaks, calibration)
            print_family(result)
            results.append(result)
    for precision, values in peaks.rounds.items():
        gemm = machine["gemm_gflops"][precision]
        gemm["rounds"] = values
        gemm["rounds_median"] = statistics.median(values) if values else gemm["best"]
    print("\nREADME table (markdown):\n")
    for result in results:
        print(markdown_table(result, machine) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": machine,
                "images": {"count": len(images), "source": source},
                "rounds": args.rounds,
                "families": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
