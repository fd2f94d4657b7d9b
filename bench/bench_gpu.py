"""The detector's throughput on a GPU from JPEG bytes, per batch size: issue 10's GPU row.

    python3 bench/bench_gpu.py --json $OUT/gpu.json           # a CUDA host: DETR-R50 at 800
    .venv/bin/python bench/bench_gpu.py --device cpu --family yolos_tiny --test-size \\
        --batch-sizes 1,2 --count 4 --precisions f32          # the same code path, on a CPU

Each image's path is the worker's: its JPEG bytes decoded with Pillow on the decode threads
(``runtime.images.decode_many``; the next batch's decode overlaps this batch's forward), its
uint8 pixels copied to the device and resized and normalized there with Pillow's own
arithmetic (``runtime/device_preprocess.py``: the processor's inputs bit for bit), the
forward in batches (images of one preprocessed shape together, as ``Detector.detect`` does;
on a GPU launched from a thread of their own while the next images are preprocessed),
post-processing (on a helper thread, beside the next forward), detections. Model loading
and one warm-up batch per size are not timed.

Precisions: ``f32`` (TF32 off: the reference), ``tf32`` (TF32 matmuls and convolutions),
``bf16`` (CUDA autocast, the labelled fast option); each against f32 at batch 1 on the same
images: detections equal within 1 px and 1e-4 above ``--threshold`` (the worker's floor,
0.05), the kept-set change and the worst moves (bench_detector's comparison). The goal:
>= 1,500 images/s for DETR-R50 at 800 on one H200, end to end.

The checkpoint is random-weight, built from the family's published config (the compute of
the real weights); images are COCO's most common size (640x480) unless ``--images`` names a
folder. It needs only torch, transformers, Pillow and NumPy (no Django): on a GPU machine
whose Python has those, run it from the repo root. Written to JSON (``--json``): the device,
torch and CUDA versions, per precision and batch size images/s, milliseconds per image in
each stage and the peak GPU memory.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_detector import equality  # noqa: E402  bench/ is on the path
from machine import cpu_model  # noqa: E402
from PIL import Image  # noqa: E402

from playground.runtime import CheckpointSpec, decode_image, load_detector  # noqa: E402
from playground.runtime.checkpoints import TEST_PROCESSOR_SIZES, build_checkpoint  # noqa: E402
from playground.runtime.images import decode_many, decode_threads  # noqa: E402

MAX_PIXELS = 50_000_000
# The short-switch row's GIL hand-over interval (Python's default is 5 ms). On a GPU the
# calling thread (preprocessing), the forward thread (launching ~1,000 kernels a batch), the
# post-processing thread and the decode threads share one GIL; a thread that wants it back
# waits up to the interval for a holder that does not release it, and the forward thread's
# waits leave the GPU idle (37% of the bf16 wall time in session 30's profile).
SHORT_SWITCH_S = 0.0005
# The --before rows that load the model again, and how.
RELOADED = {"unfused": {"fuse_layers": False}, "nchw": {"channels_last": False}}
GOAL_IMAGES_PER_S = 1500


def synthetic_jpegs(count: int, size: tuple[int, int], seed: int = 0) -> list[bytes]:
    """Photo-like JPEGs (smooth colour fields with noise): what a decoder meets in practice."""
    rng = np.random.default_rng(seed)
    out = []
    width, height = size
    for _ in range(count):
        small = rng.integers(0, 256, (height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR))
        noisy = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def folder_jpegs(folder: Path, count: int) -> list[bytes]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise SystemExit(f"no images in {folder}")
    return [p.read_bytes() for p in paths[:count]]


def set_precision(precision: str) -> None:
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(
    detector, images: list[bytes], batch: int, threshold: float, threads: int, per_call: int
) -> dict:
    """Every image of ``images`` through decode -> detect, ``per_call`` batches of ``batch``
    per ``detect`` call, the next call's decode overlapping this one's detection; seconds
    and per-stage sums."""

    def decode(data: bytes):
        return decode_image(data, max_pixels=MAX_PIXELS)

    size = batch * per_call
    chunks = [images[i : i + size] for i in range(0, len(images), size)]
    stages = {"decode": 0.0, "preprocess": 0.0, "forward": 0.0, "postprocess": 0.0}
    detections = []
    with ThreadPoolExecutor(1, thread_name_prefix="prefetch") as prefetch:
        synchronize(detector.device)
        began = time.perf_counter()
        pending = prefetch.submit(_timed, decode_many, chunks[0], decode, threads=threads)
        for index in range(len(chunks)):
            decoded, decode_s = pending.result()
            if index + 1 < len(chunks):
                pending = prefetch.submit(
                    _timed, decode_many, chunks[index + 1], decode, threads=threads
                )
            failed = [d for d in decoded if isinstance(d, Exception)]
            if failed:
                raise failed[0]
            stages["decode"] += decode_s
            results = detector.detect(decoded, threshold=threshold, batch_size=batch)
            for result in results:
                for stage in ("preprocess", "forward", "postprocess"):
                    stages[stage] += result.timings.get(stage, 0.0)
                detections.append(result.detections)
        synchronize(detector.device)
        seconds = time.perf_counter() - began
    return {"seconds": seconds, "stages": stages, "detections": detections}


DEVICE_EVENTS = ("kernel", "gpu_memcpy", "gpu_memset")


def profiled(detector, images, batch, threshold, threads, per_call, folder: Path, top=15) -> dict:
    """One ``run`` under torch's profiler: how much of its wall time the device was busy
    (the union of its kernels and copies; on a CPU, of the ops on any thread) and the
    kernels (ops) that took it, by total time. The profiler's own overhead slows the
    launches, so the shares are read, not the speed."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = detector.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch_profile(activities=activities) as profiler:
        measured = run(detector, images, batch, threshold, threads, per_call)
    trace = folder / "trace.json"
    profiler.export_chrome_trace(str(trace))
    events = json.loads(trace.read_text())
    events = events.get("traceEvents", events) if isinstance(events, dict) else events
    kinds = DEVICE_EVENTS if cuda else ("cpu_op",)
    device = [e for e in events if e.get("ph") == "X" and e.get("cat") in kinds and "dur" in e]
    busy_us, end = 0.0, float("-inf")
    for event in sorted(device, key=lambda e: float(e["ts"])):
        began, ended = float(event["ts"]), float(event["ts"]) + float(event["dur"])
        busy_us += max(0.0, ended - max(began, end))
        end = max(end, ended)
    totals: dict[str, list[float]] = {}
    for event in device:
        name = event["name"] if event["cat"] != "gpu_memcpy" else f"memcpy: {event['name']}"
        total = totals.setdefault(name[:120], [0.0, 0])
        total[0] += float(event["dur"])
        total[1] += 1
    wall_ms = 1000 * measured["seconds"]
    return {
        "wall_ms": round(wall_ms, 1),
        "device_busy_ms": round(busy_us / 1000, 1),
        "device_busy_share": round(busy_us / 1000 / wall_ms, 3),
        "device_events": len(device),
        "top": [
            {
                "name": name,
                "ms": round(us / 1000, 2),
                "share_of_busy": round(us / busy_us, 3),
                "calls": calls,
            }
            for name, (us, calls) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:top]
        ],
    }


