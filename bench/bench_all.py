"""Every speed that matters, in one command, against issue 10's goals.

Runs each bench of ``bench/`` in turn (never two at once: on two cores they would measure
each other), each with its own processes and scratch databases, then prints one table: the
CPU and its GEMM peak, the detector against the naive pipeline (the fastest default with
equal detections, and the labelled fast variant with how its detections differ), the API
overhead, sync calls held with ``/healthz`` under load, one worker draining a queue in
batches, the pages with the production server, charges per second on PostgreSQL, and
where there is a CUDA device DETR-R50's images/s on it (``bench_gpu.py``), each beside its
goal::

    .venv/bin/python bench/bench_all.py             # 12-25 min on 2 cores (Xeon, Zen 3)
    .venv/bin/python bench/bench_all.py --quick     # fewer images, rounds and calls
    .venv/bin/python bench/bench_all.py --only detector,serving

The detector reads COCO images from ``--images`` (default: the shared test data when
present, else generated ones); serving, worker, pages and charges need PostgreSQL and Redis (the
local services; see each bench's ``--help``) and pages needs ``wrk``. A bench that cannot
run is reported as not run, with the end of its output, and the others go on. Writes the
table and every bench's own JSON to ``bench/results/all.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model, cpu_signature

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
BENCHES = ("detector", "families", "serving", "worker", "pages", "charges", "gpu")
# The fidelity tolerance (tests/playground/test_runtime_fidelity.py): a backend whose
# detections are all equal within it is "equal".
BOX_PX, SCORE = 1, 1e-4
FAMILY_LABELS = {"detr": "DETR-R50 at 800", "rt_detr": "RT-DETR R50", "yolos_tiny": "YOLOS tiny"}


def commands(out: Path, *, quick: bool, images: str | None) -> dict[str, list[str]]:
    """Each bench's command line (its JSON written to ``out``)."""
    py = sys.executable
    sample = ["--limit", "2", "--rounds", "2"] if quick else []
    source = ["--images", images] if images else []
    return {
        "detector": [py, str(BENCH / "bench_detector.py"), "--readme", *sample, *source,
                     "--out", str(out / "detector.json")],
        # torch beside OpenVINO: where an export is no faster (YOLOS tiny on some CPUs),
        # auto runs torch, and "the fastest f32" must be able to say so.
        "families": [py, str(BENCH / "bench_detector.py"), "--families", "rt_detr,yolos_tiny",
                     "--backends", "torch,openvino", "--limit", "2" if quick else "3",
                     "--rounds", "2" if quick else "3", *source,
                     "--out", str(out / "families.json")],
        "serving": [py, str(BENCH / "bench_serving.py"), "--calls", "100" if quick else "300",
                    "--overhead", "50", "--json", str(out / "serving.json")],
        "worker": [py, str(BENCH / "bench_worker.py"), "--batch-sizes", "1,32",
                   "--json", str(out / "worker.json")],
        "pages": [py, str(BENCH / "bench_pages.py"), "--server", "wsgi",
                  *(["--seconds", "5", "--rounds", "1"] if quick else []),
                  "--json", str(out / "pages.json")],
        "charges": [py, str(BENCH / "bench_charges.py"), "--seconds", "5" if quick else "10",
                    "--json", str(out / "charges.json")],
        # Only where there is a CUDA device (else a line that says so): DETR-R50 at 800.
        "gpu": [py, str(BENCH / "bench_gpu.py"), "--cuda-only", "--before",
                *(["--batch-sizes", "1,8,32,64", "--count", "128"] if quick else []),
                "--json", str(out / "gpu.json")],
    }  # fmt: skip


def equal_everywhere(row: dict) -> bool:
    """Every detection of the pipeline kept, and none other, within the fidelity tolerance,
    at 0.5 and at the floor."""
    checks = row.get("equality") or []
    return bool(checks) and all(
        c["equal"] == c["reference_kept"] == c["kept"]
        and c["worst_box_px"] <= BOX_PX
        and c["worst_score"] <= SCORE
        for c in checks
    )


def label(family: str) -> str:
    return FAMILY_LABELS.get(family, family)


