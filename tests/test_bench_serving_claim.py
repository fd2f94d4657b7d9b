"""bench/bench_serving.py's hold on its Redis database: a second bench stack on the same
database is refused at once with what holds it, instead of both running and taking each
other's jobs (one of them then sees a call wait out its bound: a 202 that reads as a fault
of the serving path). No bench runs here."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from tests.bench_modules import BENCH, bench_module

pytestmark = pytest.mark.same_on_any_database


@pytest.fixture(scope="module")
def bench_serving():
    with bench_module("bench_serving") as module:
        yield module


def test_one_stack_per_redis_database(bench_serving):
    url = f"redis://127.0.0.1:6379/{uuid.uuid4().hex}"  # a name no other run uses
    held = bench_serving.redis_claim(url)
    try:
        with pytest.raises(SystemExit) as refused:
            bench_serving.redis_claim(url)
        assert url in str(refused.value) and f"pid {os.getpid()}" in str(refused.value)
        # Another process is refused alike (the lock is the file's, not this process's).
        other = subprocess.run(
            [sys.executable, "-c",
             "import sys; sys.path.insert(0, sys.argv[1]); import bench_serving as b; "
             "b.redis_claim(sys.argv[2])", str(BENCH), url],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert other.returncode != 0 and "another bench stack" in other.stderr
        # Another database is free.
        bench_serving.redis_claim(url + "-other").close()
    finally:
        held.close()
    bench_serving.redis_claim(url).close()  # free again once let go
    for name in (url, url + "-other"):
        bench_serving.redis_claim_path(name).unlink()