def set_serial_forward(detector) -> None:
    """The forwards on the calling thread again, between its preprocessing of each window
    (session 28's path): what the forward thread is measured against."""
    detector.overlap_forward = False


def set_before(detector) -> None:
    """Batched device preprocessing, overlapped post-processing and the forward thread
    undone, as near as the current code allows: each image's inputs built alone (through a
    page-locked copy of its own, where the code before them copied from pageable memory),
    each batch forwarded and post-processed in turn on the calling thread."""
    detector.preprocess_many = lambda images: [detector.preprocess(image) for image in images]
    detector.overlap_postprocess = False
    detector.overlap_forward = False


def write(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def _timed(function, *args, **kwargs):
    began = time.perf_counter()
    return function(*args, **kwargs), time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--family", default="detr")
    parser.add_argument("--test-size", action="store_true", help="small inputs (a CPU check)")
    parser.add_argument("--images", type=Path, help="a folder of JPEGs (default: synthetic)")
    parser.add_argument("--count", type=int, default=256, help="images per measurement")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32,64")
    parser.add_argument("--precisions", default="f32,tf32,bf16")
    parser.add_argument("--decode-threads", type=int, default=None)
    parser.add_argument("--threshold", type=float, default=0.05, help="the worker's floor")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per batch size")
    parser.add_argument(
        "--batches-per-call", type=int, default=4,
        help="batches per detect() call: a call's post-processing overlaps its next forward",
    )  # fmt: skip
    parser.add_argument(
        "--compile", action="store_true",
        help="also each batch size with the model torch.compiled (one compilation per batch "
        "shape; exploratory)",
    )  # fmt: skip
    parser.add_argument(
        "--before", action="store_true",
        help="also, at the largest batch, the model without its layers fused with their "
        "activations (unfused), in NCHW rather than channels_last memory (nchw: cuDNN's f32 "
        "kernels are NCHW ones, and transposes around them took 12%% of an f32 forward's "
        "device time), with Python's GIL handed over every 0.5 ms instead of 5 "
        "(short-switch), the path without the forward thread (serial-forward) "
        "and the path before batched device preprocessing, overlapped post-processing and the "
        "forward thread (per-image preprocessing, each batch in turn)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", action="store_true",
        help="also profile one more round of each row at the largest batch: the device's busy "
        "share of the wall time and its top kernels",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "gpu.json")
    parser.add_argument(
        "--cuda-only", action="store_true",
        help="without a CUDA device, write a JSON that says so and stop (bench_all.py)",
    )  # fmt: skip
    args = parser.parse_args()

    if args.cuda_only and not torch.cuda.is_available():
        write(args.json, {"skipped": "no CUDA device on this machine", "cpu": cpu_model()})
        print("no CUDA device on this machine: nothing measured")
        return 0
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one tuning per input shape, then cached
    threads = args.decode_threads or decode_threads()
    switch_s = sys.getswitchinterval()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    precisions = [p for p in args.precisions.split(",") if p]
    count = max(args.count, max(batch_sizes))
    images = folder_jpegs(args.images, count) if args.images else synthetic_jpegs(count, (640, 480))
    images = (images * (count // len(images) + 1))[:count]
    machine = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "decode_threads": threads,
    }
    print(f"{machine['device']}; torch {machine['torch']} (CUDA {machine['cuda']}); "
          f"{threads} decode threads; {count} images per measurement", flush=True)  # fmt: skip
    report = {"machine": machine, "family": args.family, "images": count, "results": []}
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = build_checkpoint(
            args.family, Path(folder) / args.family,
            processor_size=TEST_PROCESSOR_SIZES[args.family] if args.test_size else None,
        )  # fmt: skip
        spec = CheckpointSpec(local_dir=str(checkpoint))
        # f32 eager at the first batch size (1 by default): what every other run is compared with
        reference, reference_batch = None, None
        for precision in precisions:
            set_precision(precision)
            loaded = functools.partial(
                load_detector, spec, device=device, backend="torch",
                precision="bf16" if precision == "bf16" else "f32",
            )  # fmt: skip
            # The current path; the rows that change it (--before) come back to it.
            detector = fused = loaded()
            eager = detector.model
            variants = [(batch, "") for batch in batch_sizes]
            if args.before:
                variants += [
                    (batch_sizes[-1], "unfused"),
                    (batch_sizes[-1], "nchw"),
                    (batch_sizes[-1], "short-switch"),
                    (batch_sizes[-1], "serial-forward"),
                    (batch_sizes[-1], "before"),
                ]
            if args.compile:
                variants += [(batch, "compiled") for batch in batch_sizes]
            for batch, variant in variants:
                # Python's GIL hand-over interval for this row (see SHORT_SWITCH_S).
                sys.setswitchinterval(SHORT_SWITCH_S if variant == "short-switch" else switch_s)
                if variant in RELOADED:
                    detector = loaded(**RELOADED[variant])
                if variant in ("short-switch", "serial-forward"):
                    detector = fused  # serial-forward and before then change it
                if variant == "serial-forward":
                    set_serial_forward(detector)
                if variant == "before":
                    set_before(detector)
                if variant == "compiled" and detector.model is eager:
                    detector = loaded()
                    detector.model = torch.compile(detector.model)
                per_call = args.batches_per_call
                began = time.perf_counter()
                run(detector, images[:batch], batch, args.threshold, threads, 1)  # warm-up
                warm_up_s = time.perf_counter() - began
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                rounds = [
                    run(detector, images, batch, args.threshold, threads, per_call)
                    for _ in range(args.rounds)
                ]
                best = min(rounds, key=lambda r: r["seconds"])
                if reference is None and precision == "f32" and not variant:
                    reference, reference_batch = best["detections"], batch
                row = {
                    "precision": precision,
                    "batch": batch,
                    "variant": variant or "current",
                    "reference_batch": reference_batch,
                    "batches_per_call": per_call,
                    "warm_up_s": round(warm_up_s, 1),  # with --compile: the compilation
                    "device_preprocess": detector.device_preprocess,
                    "channels_last": detector.channels_last,
                    "switch_interval_ms": round(sys.getswitchinterval() * 1000, 3),
                    "images_per_s": round(count / best["seconds"], 1),
                    "images_per_s_per_round": [round(count / r["seconds"], 1) for r in rounds],
                    "ms_per_image": {
                        stage: round(1000 * seconds / count, 3)
                        for stage, seconds in best["stages"].items()
                    },
                    "peak_gpu_memory_gib": (
                        round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                        if device.type == "cuda" else None
                    ),
                    "against_f32": (
                        equality(best["detections"], reference, args.threshold)
                        if reference is not None else None
                    ),
                }  # fmt: skip
                if args.profile and batch == batch_sizes[-1]:
                    row["profile"] = profiled(
                        detector, images, batch, args.threshold, threads, per_call, Path(folder)
                    )
                report["results"].append(row)
                write(args.json, report)  # row by row: a run cut short keeps what it measured
                same = row["against_f32"]
                stages = ", ".join(f"{k} {v:.2f}" for k, v in row["ms_per_image"].items())
                print(
                    f"{precision:>5} batch {batch:>3}{f' ({variant})' if variant else ''}: "
                    f"{row['images_per_s']:>8.1f} img/s "
                    f"(rounds {row['images_per_s_per_round']}); ms/image: {stages}; "
                    + (
                        f"equal to f32 batch {reference_batch}: "
                        f"{same['equal']}/{same['reference_kept']} "
                        f"(kept {same['kept']}, worst box {same['worst_box_px']:.1f} px, "
                        f"score {same['worst_score']:.1e})"
                        if same is not None
                        else "no f32 reference in this run"
                    ),
                    flush=True,
                )
                if "profile" in row:
                    shown = row["profile"]
                    print(
                        f"      profiled: device busy {shown['device_busy_ms']:.0f} of "
                        f"{shown['wall_ms']:.0f} ms ({100 * shown['device_busy_share']:.0f}%); "
                        + "; ".join(
                            f"{t['name'][:60]} {100 * t['share_of_busy']:.0f}%"
                            for t in shown["top"][:5]
                        ),
                        flush=True,
                    )
            del detector, fused  # both, before the next precision loads its model
            if device.type == "cuda":
                torch.cuda.empty_cache()
    best = max(
        (r for r in report["results"] if r["variant"] in ("current", "compiled")),
        key=lambda r: r["images_per_s"],
    )
    report["best"] = {k: best[k] for k in ("precision", "batch", "images_per_s")}
    report["goal_images_per_s"] = GOAL_IMAGES_PER_S
    print(
        f"best: {best['images_per_s']:.1f} img/s ({best['precision']}, batch {best['batch']}; "
        f"rounds' mean {statistics.mean(best['images_per_s_per_round']):.1f}); goal >= "
        f"{GOAL_IMAGES_PER_S} img/s for DETR-R50 at 800 on one H200"
    )
    write(args.json, report)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