def _equality_text(row: dict) -> str:
    parts = []
    for check in row.get("equality") or []:
        if not check["reference_kept"] and not check["kept"]:
            continue  # random weights keep nothing at 0.5 for some families
        parts.append(
            f"{check['equal']}/{check['reference_kept']} equal at {check['threshold']:g} "
            f"(kept {check['kept']}; worst box {check['worst_box_px']:g} px, "
            f"score {check['worst_score']:.1g})"
        )
    return "; ".join(parts)


def _per_round(row: dict) -> str:
    rounds = row.get("ratios_per_round") or []
    return f" (per round {', '.join(f'{r:.2f}' for r in rounds)})" if rounds else ""


def _verdict(met: bool) -> str:
    return "**met**" if met else "not met"


def detector_lines(result: dict) -> list[dict]:
    """The detector's rows: per family, the fastest f32 contender whose detections equal
    the pipeline's, and (DETR-R50) the fastest labelled reduced-precision variant."""
    lines = []
    machine = result.get("machine", {})
    has_bf16 = {"avx512_bf16", "amx_bf16"} & set(machine.get("flags", []))
    for family in result.get("families", []):  # bench_detector writes a list
        rows = {k: v for k, v in family["rows"].items() if k != "pipeline"}
        name = family["family"]
        pipeline = family["rows"].get("pipeline", {}).get("images_per_s")
        equal = {k: v for k, v in rows.items() if k.endswith("f32") and equal_everywhere(v)}
        if equal:
            best_name, best = max(equal.items(), key=lambda item: item[1]["ratio"])
            share = best.get("peak_share")
            text = (
                f"{best_name}: {best['ratio']:.2f}x the pipeline{_per_round(best)}, "
                f"{best['images_per_s']:.3f} against {pipeline:.3f} img/s"
            )
            if share is not None:
                text += f"; forward {best['forward_ms']:,.0f} ms at {share:.0%} of the fp32 peak"
            text += f"; {_equality_text(best)}"
            line = {
                "speed": f"{label(name)}: the fastest f32 with equal detections",
                "figure": text,
            }
            if name == "detr":
                line["goal"] = ">= 3x the pipeline end to end, i.e. forward >= 75% of the peak"
                line["met"] = (
                    f"3x: {_verdict(best['ratio'] >= 3)}; 75% of the peak: "
                    f"{_verdict(share is not None and share >= 0.75)}"
                )
            lines.append(line)
        else:
            lines.append(
                {
                    "speed": f"{label(name)}: the fastest f32 with equal detections",
                    "figure": "no f32 contender equal to the pipeline",
                }
            )
        # The labelled fast variants, the fastest of each precision (bf16; int8 of either
        # scope), each with exactly how its detections differ from the pipeline's.
        for precision in ("bf16", "int8"):
            fast = {k: v for k, v in rows.items() if k.split()[-1].startswith(precision)}
            if not fast:
                continue
            fast_name, row = max(fast.items(), key=lambda item: item[1]["ratio"])
            line = {
                "speed": f"{label(name)}: the fastest labelled {precision} variant",
                "figure": f"{fast_name}: {row['ratio']:.2f}x the pipeline{_per_round(row)}; "
                f"{_equality_text(row)}",
            }
            if name == "detr":
                line["goal"] = (
                    ">= 6x where the CPU has bf16 (a labelled variant), differences printed"
                )
                line["met"] = _verdict(row["ratio"] >= 6) if has_bf16 else "n/a (no bf16)"
            lines.append(line)
    return lines


