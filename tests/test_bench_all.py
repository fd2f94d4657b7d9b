"""bench/bench_all.py's table: which figure stands for each speed, and its verdict.

No bench runs here (speed is measured by the benches, never by a test): the summaries are
fed the JSON shapes the benches write, with figures chosen to hit each rule.
"""

from __future__ import annotations

import pytest

from tests.bench_modules import bench_module

pytestmark = pytest.mark.same_on_any_database


@pytest.fixture(scope="module")
def bench_all():
    with bench_module("bench_all") as module:
        yield module


def check(threshold, reference, kept, equal, box=0.0, score=1e-6) -> dict:
    return {"threshold": threshold, "reference_kept": reference, "kept": kept, "equal": equal,
            "worst_box_px": box, "worst_score": score}  # fmt: skip


def row(ratio, equality, *, share=0.8) -> dict:
    return {"images_per_s": 0.5 * ratio, "ratio": ratio, "ratios_per_round": [ratio, ratio],
            "forward_ms": 600.0, "peak_share": share, "equality": equality}  # fmt: skip


EQUAL = [check(0.5, 110, 110, 110), check(0.05, 300, 300, 300, box=1.0)]


def detector(flags, rows) -> dict:
    return {
        "machine": {"flags": flags, "gemm_gflops": {"f32": {"best": 320.0}}},
        "families": [{"family": "detr", "rows": {"pipeline": {"images_per_s": 0.5}, **rows}}],
    }


def test_the_fastest_f32_counts_only_with_every_detection_equal(bench_all):
    result = detector(
        ["avx512_bf16"],
        {
            "torch f32": row(1.4, EQUAL, share=0.43),
            "openvino f32": row(2.5, EQUAL, share=0.82),
            # faster, but one box moved by 2 px: not the default's figure
            "onnxruntime f32": row(2.9, [check(0.5, 110, 110, 109, box=2.0), EQUAL[1]]),
            "openvino bf16": row(9.9, [check(0.5, 110, 118, 1, box=2.0, score=0.05)]),
        },
    )
    f32, bf16 = bench_all.detector_lines(result)
    assert f32["figure"].startswith("openvino f32: 2.50x")
    assert f32["met"] == "3x: not met; 75% of the peak: **met**"
    assert "110/110 equal at 0.5" in f32["figure"] and "82% of the fp32 peak" in f32["figure"]
    assert bf16["figure"].startswith("openvino bf16: 9.90x") and bf16["met"] == "**met**"
    assert "1/110 equal at 0.5 (kept 118; worst box 2 px, score 0.05)" in bf16["figure"]


def test_a_score_beyond_the_tolerance_is_not_equal(bench_all):
    moved = [check(0.5, 110, 110, 110, score=2e-4), EQUAL[1]]
    lines = bench_all.detector_lines(detector([], {"openvino f32": row(3.2, moved)}))
    assert lines == [
        {
            "speed": "DETR-R50 at 800: the fastest f32 with equal detections",
            "figure": "no f32 contender equal to the pipeline",
        }
    ]


def test_without_bf16_the_fast_goal_does_not_apply(bench_all):
    lines = bench_all.detector_lines(
        detector(["avx2"], {"openvino f32": row(3.1, EQUAL), "openvino int8": row(3.5, [])})
    )
    assert lines[0]["met"] == "3x: **met**; 75% of the peak: **met**"
    assert lines[1]["speed"].endswith("int8 variant") and lines[1]["met"] == "n/a (no bf16)"


