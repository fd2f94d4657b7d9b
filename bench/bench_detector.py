"""One bench for the detector's speed: each backend and precision against the naive pipeline.

    .venv/bin/python bench/bench_detector.py                      # DETR-R50, RT-DETR, YOLOS tiny
    .venv/bin/python bench/bench_detector.py --families yolos_tiny --limit 2 --rounds 1  # short

For each family a random-weight checkpoint with the published architecture and image size
is built (DETR-R50 with the native ResNet-50 from its config: the compute of the real
weights), exported to OpenVINO (checked against torch, as ``manage.py export_model`` does),
and timed from the image file's bytes to detections, batch 1, in interleaved rounds against
``transformers.pipeline("object-detection")``. Images: COCO val2017 from
``--images`` (default ../shared/testdata/coco-mini/val2017 when present, never copied), or
generated ones.

Printed and written to JSON (``--out``, default bench/results/detector.json): the CPU model,
a measured GEMM peak (4096x4096 matmul GFLOP/s, fp32 and bf16), per contender images/s and
the ratio to the pipeline, the forward's GFLOP/s and its share of the fp32 peak (FLOPs
counted by torch's FlopCounterMode on the first image), and equality with the pipeline:
at threshold 0.5 and at the worker's floor 0.05, detections paired by label and box with
boxes within 1 px and scores within 1e-4 ("equal"), the kept-set change and the worst box
and score moves (what a bf16 variant must state).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from playground.runtime import CheckpointSpec, decode_image, load_detector  # noqa: E402
from playground.runtime.backends import openvino_available  # noqa: E402
from playground.runtime.checkpoints import build_checkpoint  # noqa: E402

MAX_PIXELS = 50_000_000
DEFAULT_IMAGES = REPO.parent.parent / "shared" / "testdata" / "coco-mini" / "val2017"
SYNTHETIC_SIZES = ((640, 480), (480, 640), (640, 427), (500, 375))
FLOOR = 0.05
KEPT = 0.5
SCORE_TOL = 1e-4
BOX_TOL = 1


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((ln for ln in text.splitlines() if ln.startswith("flags")), "").split()
    return [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni") if f in flags]


def gemm_peak(size: int, dtype: torch.dtype, repeats: int = 5) -> float:
    """Best GFLOP/s of a size x size matmul (2 n^3 FLOPs)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best / 1e9


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


def load_images(args) -> tuple[list[bytes], str]:
    folder = args.images or (DEFAULT_IMAGES if DEFAULT_IMAGES.is_dir() else None)
    if folder and Path(folder).is_dir():
        paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".png"))
        if paths:
            return [p.read_bytes() for p in paths[: args.limit]], str(folder)
    return synthetic_images(args.limit, args.seed), "generated"


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