def serving_lines(result: dict) -> list[dict]:
    lines = []
    overhead = result.get("api_overhead")
    if overhead:
        parts = ", ".join(f"{k} {v}" for k, v in overhead.get("parts_p50_ms", {}).items())
        wal = overhead.get("wal_bytes_per_call")
        lines.append(
            {
                "speed": f"API overhead ({overhead['calls']} sequential sync calls, p50 / p95)",
                "figure": f"{overhead['overhead_p50_ms']} / {overhead['overhead_p95_ms']} ms"
                + (f" (p50 ms: {parts})" if parts else "")
                + (f"; {wal:,} bytes of WAL per call" if wal is not None else ""),
                "goal": "<= 15 ms p50",
                "met": _verdict(overhead["overhead_p50_ms"] <= 15),
            }
        )
    kept = result.get("api_overhead_kept_connection")
    if kept:
        lines.append(
            {
                "speed": "the same on one kept connection (as SDK clients call), alternating",
                "figure": f"{kept['overhead_p50_ms']} / {kept['overhead_p95_ms']} ms "
                f"({kept['saved_vs_new_connection_p50_ms']} ms less per pair)",
                "goal": "<= 15 ms p50",
                "met": _verdict(kept["overhead_p50_ms"] <= 15),
            }
        )
    if result.get("calls"):
        answered = result["calls"] - result["unanswered"]
        ok = not result["server_errors"] and not result["unanswered"]
        ok = ok and result["healthz_p95_ms"] < 100
        lines.append(
            {
                "speed": f"{result['calls']} concurrent sync calls held; /healthz meanwhile",
                "figure": f"{answered}/{result['calls']} answered {result['statuses']}, "
                f"{result['server_errors']} x 5xx; /healthz p95 {result['healthz_p95_ms']} ms "
                f"({result['healthz_probes']} probes)",
                "goal": "all answered, no 5xx, /healthz p95 < 100 ms",
                "met": _verdict(ok),
            }
        )
    return lines


def worker_lines(result: dict) -> list[dict]:
    """One worker draining a queue: jobs/s and its own time per job beside the model's, per
    batch size (what caps a GPU worker, whose forward takes a few ms per image)."""
    lines = []
    for batch, row in result.get("summary", {}).items():
        rate, own = row["this"]["jobs_per_s"], row["this"]["outside_model_per_job_ms"]
        lines.append(
            {
                "speed": f"one worker draining a queue, batch {batch} (a test-sized model: "
                "the serving path's own cost)",
                "figure": f"{rate:,.1f} jobs/s, {own:.2f} ms per job outside the model",
            }
        )
    return lines


def pages_lines(result: dict) -> list[dict]:
    lines = []
    for page in result.get("results", []):
        line = {
            "speed": f"{page['page']}, production server",
            "figure": f"{page['requests_per_s']:,.0f} req/s, p95 {page['p95_ms']:.0f} ms, "
            f"{page['errors']} errors",
        }
        if "cached" in page["page"]:
            line["goal"] = ">= 300 req/s, p95 <= 50 ms"
            line["met"] = _verdict(
                page["requests_per_s"] >= 300 and page["p95_ms"] <= 50 and not page["errors"]
            )
        lines.append(line)
    return lines


def charges_lines(result: dict) -> list[dict]:
    lines = []
    for run in result.get("results", []):
        processes = run.get("client_processes", run["clients"])
        shape = (
            f", {processes} processes x {run['clients'] // processes} threads"
            if processes != run["clients"]
            else ""
        )
        line = {
            "speed": f"charges/s on PostgreSQL, {run['clients']} client(s), "
            f"{run['wallets']} wallet(s) ({run['scenario']}{shape})",
            "figure": f"{run['charges_per_s']:,.1f}/s, {run['deadlocks_seen_by_clients']} "
            f"deadlocks, {run['errors']} errors, ledger {'ok' if run['ledger']['ok'] else 'WRONG'}",
        }
        # 16 users paying at once, the scenario: as 16 processes (16 interpreters on
        # the same cores, the clients' harshest shape) and as the web tier runs them
        if run["scenario"] in ("own", "own_web"):
            line["goal"] = ">= 1,000/s from 16 clients, the ledger checked"
            line["met"] = _verdict(
                run["charges_per_s"] >= 1000 and run["ledger"]["ok"] and not run["errors"]
            )
        lines.append(line)
    return lines