def test_serving_pages_and_charges_against_their_goals(bench_all):
    serving = {
        "calls": 300, "unanswered": 0, "server_errors": 1, "statuses": {"200": 299, "500": 1},
        "healthz_p95_ms": 11.0, "healthz_probes": 500,
        "api_overhead": {"calls": 50, "overhead_p50_ms": 14.9, "overhead_p95_ms": 30.0},
    }  # fmt: skip
    overhead, held = bench_all.serving_lines(serving)
    assert overhead["met"] == "**met**"  # 14.9 <= 15
    assert "WAL" not in overhead["figure"]  # a run without PostgreSQL's figure
    serving["api_overhead"]["wal_bytes_per_call"] = 15584
    assert bench_all.serving_lines(serving)[0]["figure"].endswith("; 15,584 bytes of WAL per call")
    assert held["met"] == "not met"  # one 5xx
    pages = {"results": [
        {"page": "model page (anonymous, cached)", "requests_per_s": 1200.0, "p95_ms": 51.0,
         "errors": 0},
        {"page": "model page (signed in, rendered)", "requests_per_s": 60.0, "p95_ms": 300.0,
         "errors": 0},
    ]}  # fmt: skip
    cached, rendered = bench_all.pages_lines(pages)
    assert cached["met"] == "not met"  # p95 above 50 ms
    assert "goal" not in rendered  # the baseline, not held to the goal
    ok = {"ok": True}
    charges = {"results": [
        {"scenario": "own", "clients": 16, "wallets": 16, "charges_per_s": 1229.4,
         "deadlocks_seen_by_clients": 0, "errors": 0, "ledger": ok},
        {"scenario": "own_web", "clients": 16, "client_processes": 4, "wallets": 16,
         "charges_per_s": 990.0, "deadlocks_seen_by_clients": 0, "errors": 0, "ledger": ok},
        {"scenario": "shared", "clients": 16, "wallets": 1, "charges_per_s": 799.3,
         "deadlocks_seen_by_clients": 0, "errors": 0, "ledger": ok},
        {"scenario": "own_key", "clients": 16, "wallets": 16, "charges_per_s": 1500.0,
         "deadlocks_seen_by_clients": 0, "errors": 0, "ledger": {"ok": False}},
    ]}  # fmt: skip
    own, web, shared, keyed = bench_all.charges_lines(charges)
    assert own["met"] == "**met**" and "goal" not in shared
    # The web tier's shape is held to the same goal, its processes and threads named
    assert web["met"] == "not met" and "4 processes x 4 threads" in web["speed"]
    assert "processes" not in own["speed"]
    assert "ledger WRONG" in keyed["figure"]


def test_the_worker_rows_name_each_batch_size(bench_all):
    """bench_worker.py's JSON (its batch sizes as JSON object keys): a row per batch size,
    reported without a goal (the issue sets none for it)."""
    worker = {"summary": {
        "1": {"this": {"jobs_per_s": 64.4, "outside_model_per_job_ms": 7.85}},
        "32": {"this": {"jobs_per_s": 129.3, "outside_model_per_job_ms": 2.23}},
    }}  # fmt: skip
    one, batch = bench_all.worker_lines(worker)
    assert "batch 1 " in one["speed"] and "batch 32 " in batch["speed"]
    assert batch["figure"] == "129.3 jobs/s, 2.23 ms per job outside the model"
    assert "goal" not in batch


def test_the_gpu_rows_take_each_precisions_best_batch_and_say_when_there_is_no_gpu(bench_all):
    def gpu_row(precision, batch, rate, variant="current"):
        return {"precision": precision, "batch": batch, "variant": variant,
                "images_per_s": rate, "ms_per_image": {"forward": 1.5},
                "against_f32": check(0.05, 300, 300, 300 if precision == "f32" else 7)}  # fmt: skip

    result = {
        "machine": {"device": "NVIDIA H200"},
        "results": [
            gpu_row("f32", 1, 60.0), gpu_row("f32", 64, 135.0), gpu_row("f32", 64, 115.0, "before"),
            gpu_row("bf16", 1, 78.0), gpu_row("bf16", 64, 1600.0),
            gpu_row("bf16", 64, 2000.0, "compiled"),  # exploratory: not the figure
        ],
    }  # fmt: skip
    f32, bf16 = bench_all.gpu_lines(result)
    assert (
        f32["figure"].startswith("135.0 img/s at batch 64")
        and "before this path 115.0" in f32["figure"]
    )
    assert "300/300 equal to f32" in f32["figure"] and f32["met"] == "not met"
    assert bf16["figure"].startswith("1,600.0 img/s at batch 64") and bf16["met"] == "**met**"
    [none] = bench_all.gpu_lines({"skipped": "no CUDA device on this machine"})
    assert "not measured: no CUDA device" in none["figure"] and "met" not in none
