"""Can bf16 hardware compute an f32 convolution? The split-bf16 ("bf16x3") test, measured.

On a CPU with AMX the bf16 GEMM peak is ~5.6x the f32 one (1,900 against 340 GFLOP/s on the
2-core model-167 Xeon). An f32 tensor splits exactly into a high and a low bf16 part
(x = hi + lo, hi by Veltkamp splitting, lo = bf16(x - hi)), and x*w ~ hi*wh + hi*wl + lo*wh
(the dropped lo*wl is ~2^-16 of the product): three bf16 products for one f32 one, so
f32-accurate convolutions at up to ~1.9x the f32 peak, if each product is accumulated and
written in f32. This bench builds one ResNet-50-shaped 3x3 convolution three ways in
OpenVINO (f32; the split with three convolutions summed; the split as one convolution over
the three parts concatenated along the channels), runs them interleaved, and prints each
one's speed in f32-equivalent GFLOP/s, its worst error against a float64 reference, and the
precision OpenVINO's CPU plugin gave the convolutions' outputs.

    .venv/bin/python bench/bench_split_bf16.py [--rounds 5] [--json out.json]

Measured (session 49, the 2-core model-167 Xeon with AMX): the split runs at 1.9x f32's
speed, but OpenVINO writes every bf16 convolution's output in bf16 (a Convert to f32 after
it is not fused into the convolution's destination), so the sum carries bf16's rounding
(relative error 2.6e-3 against f32's 1.7e-6): not an f32 path. With each product written in
f32 the split would be within 4.4e-6 (checked in float64 arithmetic on the same parts), so
the idea is sound and blocked by the runtimes: torch has no CPU kernel for a bf16 product
with an f32 output either (`aten::mm.dtype` is CUDA-only in torch 2.13). On a CPU whose
bf16 peak is only twice its f32 one (Zen 4) three products would be slower than one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model, cpu_signature

# ResNet-50's stage-3 3x3 convolution on a COCO image at 800 short edge.
SHAPE = {"n": 1, "c": 256, "h": 100, "w": 136, "k": 256}


def veltkamp_hi(op, x):
    """The top 8 significant bits of each f32 value, exactly representable in bf16."""
    c = op.constant(np.array(65537.0, dtype=np.float32))  # 2**16 + 1: splits off 16 bits
    t = op.multiply(x, c)
    return op.subtract(t, op.subtract(t, x))


def build_models(weights: np.ndarray):
    import openvino as ov
    import openvino.opset13 as op

    s = SHAPE

    def conv(inp, wt):
        return op.convolution(inp, wt, [1, 1], [1, 1], [1, 1], [1, 1])

    w_hi = bf16_round(weights)
    w_lo = bf16_round(weights - w_hi)

    def split_input():
        p = op.parameter([s["n"], s["c"], s["h"], s["w"]], ov.Type.f32)
        hi = veltkamp_hi(op, p)
        return p, op.convert(hi, ov.Type.bf16), op.convert(op.subtract(p, hi), ov.Type.bf16)

    def bf16_const(a):
        return op.convert(op.constant(a), ov.Type.bf16)

    p = op.parameter([s["n"], s["c"], s["h"], s["w"]], ov.Type.f32)
    f32 = ov.Model([conv(p, op.constant(weights))], [p], "f32")

    p, x_hi, x_lo = split_input()
    wh, wl = bf16_const(w_hi), bf16_const(w_lo)
    parts = [op.convert(conv(a, b), ov.Type.f32) for a, b in ((x_hi, wh), (x_hi, wl), (x_lo, wh))]
    three = ov.Model([op.add(op.add(parts[0], parts[1]), parts[2])], [p], "split, 3 convolutions")

    p, x_hi, x_lo = split_input()
    wh, wl = bf16_const(w_hi), bf16_const(w_lo)
    stacked = conv(op.concat([x_hi, x_hi, x_lo], 1), op.concat([wh, wl, wh], 1))
    concat = ov.Model([op.convert(stacked, ov.Type.f32)], [p], "split, 1 convolution over 3C")
    return [f32, three, concat]


def bf16_round(a: np.ndarray) -> np.ndarray:
    """f32 -> nearest bf16 (ties to even), returned as f32."""
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32)


def conv_output_precisions(compiled) -> list[str]:
    out = []
    for node in compiled.get_runtime_model().get_ordered_ops():
        info = node.get_rt_info()
        if info["layerType"].astype(str) == "Convolution":
            out.append(info["outputPrecisions"].astype(str))
    return out


def main() -> int:
    import openvino as ov
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    s = SHAPE
    cpu = f"{cpu_model()} ({cpu_signature()})" if cpu_signature() else cpu_model()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((s["n"], s["c"], s["h"], s["w"])).astype(np.float32)
    weights = (rng.standard_normal((s["k"], s["c"], 3, 3)) / 48).astype(np.float32)
    reference = torch.nn.functional.conv2d(
        torch.from_numpy(x).double(), torch.from_numpy(weights).double(), padding=1
    ).numpy()
    flops = 2 * s["n"] * s["k"] * s["c"] * 9 * s["h"] * s["w"]

    core = ov.Core()
    config = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": args.threads,
        "INFERENCE_PRECISION_HINT": "f32",
    }
    variants = []
    for model in build_models(weights):
        compiled = core.compile_model(model, "CPU", config)
        request = compiled.create_infer_request()
        request.infer({0: x})
        out = request.get_output_tensor(0).data.copy()
        err = float(np.abs(out - reference).max() / np.abs(reference).max())
        variants.append(
            {
                "name": model.get_friendly_name(),
                "request": request,
                "relative_error": err,
                "conv_outputs": conv_output_precisions(compiled),
                "times": [],
            }
        )
    for _ in range(args.rounds):  # interleaved: each round runs every variant once
        for v in variants:
            start = time.perf_counter()
            v["request"].infer({0: x})
            v["times"].append(time.perf_counter() - start)

    print(f"CPU: {cpu}; OpenVINO {ov.get_version()}; conv {s}, {args.threads} threads")
    base = min(variants[0]["times"])
    rows = []
    for v in variants:
        best = min(v["times"])
        row = {
            "variant": v["name"],
            "gflops_f32_equivalent": round(flops / best / 1e9, 1),
            "speed_vs_f32": round(base / best, 2),
            "max_relative_error": v["relative_error"],
            "conv_output_precisions": v["conv_outputs"],
        }
        rows.append(row)
        print(
            f"{row['variant']:32} {row['gflops_f32_equivalent']:7.0f} GFLOP/s  "
            f"{row['speed_vs_f32']:.2f}x f32  error {row['max_relative_error']:.1e}  "
            f"conv outputs {','.join(row['conv_output_precisions'])}"
        )
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