def run_family(family: str, args, images: list[bytes], folder: Path) -> dict:
    from transformers import pipeline

    checkpoint = build_checkpoint(family, folder / family, seed=args.seed)
    spec = CheckpointSpec(local_dir=str(checkpoint))
    export = None
    backends = [b for b in args.backends.split(",") if b]
    if "openvino" in backends:
        if not openvino_available():
            print(f"{family}: openvino not installed, skipped")
            backends.remove("openvino")
        else:
            from playground.runtime.export import export_checkpoint

            _, manifest = export_checkpoint(spec, log=lambda line: print(f"{family}: {line}"))
            export = {"conversion_s": manifest["conversion_seconds"], "check": manifest["check"]}
    precisions = [p for p in args.precisions.split(",") if p]
    pipe = pipeline("object-detection", model=str(checkpoint), device="cpu")
    contenders = {}
    for backend in backends:
        for precision in precisions:
            contenders[f"{backend} {precision}"] = load_detector(
                spec, device="cpu", backend=backend, precision=precision
            )
    flops = forward_flops(
        contenders.get("torch f32") or load_detector(spec, device="cpu", backend="torch"),
        images[0],
    )
    sizes = [Image.open(io.BytesIO(d)).size for d in images]
    pipe(Image.open(io.BytesIO(images[0])), threshold=FLOOR)  # warm-up

    rates: dict[str, list[float]] = {"pipeline": []}
    forward_s: dict[str, list[float]] = {}
    outputs: dict[str, list[list[dict]]] = {}
    for name in contenders:
        rates[name], forward_s[name] = [], []
    for _ in range(args.rounds):  # interleaved: a noisy neighbour hurts every contender alike
        began = time.perf_counter()
        reference = [
            clip(pipe(Image.open(io.BytesIO(d)), threshold=FLOOR), *size)
            for d, size in zip(images, sizes, strict=True)
        ]
        rates["pipeline"].append(len(images) / (time.perf_counter() - began))
        for name, detector in contenders.items():
            began = time.perf_counter()
            decoded = [decode_image(d, max_pixels=MAX_PIXELS) for d in images]
            results = detector.detect(decoded, threshold=FLOOR, batch_size=1)
            rates[name].append(len(images) / (time.perf_counter() - began))
            forward_s[name].append(statistics.mean(r.timings["forward"] for r in results))
            outputs[name] = [r.detections for r in results]
    naive = statistics.median(rates["pipeline"])
    rows = {"pipeline": {"images_per_s": naive, "ratio": 1.0, "spread": _spread(rates["pipeline"])}}
    for name in contenders:
        rate = statistics.median(rates[name])
        seconds = statistics.median(forward_s[name])
        rows[name] = {
            "images_per_s": rate,
            "ratio": rate / naive,
            "spread": _spread(rates[name]),
            "forward_ms": seconds * 1000,
            "forward_gflops_per_s": flops / seconds / 1e9,
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


def print_family(result: dict, peaks: dict[str, float]) -> None:
    """``% peak``: of the fp32 GEMM peak for f32 rows, of the bf16 peak for bf16 rows."""
    check = json.dumps(result["export"]["check"]) if result["export"] else "-"
    print(
        f"\n{result['family']}: {result['forward_gflops_per_image']:.1f} GFLOPs/image "
        f"(first image), export check {check}"
    )
    print(
        f"{'contender':16} {'img/s':>7} {'x naive':>8} {'fwd ms':>8} {'GFLOP/s':>8} {'% peak':>7}"
        f"  equal@0.5 (kept)    worst box/score @0.5   equal@0.05 (kept)"
    )
    for name, row in result["rows"].items():
        if name == "pipeline":
            print(f"{name:16} {row['images_per_s']:7.3f} {1.0:8.2f}")
            continue
        at_kept, at_floor = row["equality"]
        print(
            f"{name:16} {row['images_per_s']:7.3f} {row['ratio']:8.2f} {row['forward_ms']:8.0f} "
            f"{row['forward_gflops_per_s']:8.1f} {100 * row['peak_share']:6.0f}%"
            f"  {at_kept['equal']:>4}/{at_kept['reference_kept']:<4}({at_kept['kept']:>4})"
            f"   {at_kept['worst_box_px']:6.1f} px {at_kept['worst_score']:.1e}"
            f"   {at_floor['equal']:>4}/{at_floor['reference_kept']:<4}({at_floor['kept']:>4})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="detr,rt_detr,yolos_tiny")
    parser.add_argument("--backends", default="torch,openvino")
    parser.add_argument("--precisions", default="f32,bf16")
    parser.add_argument("--images", type=Path, help="folder of JPEG/PNG images")
    parser.add_argument("--limit", type=int, default=6, help="images used")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch and OpenVINO threads")
    parser.add_argument("--gemm-size", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "detector.json")
    args = parser.parse_args()

    if args.threads:
        import os

        os.environ["VITRINE_TORCH_THREADS"] = str(args.threads)  # OpenVINO reads it too
        torch.set_num_threads(args.threads)
    images, source = load_images(args)
    peak32 = gemm_peak(args.gemm_size, torch.float32)
    peak16 = gemm_peak(args.gemm_size, torch.bfloat16)
    machine = {
        "cpu": cpu_model(),
        "cores": torch.get_num_threads(),
        "flags": cpu_flags(),
        "gemm_gflops_f32": peak32,
        "gemm_gflops_bf16": peak16,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if openvino_available():
        import openvino

        machine["openvino"] = openvino.get_version()
    print(
        f"{machine['cpu']} ({', '.join(machine['flags'])}), {machine['cores']} threads; "
        f"GEMM {args.gemm_size}: {peak32:.0f} GFLOP/s fp32, {peak16:.0f} GFLOP/s bf16; "
        f"images: {len(images)} from {source}; rounds {args.rounds} (median, interleaved)"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families.split(","):
            result = run_family(family, args, images, Path(tmp))
            peaks = {"f32": peak32, "bf16": peak16}
            for name, row in result["rows"].items():
                if name != "pipeline":
                    row["peak_share"] = row["forward_gflops_per_s"] / peaks[name.split()[-1]]
            print_family(result, peaks)
            results.append(result)
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
