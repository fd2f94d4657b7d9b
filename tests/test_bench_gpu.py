"""bench/bench_gpu.py keeps working where there is no GPU: the same code path (decode threads,
the device preprocessing, batches) on the CPU, test-sized. No speed is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.same_on_any_database

REPO = Path(__file__).resolve().parent.parent


def test_the_gpu_bench_runs_the_device_path_on_a_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    command = [
        sys.executable, str(REPO / "bench" / "bench_gpu.py"), "--device", "cpu",
        "--family", "yolos_tiny", "--test-size", "--batch-sizes", "1,3", "--count", "6",
        "--precisions", "f32", "--rounds", "1", "--decode-threads", "2", "--before",
        "--json", str(out),
    ]  # fmt: skip
    env = {**os.environ, "VITRINE_DEVICE_PREPROCESS": "on"}  # as on a CUDA device
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["machine"]["decode_threads"] == 2 and report["images"] == 6
    rows = report["results"]
    assert [(r["precision"], r["batch"], r["variant"]) for r in rows] == [
        ("f32", 1, "current"),
        ("f32", 3, "current"),
        ("f32", 3, "unfused"),  # the layers not fused with their activations
        ("f32", 3, "nchw"),  # the fused model in NCHW memory
        ("f32", 3, "short-switch"),  # the GIL handed over every 0.5 ms
        ("f32", 3, "serial-forward"),  # the forwards on the calling thread
        ("f32", 3, "before"),  # per-image preprocessing, each batch in turn
    ]
    for row in rows:
        assert row["device_preprocess"] is True
        # YOLOS has no convolution to fuse, but its memory format is still the row's.
        assert row["channels_last"] is (row["variant"] != "nchw")
        assert (row["switch_interval_ms"] == 0.5) is (row["variant"] == "short-switch")
        assert row["images_per_s"] > 0
        assert set(row["ms_per_image"]) == {"decode", "preprocess", "forward", "postprocess"}
        same = row["against_f32"]
        # Batches of three answer what one image at a time does, every detection, whether
        # their inputs were built together or one by one.
        assert same["reference_kept"] > 0
        assert same["equal"] == same["reference_kept"] == same["kept"]
    assert report["best"]["images_per_s"] == max(r["images_per_s"] for r in rows[:2])


def test_without_a_cuda_device_it_says_so_for_bench_all(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    out = tmp_path / "gpu.json"
    command = [
        sys.executable,
        str(REPO / "bench" / "bench_gpu.py"),
        "--cuda-only",
        "--json",
        str(out),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(out.read_text())["skipped"] == "no CUDA device on this machine"
