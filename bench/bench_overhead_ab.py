"""The API overhead of two checkouts, interleaved call by call in one run.

    git worktree add /tmp/base <commit>       # the code to compare against
    .venv/bin/python bench/bench_overhead_ab.py --base /tmp/base --calls 100

A change to the serving path saves a millisecond or two of a ~20 ms overhead, while the
shared machine's load moves a 50-call run's p50 by several milliseconds between minutes
(the model's own p50 moved 407 -> 466 ms between back-to-back runs). Here both checkouts run
at once, each as ``bench_serving.py`` runs it (``Stack``: one uvicorn web process and one
Celery worker, its own scratch PostgreSQL database and Redis database, a random-weight YOLOS
tiny), and the sequential sync calls alternate between them (base then this, this then base,
...), so every pair of calls shares the same moment's load; only one side works at a time.
Prints each side's overhead (call time minus the job's model time) p50/p95 with its parts,
and the median of the per-pair differences (this minus base) with its spread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
from pathlib import Path
from urllib.parse import urlsplit

from bench_serving import (
    FLAVOUR_PATHS,
    REPO,
    Stack,
    jpeg,
    load,
    overhead_call,
    overhead_summary,
)
from machine import cpu_model  # bench/machine.py (bench/ is on the path)


def redis_db(url: str, db: int) -> str:
    return urlsplit(url)._replace(path=f"/{db}").geturl()


async def interleaved(
    sides: dict, calls: int, image: bytes, flavour: str = "vitrine"
) -> dict[str, list[dict]]:
    made: dict[str, list[dict]] = {name: [] for name in sides}
    order = list(sides)
    for i in range(calls):
        for name in order if i % 2 == 0 else order[::-1]:
            port, model_id, key, database_url = sides[name]
            made[name].append(
                await overhead_call(port, model_id, key, image, database_url, flavour=flavour)
            )
    return made


def paired(made: dict[str, list[dict]], value) -> dict:
    """Median and quartiles (ms) of this minus base, pair by pair."""
    pairs = zip(made["base"], made["this"], strict=True)
    diffs = sorted(1000 * (value(this) - value(base)) for base, this in pairs)
    q = statistics.quantiles(diffs, n=4)
    return {"median_ms": round(statistics.median(diffs), 2), "q1_ms": round(q[0], 2),
            "q3_ms": round(q[2], 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="the checkout to compare with")
    parser.add_argument("--calls", type=int, default=100, help="sequential calls per side")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--worker-threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument(
        "--base-env", action="append", default=[], metavar="NAME=VALUE",
        help="an environment variable of the base side's web and worker (repeatable): with "
        "--base pointing at this checkout, an A/B of a setting",
    )  # fmt: skip
    parser.add_argument("--this-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument(
        "--flavour", choices=sorted(FLAVOUR_PATHS), default="vitrine",
        help="whose synchronous route the calls take: Vitrine's own, Hugging Face's or "
        "Cloudflare's drop-in",
    )  # fmt: skip
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    env = {
        side: dict(item.split("=", 1) for item in items)
        for side, items in (("base", args.base_env), ("this", args.this_env))
    }

    stacks = {
        "base": Stack(args.base.resolve(), args.database_url, redis_db(args.redis_url, 12), 30,
                      args.worker_threads, env["base"]),
        "this": Stack(REPO, args.database_url, redis_db(args.redis_url, 13), 30,
                      args.worker_threads, env["this"]),
    }  # fmt: skip
    image = jpeg()
    try:
        sides = {name: stack.start() for name, stack in stacks.items()}
        for port, model_id, key, _ in sides.values():
            asyncio.run(load(port, model_id, key, 1))  # each worker loads its model first
        made = asyncio.run(interleaved(sides, args.calls, image, args.flavour))
    finally:
        for stack in stacks.values():
            stack.stop()
    result = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "base": str(args.base.resolve()),
        "this": str(REPO),
        "env": env,
        "flavour": args.flavour,
        **{name: overhead_summary(calls, image) for name, calls in made.items()},
        "this_minus_base": {
            "overhead": paired(made, lambda c: c["overhead"]),
            **{
                part: paired(made, lambda c, part=part: c["parts"][part])
                for part in made["base"][0]["parts"]
            },
        },
    }
    print(
        f"CPU: {result['cpu']} ({result['cores']} cores); {args.calls} calls per side, "
        f"{args.flavour} route"
    )
    for name in stacks:
        row = result[name]
        print(
            f"{name}: overhead p50 {row['overhead_p50_ms']} ms, p95 {row['overhead_p95_ms']} "
            f"ms (model p50 {row['model_p50_ms']} ms); parts p50 {row['parts_p50_ms']}"
        )
    for name, diff in result["this_minus_base"].items():
        print(
            f"this - base, {name}: median {diff['median_ms']:+} ms "
            f"(quartiles {diff['q1_ms']:+} / {diff['q3_ms']:+})"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
