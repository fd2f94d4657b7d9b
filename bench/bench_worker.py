"""What one worker process spends on each job outside the model while it drains a queue in
batches: what caps a worker on a GPU, where the forward takes a few ms per image.

    .venv/bin/python bench/bench_worker.py                          # batch sizes 1, 8, 32
    .venv/bin/python bench/bench_worker.py --batch-sizes 32 --jobs 192 --json var/w.json
    git worktree add /tmp/base <commit>
    .venv/bin/python bench/bench_worker.py --base /tmp/base --rounds 3   # two checkouts, A/B

Each side is ``bench_serving.Stack`` (one uvicorn web process, one Celery worker of
concurrency 1, its own scratch PostgreSQL database and Redis database) on a random-weight
YOLOS tiny at a test-sized input and depth (``--size``, ``--layers``: a forward of a few ms
per image on a CPU, as a GPU's would be; the worker's path is the production one,
``VITRINE_BATCH_SIZE`` set per run).
For each batch size, with the worker stopped, ``--jobs`` paid jobs are queued through the
API (``Prefer: respond-async``); then the worker starts and drains them. From the job rows:
the jobs claimed after the first batch finished (the first waited for the model's load),
their jobs/s, and per job the worker's time outside the model (the span per job minus the
job's decode + preprocess + forward + postprocess). With ``--base`` the two checkouts
alternate round by round (base then this, this then base, ...) and the ratio of each
round's jobs/s is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import psycopg
from bench_serving import MODEL_PARTS, REPO, Stack, fetch, jpeg
from machine import cpu_model  # bench/machine.py (bench/ is on the path)


async def submit(port: int, model_id: str, key: str, jobs: int, image: bytes) -> list[str]:
    """Queue ``jobs`` paid jobs through the API, 8 at a time; their ids."""
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "image/jpeg",
        "Prefer": "respond-async",
    }
    gate = asyncio.Semaphore(8)

    async def one() -> str:
        async with gate:
            status, found, body, _ = await fetch(
                port, "POST", f"/v1/inference/{model_id}", image, headers
            )
        if status != 202:
            raise SystemExit(f"queueing a job answered {status}: {body[:300]!r}")
        return found["x-vitrine-job-id"]

    return list(await asyncio.gather(*(one() for _ in range(jobs))))


def rows(database_url: str, ids: list[str]) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT status, extract(epoch FROM started_at)::float8, "
            "extract(epoch FROM finished_at)::float8, "
            "timings FROM playground_job WHERE id = ANY(%s::uuid[])",
            [ids],
        ).fetchall()


def drain(stack: Stack, side: tuple, batch: int, jobs: int, image: bytes) -> dict:
    """Queue ``jobs`` with no worker running, start one, wait until every job is final."""
    port, model_id, key, database_url = side
    ids = asyncio.run(submit(port, model_id, key, jobs, image))
    stack.env["VITRINE_BATCH_SIZE"] = str(batch)
    worker = stack.worker_start()
    deadline = time.monotonic() + 600
    try:
        while True:
            found = rows(database_url, ids)
            if all(status in ("succeeded", "failed") for status, *_ in found):
                break
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit(f"the worker did not drain the queue (logs: {stack.logs})")
            time.sleep(0.2)
    finally:
        stack.worker_stop(worker)
    failed = sum(status != "succeeded" for status, *_ in found)
    if failed:
        raise SystemExit(f"{failed} of {jobs} jobs failed (logs: {stack.logs})")
    # The first batch waited for the model's load: measure the jobs claimed after it ended.
    first_end = min(finished for _, _, finished, _ in found)
    first = [r for r in found if r[1] <= first_end]
    rest = [r for r in found if r[1] > first_end]
    start = max(finished for _, _, finished, _ in first)
    span = max(finished for _, _, finished, _ in rest) - start
    model = statistics.fmean(sum(t.get(k, 0.0) for k in MODEL_PARTS) for *_, t in rest)
    batches = [t.get("batch", 1) for *_, t in rest]
    return {
        "jobs": len(rest),
        "jobs_per_s": len(rest) / span,
        "per_job_ms": 1000 * span / len(rest),
        "model_per_job_ms": 1000 * model,
        "outside_model_per_job_ms": 1000 * (span / len(rest) - model),
        "mean_batch": statistics.fmean(batches),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--jobs", type=int, default=0, help="per run (default: 6 batches, >= 48)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--size", type=int, default=64, help="the model input's shortest edge")
    parser.add_argument("--layers", type=int, default=1, help="YOLOS tiny's encoder layers (12)")
    parser.add_argument("--base", type=Path, help="another checkout, run alternately")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--worker-threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    size = {"shortest_edge": args.size, "longest_edge": args.size * 4 // 3}
    repos = {"this": REPO, **({"base": args.base.resolve()} if args.base else {})}
    redis_base = args.redis_url.rsplit("/", 1)[0]
    stacks = {
        name: Stack(repo, args.database_url, f"{redis_base}/{12 + i}", 30, args.worker_threads,
                    processor_size=size, config_overrides={"num_hidden_layers": args.layers})
        for i, (name, repo) in enumerate(repos.items())
    }  # fmt: skip
    image = jpeg()
    results: dict[int, dict[str, list[dict]]] = {}
    try:
        sides = {name: stack.start(worker=False) for name, stack in stacks.items()}
        order = list(stacks)
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            jobs = args.jobs or max(48, 6 * batch)
            results[batch] = {name: [] for name in order}
            for round_ in range(args.rounds):
                for name in order if round_ % 2 == 0 else order[::-1]:
                    run = drain(stacks[name], sides[name], batch, jobs, image)
                    results[batch][name].append(run)
                    print(
                        f"batch {batch:>2} {name:>4} round {round_ + 1}: "
                        f"{run['jobs_per_s']:7.1f} jobs/s, outside the model "
                        f"{run['outside_model_per_job_ms']:.2f} ms/job (model "
                        f"{run['model_per_job_ms']:.2f} ms/job, mean batch "
                        f"{run['mean_batch']:.1f})",
                        flush=True,
                    )
    finally:
        for stack in stacks.values():
            stack.stop()

    print(
        f"CPU: {cpu_model()} ({os.cpu_count()} cores); random-weight YOLOS tiny at {size}, "
        f"{args.layers} encoder layer(s)"
    )
    summary = {}
    for batch, by_side in results.items():
        row = {
            name: {
                "jobs_per_s": statistics.median(r["jobs_per_s"] for r in runs),
                "outside_model_per_job_ms": statistics.median(
                    r["outside_model_per_job_ms"] for r in runs
                ),
            }
            for name, runs in by_side.items()
        }
        line = f"batch {batch:>2}: " + "; ".join(
            f"{name} {v['jobs_per_s']:.1f} jobs/s, {v['outside_model_per_job_ms']:.2f} ms/job "
            "outside the model"
            for name, v in row.items()
        )
        if "base" in by_side:
            ratios = [
                t["jobs_per_s"] / b["jobs_per_s"]
                for t, b in zip(by_side["this"], by_side["base"], strict=True)
            ]
            row["ratio_per_round"] = ratios
            line += f"; this/base per round {', '.join(f'{r:.2f}x' for r in ratios)}"
        summary[batch] = row
        print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"cpu": cpu_model(), "cores": os.cpu_count(), "input": size,
                 "summary": summary, "runs": results}, indent=2,
            )
        )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
