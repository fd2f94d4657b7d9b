"""glibc malloc, tcmalloc and jemalloc for the torch backend, measured interleaved.

    .venv/bin/python bench/bench_detector.py --allocators     # or: bench/bench_allocators.py

An allocator is chosen when a process starts (``LD_PRELOAD``), so each one gets its own
process holding the same random-weight checkpoint (``--families``' first, DETR-R50 by
default) with the torch backend; the processes then run one round each in turn, from JPEG
bytes to detections, so a noisy neighbour hurts them alike. Printed and written to
``bench/results/allocators.json`` (``--out`` next to detector.json): images/s per allocator
and its ratio to malloc, whether its detections are equal to malloc's (1 px, 1e-4), and
whether OpenVINO's ``compile_model`` and an ONNX Runtime session survive it preloaded. The
file keeps one measurement per CPU (model name, family and model numbers); this CPU's
``choice`` (the fastest with equal detections, malloc unless another is >= 5% faster) is
what ``VITRINE_ALLOCATOR=measured`` applies to torch workers on the same CPU
(``playground/runtime/allocator.py``). Debian packages: libtcmalloc-minimal4, libjemalloc2.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

ALLOCATORS = ("malloc", "tcmalloc", "jemalloc")
# A gain below this is within the noise of a shared 2-core machine: malloc stays.
MIN_GAIN = 1.05
CHILD = "--child"

PROBE_OPENVINO = """
import openvino as ov
from openvino import opset13 as ops
a = ops.parameter([64, 64], ov.Type.f32, name="a")
ov.Core().compile_model(ov.Model([ops.relu(ops.matmul(a, a, False, False))], [a]), "CPU")
print("ok")
"""
PROBE_ONNXRUNTIME = """
import onnx, onnxruntime as ort
from onnx import TensorProto, helper
graph = helper.make_graph(
    [helper.make_node("Relu", ["x"], ["y"])], "g",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
print("ok")
"""


def child(checkpoint: str, image_dir: str) -> None:
    """One allocator's process: load the torch detector, then run a round per stdin line."""
    from playground.runtime import CheckpointSpec, decode_image, load_detector

    images = [p.read_bytes() for p in sorted(Path(image_dir).iterdir())]
    detector = load_detector(
        CheckpointSpec(local_dir=checkpoint), device="cpu", backend="torch", precision="f32"
    )
    print("READY", flush=True)
    for _ in sys.stdin:
        began = time.perf_counter()
        decoded = [decode_image(d, max_pixels=50_000_000) for d in images]
        results = detector.detect(decoded, threshold=0.05, batch_size=1)
        seconds = time.perf_counter() - began
        payload = {
            "seconds": seconds,
            "forward": statistics.mean(r.timings["forward"] for r in results),
            "detections": [r.detections for r in results],
        }
        print("RESULT " + json.dumps(payload), flush=True)


def _read(proc: subprocess.Popen, prefix: str) -> str:
    for line in proc.stdout:
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    raise RuntimeError(f"the child ended: {proc.wait()}")


def survives(code: str, preload: str | None) -> bool | None:
    """Whether ``code`` runs to "ok" with ``preload`` in LD_PRELOAD (None: not installed)."""
    env = {**os.environ, "LD_PRELOAD": preload or ""}
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        return False
    if "No module named" in done.stderr:
        return None
    return done.returncode == 0 and "ok" in done.stdout


def main(args) -> None:
    from bench_detector import equality, load_images
    from machine import cpu_model, cpu_signature

    from playground.runtime.allocator import cpu_identity, library
    from playground.runtime.checkpoints import build_checkpoint

    family = args.families.split(",")[0] if args.families else "detr"
    args.limit = args.limit or 3
    images, source, _ = load_images(args)  # no int8 here: no calibration images
    present = {name: library(name) for name in ALLOCATORS}
    chosen = [n for n in ALLOCATORS if n == "malloc" or present[n]]
    missing = [n for n in ALLOCATORS if n not in chosen]
    print(
        f"{cpu_identity()}; torch backend, {family}, {len(images)} images from {source}, "
        f"{args.rounds} interleaved rounds; allocators: {', '.join(chosen)}"
        + (f" (not installed: {', '.join(missing)})" if missing else "")
    )
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = build_checkpoint(family, Path(tmp) / family, seed=args.seed)
        image_dir = Path(tmp) / "images"
        image_dir.mkdir()
        for i, data in enumerate(images):
            (image_dir / f"{i:03d}.img").write_bytes(data)
        procs = {}
        try:
            for name in chosen:
                env = {**os.environ, "LD_PRELOAD": present[name] or ""}
                if args.threads:
                    env["VITRINE_TORCH_THREADS"] = str(args.threads)
                procs[name] = subprocess.Popen(
                    [sys.executable, __file__, CHILD, str(checkpoint), str(image_dir)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env=env,
                    cwd=REPO,
                )
                _read(procs[name], "READY")  # one at a time: loading competes for the cores
            runs: dict[str, list[dict]] = {name: [] for name in procs}
            for _ in range(args.rounds):
                for name, proc in procs.items():
                    proc.stdin.write("round\n")
                    proc.stdin.flush()
                    runs[name].append(json.loads(_read(proc, "RESULT ")))
        finally:
            for proc in procs.values():
                proc.stdin.close()
                proc.wait(timeout=60)
    rows = {}
    for name, rounds in runs.items():
        rate = statistics.median(len(images) / r["seconds"] for r in rounds)
        same = equality(rounds[-1]["detections"], runs["malloc"][-1]["detections"], 0.05)
        per_round = [
            m["seconds"] / r["seconds"] for r, m in zip(rounds, runs["malloc"], strict=True)
        ]
        rows[name] = {
            "library": present[name],
            "images_per_s": rate,
            # Each round's ratio pairs neighbouring measurements: robust to a load that
            # changes between rounds.
            "ratio_to_malloc": statistics.median(per_round),
            "ratios_per_round": per_round,
            "forward_ms": 1000 * statistics.median(r["forward"] for r in rounds),
            "equal_to_malloc": same["equal"] == same["reference_kept"] == same["kept"],
            "openvino_compile_survives": survives(PROBE_OPENVINO, present[name]),
            "onnxruntime_session_survives": survives(PROBE_ONNXRUNTIME, present[name]),
        }
    best = max(
        (n for n, r in rows.items() if r["equal_to_malloc"]),
        key=lambda n: rows[n]["ratio_to_malloc"],
    )
    choice = best if rows[best]["ratio_to_malloc"] >= MIN_GAIN else "malloc"
    print(
        f"\n{'allocator':10} {'img/s':>7} {'x malloc':>9} {'fwd ms':>8}  equal  "
        "OpenVINO compile  ONNX Runtime session"
    )
    for name, row in rows.items():
        print(
            f"{name:10} {row['images_per_s']:7.3f} {row['ratio_to_malloc']:9.2f} "
            f"{row['forward_ms']:8.0f}  {'yes' if row['equal_to_malloc'] else 'NO':5}  "
            f"{_word(row['openvino_compile_survives']):16}  "
            f"{_word(row['onnxruntime_session_survives'])}"
        )
    print(f"\nchoice for torch workers on this CPU: {choice} (malloc unless >= {MIN_GAIN}x)")
    out = args.out.parent / "allocators.json" if args.out.name == "detector.json" else args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "cpu": cpu_model(),
        "cpu_signature": cpu_signature(),
        "family": family,
        "images": {"count": len(images), "source": source},
        "rounds": args.rounds,
        "rows": rows,
        "choice": choice,
        "min_gain": MIN_GAIN,
    }
    # One measurement per CPU: this run replaces this CPU's, the others' stay.
    try:
        kept = json.loads(out.read_text()).get("by_cpu", {})
    except (OSError, ValueError, AttributeError):
        kept = {}
    kept[cpu_identity()] = result
    out.write_text(json.dumps({"by_cpu": dict(sorted(kept.items()))}, indent=2) + "\n")
    print(f"written {out} (under {cpu_identity()!r})")


def _word(value: bool | None) -> str:
    return {True: "survives", False: "CRASHES", None: "not installed"}[value]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child(sys.argv[2], sys.argv[3])
    else:
        sys.argv.insert(1, "--allocators")
        from bench_detector import main as detector_main

        detector_main()