def gpu_lines(result: dict) -> list[dict]:
    """DETR-R50 at 800 from JPEG bytes on the GPU: per precision its best batch size, and
    the same run's path before batched device preprocessing where it was measured."""
    if "skipped" in result:
        return [{"speed": "DETR-R50 at 800 on a GPU, end to end from JPEG bytes",
                 "figure": f"not measured: {result['skipped']} (bench_gpu.py on a GPU host)",
                 "goal": ">= 1,500 img/s on one H200"}]  # fmt: skip
    lines = []
    rows = result.get("results", [])
    for precision in dict.fromkeys(row["precision"] for row in rows):
        mine = [r for r in rows if r["precision"] == precision and r["variant"] == "current"]
        if not mine:
            continue
        best = max(mine, key=lambda r: r["images_per_s"])
        before = [r for r in rows if r["precision"] == precision and r["variant"] == "before"]
        same = best.get("against_f32")
        figure = (
            f"{best['images_per_s']:,.1f} img/s at batch {best['batch']} (batch "
            + ", ".join(f"{r['batch']}: {r['images_per_s']:,.0f}" for r in mine)
            + f"); forward {best['ms_per_image']['forward']:.2f} ms/image"
        )
        if before:
            figure += f"; before this path {before[0]['images_per_s']:,.1f}"
        if same:
            figure += f"; {same['equal']}/{same['reference_kept']} equal to f32"
        lines.append(
            {
                "speed": f"DETR-R50 at 800 on {result['machine']['device']}, {precision}, "
                "end to end from JPEG bytes",
                "figure": figure,
                "goal": ">= 1,500 img/s on one H200",
                "met": _verdict(best["images_per_s"] >= 1500),
            }
        )
    return lines


SUMMARIES = {
    "detector": detector_lines,
    "families": detector_lines,
    "serving": serving_lines,
    "worker": worker_lines,
    "pages": pages_lines,
    "charges": charges_lines,
    "gpu": gpu_lines,
}


def peak_text(detector: dict | None) -> str:
    if not detector:
        return "GEMM peak not measured (the detector bench did not run)"
    gemm = detector.get("machine", {}).get("gemm_gflops", {})
    parts = []
    for precision, unit in (("f32", "GFLOP/s"), ("bf16", "GFLOP/s"), ("int8", "GOP/s")):
        if precision in gemm:
            found = gemm[precision]
            parts.append(f"{precision} {found['best']:,.0f} {unit} (per-round median "
                         f"{found.get('rounds_median', found['best']):,.0f})")  # fmt: skip
    return "GEMM 4096 peak: " + ", ".join(parts) if parts else "GEMM peak not recorded"


def markdown(lines: list[dict]) -> str:
    out = ["| speed | measured | goal | |", "| --- | --- | --- | --- |"]
    for line in lines:
        out.append(
            f"| {line['speed']} | {line['figure']} | {line.get('goal', '')} "
            f"| {line.get('met', '')} |"
        )
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images, rounds and calls")
    parser.add_argument("--only", default=",".join(BENCHES), help=",".join(BENCHES))
    parser.add_argument("--images", help="COCO images for the detector (bench_detector)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "all.json")
    args = parser.parse_args()
    chosen = [name for name in args.only.split(",") if name]
    unknown = set(chosen) - set(BENCHES)
    if unknown:
        parser.error(f"unknown bench(es): {', '.join(sorted(unknown))}")
    cpu = f"{cpu_model()} ({cpu_signature()})" if cpu_signature() else cpu_model()
    results: dict[str, dict] = {}
    not_run: dict[str, str] = {}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="vitrine-bench-all-") as scratch:
        scratch_dir = Path(scratch)
        planned = commands(scratch_dir, quick=args.quick, images=args.images)
        for name in chosen:
            print(f"== {name}: {' '.join(planned[name][1:])}", file=sys.stderr, flush=True)
            began = time.monotonic()
            run = subprocess.run(planned[name], cwd=REPO, capture_output=True, text=True)
            seconds[name] = round(time.monotonic() - began, 1)
            written = scratch_dir / f"{name}.json"
            if run.returncode != 0 or not written.exists():
                tail = (run.stdout + run.stderr).strip().splitlines()[-5:]
                not_run[name] = f"exit {run.returncode}: " + " | ".join(tail)
                print(f"   not run: {not_run[name]}", file=sys.stderr, flush=True)
                continue
            results[name] = json.loads(written.read_text())
    lines = []
    for name in chosen:
        if name in results:
            lines.extend(SUMMARIES[name](results[name]))
        else:
            lines.append({"speed": name, "figure": f"not run ({not_run[name]})"})
    head = f"CPU: {cpu}; {peak_text(results.get('detector'))}"
    print()
    print(head)
    print()
    print(markdown(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "cpu": cpu,
                "quick": args.quick,
                "head": head,
                "table": lines,
                "seconds": seconds,
                "not_run": not_run,
                "results": results,
            },
            indent=1,
        )
    )
    print(f"\nwrote {args.out}")
    return 0 if not not_run else 1


if __name__ == "__main__":
    sys.exit(main())
