"""Throughput of the detector runtime against the naive transformers pipeline, in one run.

    .venv/bin/python bench/bench_runtime.py --family yolos_tiny --images ../shared/testdata/coco-mini/val2017 --limit 8
    .venv/bin/python bench/bench_runtime.py --checkpoint /path/to/checkpoint --synthetic 6

Both sides start from the image file's bytes (decode included) and return detections;
model loading and one warm-up image are not timed. Without --checkpoint a random-weight
checkpoint of --family is built in a temporary directory (same architecture and input
size as the published one, so the timings are representative; the boxes are not).
"""  # noqa: E501

from __future__ import annotations

import argparse
import io
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
from playground.runtime.checkpoints import FAMILIES, build_checkpoint  # noqa: E402

MAX_PIXELS = 50_000_000
SYNTHETIC_SIZES = ((640, 480), (480, 640), (800, 600), (640, 427))


def synthetic_images(count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        width, height = SYNTHETIC_SIZES[i % len(SYNTHETIC_SIZES)]
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def folder_images(folder: Path, limit: int) -> list[bytes]:
    paths = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")
    )
    if not paths:
        raise SystemExit(f"no images in {folder}")
    return [p.read_bytes() for p in paths[:limit]]


def time_pipeline(pipe, images: list[bytes], threshold: float) -> tuple[float, list]:
    outputs = []
    began = time.perf_counter()
    for data in images:
        outputs.append(pipe(Image.open(io.BytesIO(data)), threshold=threshold))
    return time.perf_counter() - began, outputs


def time_runtime(detector, images: list[bytes], threshold: float, batch_size: int):
    began = time.perf_counter()
    decode_times = []
    decoded = []
    for data in images:
        t0 = time.perf_counter()
        decoded.append(decode_image(data, max_pixels=MAX_PIXELS))
        decode_times.append(time.perf_counter() - t0)
    results = detector.detect(decoded, threshold=threshold, batch_size=batch_size)
    elapsed = time.perf_counter() - began
    stages = {"decode": statistics.mean(decode_times)}
    for stage in ("preprocess", "forward", "postprocess"):
        stages[stage] = statistics.mean(r.timings[stage] for r in results)
    return elapsed, stages, [r.detections for r in results]


def same_detections(a: list[dict], b: list[dict], size: tuple[int, int]) -> bool:
    """Equal as multisets: each detection of ``a`` has a partner in ``b`` with the same label,
    a score within 1e-4 and box corners within 1 px (the runtime clips boxes to the image,
    the pipeline does not, so the pipeline's ``b`` is clipped first)."""
    if len(a) != len(b):
        return False
    width, height = size
    limit = {"xmin": width, "xmax": width, "ymin": height, "ymax": height}
    unmatched = [
        {**d, "box": {k: min(max(v, 0), limit[k]) for k, v in d["box"].items()}} for d in b
    ]
    for x in a:
        partner = next(
            (
                y
                for y in unmatched
                if y["label"] == x["label"]
                and abs(y["score"] - x["score"]) <= 1e-4
                and all(abs(y["box"][k] - x["box"][k]) <= 1 for k in x["box"])
            ),
            None,
        )
        if partner is None:
            return False
        unmatched.remove(partner)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(FAMILIES), default="yolos_tiny")
    parser.add_argument("--checkpoint", type=Path, help="an existing checkpoint directory")
    parser.add_argument("--images", type=Path, help="a folder of JPEG/PNG images")
    parser.add_argument("--limit", type=int, default=8, help="images taken from --images")
    parser.add_argument("--synthetic", type=int, default=8, help="random images without --images")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--batch-sizes", default="1,2", help="runtime batch sizes to try")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads for both sides")
    parser.add_argument(
        "--layouts",
        default="contiguous,channels_last",
        help="runtime memory layouts to try (channels_last is the runtime's default)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    images = (
        folder_images(args.images, args.limit)
        if args.images
        else synthetic_images(args.synthetic, args.seed)
    )
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or build_checkpoint(
            args.family, Path(tmp) / args.family, seed=args.seed
        )
        run(args, checkpoint, images)


def run(args, checkpoint: Path, images: list[bytes]) -> None:
    from transformers import pipeline

    sizes = [Image.open(io.BytesIO(d)).size for d in images]
    print(
        f"checkpoint {checkpoint}  images {len(images)} (e.g. {sizes[0][0]}x{sizes[0][1]})  "
        f"torch {torch.__version__} threads {torch.get_num_threads()}  device cpu  "
        f"rounds {args.rounds} (median images/s, interleaved)"
    )
    pipe = pipeline("object-detection", model=str(checkpoint), device="cpu")
    time_pipeline(pipe, images[:1], args.threshold)  # warm-up
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    layouts = [name == "channels_last" for name in args.layouts.split(",")]
    detectors = {
        cl: load_detector(CheckpointSpec(local_dir=str(checkpoint)), device="cpu", channels_last=cl)
        for cl in layouts
    }
    variants = [(b, cl) for cl in layouts for b in batch_sizes]
    naive_rates: list[float] = []
    rates: dict[tuple[int, bool], list[float]] = {v: [] for v in variants}
    stages: dict[tuple[int, bool], list[dict[str, float]]] = {v: [] for v in variants}
    matches: dict[tuple[int, bool], bool] = dict.fromkeys(variants, True)
    # Rounds interleave the contenders so that a noisy neighbour hurts them alike.
    for _ in range(args.rounds):
        naive_s, naive_out = time_pipeline(pipe, images, args.threshold)
        naive_rates.append(len(images) / naive_s)
        for batch_size, cl in variants:
            elapsed, stage, out = time_runtime(detectors[cl], images, args.threshold, batch_size)
            rates[(batch_size, cl)].append(len(images) / elapsed)
            stages[(batch_size, cl)].append(stage)
            same = all(
                same_detections(a, b, size)
                for a, b, size in zip(out, naive_out, sizes, strict=True)
            )
            matches[(batch_size, cl)] &= same
    naive_rate = statistics.median(naive_rates)
    print(f"{'pipeline':29} {naive_rate:7.3f} images/s  {_spread(naive_rates)}")
    for variant in variants:
        batch_size, cl = variant
        rate = statistics.median(rates[variant])
        mean_stages = {
            k: statistics.median(s[k] for s in stages[variant]) for k in stages[variant][0]
        }
        name = f"runtime batch={batch_size} {'channels_last' if cl else 'contiguous'}"
        print(
            f"{name:29} {rate:7.3f} images/s  {_spread(rates[variant])}  "
            f"x{rate / naive_rate:.2f}  "
            + "  ".join(f"{k} {v * 1000:.1f}ms" for k, v in mean_stages.items())
            + f"  same detections: {'yes' if matches[variant] else 'NO'}"
        )


def _spread(values: list[float]) -> str:
    return f"[{min(values):.3f}-{max(values):.3f}]"


if __name__ == "__main__":
    main()
