"""Load proof of the serving path: many synchronous inference calls held by one web process.

    .venv/bin/python bench/bench_serving.py                 # 300 calls, PostgreSQL + Redis
    .venv/bin/python bench/bench_serving.py --calls 100 --json var/bench-serving.json
    .venv/bin/python bench/bench_serving.py --calls 0 --overhead 50   # the API-overhead row only

Starts, as production runs them, one web process (uvicorn, ASGI) and one Celery worker
(concurrency 1) on a random-weight YOLOS tiny (published architecture and input size:
the compute is real, the boxes are not), against PostgreSQL and Redis (``--database-url``,
``--redis-url``; a scratch database is created and dropped). Then it sends ``--calls``
synchronous ``POST /v1/inference`` calls at once (each waits up to ``--sync-wait`` s for
its job, then answers 202) while probing ``GET /healthz`` every 50 ms, and prints:
answers by status (the goal: no 5xx, every call answered), call latencies, and /healthz
latency while the calls wait (the goal: p95 under 100 ms). No third-party load tool: a
minimal asyncio HTTP/1.1 client, one connection per call.

``--overhead N`` (default 50; 0 skips it) first measures the API's own overhead, the row of
issue 10's bench: N sequential synchronous calls, each call's end-to-end time minus its
job's model time (the worker's decode + preprocess + forward + postprocess, read back from
``GET /v1/jobs/<id>``), p50/p95; the goal is <= 15 ms p50. ``--overhead-photo N`` measures
the same row with a 12-megapixel JPEG (a phone camera's), where the web tier's own handling
of the upload (reading it, checking it, storing it) weighs more.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import hashlib
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from machine import cpu_model  # bench/machine.py (bench/ is on the path)

REPO = Path(__file__).resolve().parent.parent

SETUP = """
import sys
from decimal import Decimal
import django
django.setup()
from billing.services.keys import api_key_create
from billing.services.topups import credit_grant
from tests import factories
card = factories.card(checkpoint_local_dir=sys.argv[1])
factories.route(card=card, price=Decimal("0.0002"))
user = factories.user(username="bench")
credit_grant(user=user, amount=Decimal("100"), reason="bench")
print(card.model_id, api_key_create(user=user, name="bench")[1])
"""


# The job's timings (``GET /v1/jobs/<id>``) that are the model's work: what the overhead
# row subtracts from each call's end-to-end time.
MODEL_PARTS = ("decode", "preprocess", "forward", "postprocess")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jpeg(width: int = 640, height: int = 480) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (width, height), (40, 120, 200))
    image.paste((230, 200, 40), (100, 80, 400, 300))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


async def http(port: int, method: str, path: str, body: bytes = b"", headers=None):
    """One request on its own connection: (status, seconds). Connection errors are -1."""
    began = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        head.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()  # the rest, until the server closes
        writer.close()
        status = int(status_line.split()[1])
    except (OSError, IndexError, ValueError):
        status = -1
    return status, time.perf_counter() - began


async def fetch(port: int, method: str, path: str, body: bytes = b"", headers=None):
    """One request on its own connection: (status, response headers, body, seconds)."""
    began = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    head.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
    raw = await reader.read()  # until the server closes
    seconds = time.perf_counter() - began
    writer.close()
    header_block, _, payload = raw.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    found = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        found[name.strip().lower()] = value.strip()
    if found.get("transfer-encoding") == "chunked":
        payload = _unchunk(payload)
    return int(lines[0].split()[1]), found, payload, seconds


class KeptConnection:
    """One HTTP/1.1 connection kept open across requests, as SDK clients call (requests'
    and httpx's pools, huggingface_hub, openai): ``fetch`` without the connect and close
    that ``fetch`` above pays on every call. Opened again if the server closed it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.opened = 0  # connections opened: 1 when the server kept it for every call

    async def fetch(self, method: str, path: str, body: bytes = b"", headers=None):
        """(status, response headers, body, seconds), the seconds from the request's first
        byte written (on a connection already open) to its body's last byte read."""
        if self.writer is None or self.writer.is_closing() or self.reader.at_eof():
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.opened += 1
        began = time.perf_counter()
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        head.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        header_block = await self.reader.readuntil(b"\r\n\r\n")
        lines = header_block.decode("latin-1").rstrip("\r\n").split("\r\n")
        found = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            found[name.strip().lower()] = value.strip()
        if found.get("transfer-encoding") == "chunked":
            payload = b""
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                payload += (await self.reader.readexactly(size + 2))[:-2]
            await self.reader.readuntil(b"\r\n")
        else:
            payload = await self.reader.readexactly(int(found.get("content-length", 0)))
        seconds = time.perf_counter() - began
        if found.get("connection", "").lower() == "close":
            self.writer.close()
        return int(lines[0].split()[1]), found, payload, seconds

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def phone_photo(width: int = 4032, height: int = 3024) -> bytes:
    """A 12-megapixel JPEG the size of a phone camera's (~3 MB): smooth gradients with
    sensor-like noise, so the compressed stream is as dense as a photo's."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width * 200, y / height * 200, (x + y) / (width + height) * 255], -1)
    noisy = base + rng.normal(0, 6, size=base.shape).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# Where each flavour's synchronous call goes (each takes the raw image bytes).
FLAVOUR_PATHS = {
    "vitrine": "/v1/inference/{model}",
    "hf": "/hf/models/{model}",
    "cloudflare": "/client/v4/accounts/bench/ai/run/@cf/{model}",
}


async def overhead_call(
    port: int,
    model_id: str,
    key: str,
    image: bytes,
    database_url: str | None = None,
    flavour: str = "vitrine",
    kept: KeptConnection | None = None,
) -> dict:
    """One sequential sync call: its end-to-end seconds, its job's model seconds and, with
    ``database_url``, the job row's moments (same clock) to split the rest. ``flavour``:
    Vitrine's own API, or the Hugging Face or Cloudflare drop-in route. ``kept``: the call
    goes on that open connection instead of a new one."""
    auth = {"Authorization": f"Bearer {key}"}
    headers = {**auth, "Content-Type": "image/jpeg"}
    if flavour == "hf":
        headers["x-use-cache"] = "false"  # every call runs its job (the same image each time)
    sent = time.time()
    path = FLAVOUR_PATHS[flavour].format(model=model_id)
    if kept is None:
        status, found, _, seconds = await fetch(port, "POST", path, image, headers)
    else:
        status, found, _, seconds = await kept.fetch("POST", path, image, headers)
    answered = time.time()
    if status != 200:
        raise SystemExit(f"a sequential sync call answered {status}")
    job_id = found["x-vitrine-job-id"]
    status, _, body, _ = await fetch(port, "GET", f"/v1/jobs/{job_id}", headers=auth)
    timings = json.loads(body)["timings"]
    # The model's own time only: "queue" (the wait before the claim) and "batch" (a
    # count) are not the model's; neither is "load" (only a cold worker's first job).
    model = sum(timings.get(k, 0.0) for k in MODEL_PARTS)
    call = {"overhead": seconds - model, "total": seconds, "model": model}
    if database_url:
        created, started, finished = job_moments(database_url, job_id)
        call["parts"] = {
            "request_to_job_created": created - sent,
            "queue_wait": started - created,
            "worker_outside_model": finished - started - model,
            "job_finished_to_response": answered - finished,
        }
    return call


def overhead_summary(calls: list[dict], image: bytes) -> dict:
    """p50/p95 (ms) of sequential calls measured by ``overhead_call``."""
    result = {
        "calls": len(calls),
        "image_bytes": len(image),
        "overhead_p50_ms": round(1000 * pct([c["overhead"] for c in calls], 50), 1),
        "overhead_p95_ms": round(1000 * pct([c["overhead"] for c in calls], 95), 1),
        "call_p50_ms": round(1000 * pct([c["total"] for c in calls], 50), 1),
        "model_p50_ms": round(1000 * pct([c["model"] for c in calls], 50), 1),
    }
    if calls and "parts" in calls[0]:
        for q in (50, 95):
            result[f"parts_p{q}_ms"] = {
                name: round(1000 * pct([c["parts"][name] for c in calls], q), 1)
                for name in calls[0]["parts"]
            }
    # The machine is shared: the 1-minute load average when the row was measured.
    result["load_average_1m"] = round(os.getloadavg()[0], 2)
    return result


async def api_overhead(
    port: int,
    model_id: str,
    key: str,
    calls: int,
    database_url: str | None = None,
    image: bytes | None = None,
) -> dict:
    """N sequential sync calls: call time minus the job's model time, p50/p95 (ms); with
    ``database_url``, where the overhead goes (the job row's timestamps, same clock).
    ``image``: what each call sends (default: the 640x480 JPEG of the load test)."""
    image = image or jpeg()
    made = [await overhead_call(port, model_id, key, image, database_url) for _ in range(calls)]
    return overhead_summary(made, image)


async def api_overhead_both(
    port: int, model_id: str, key: str, calls: int, database_url: str | None = None
) -> tuple[dict, dict]:
    """``api_overhead`` twice, call by call alternating in one run: each call on a new
    connection (as the issue measured it) and on one kept connection (as SDK clients call);
    (new, kept) summaries, and the kept one's median saving per pair."""
    image = jpeg()
    kept = KeptConnection(port)
    new: list[dict] = []
    held: list[dict] = []
    wal_from = wal_lsn(database_url) if database_url else None
    try:
        for i in range(calls):
            for on_kept in (False, True) if i % 2 == 0 else (True, False):
                call = await overhead_call(
                    port, model_id, key, image, database_url, kept=kept if on_kept else None
                )
                (held if on_kept else new).append(call)
    finally:
        kept.close()
    kept_summary = overhead_summary(held, image)
    saved = sorted(1000 * (a["overhead"] - b["overhead"]) for a, b in zip(new, held, strict=True))
    kept_summary["saved_vs_new_connection_p50_ms"] = round(saved[len(saved) // 2], 2)
    kept_summary["connections_opened"] = kept.opened
    new_summary = overhead_summary(new, image)
    if wal_from is not None:
        # What a call writes (its job, claim, finish, attempt, charge and ledger; and this
        # bench's read of the job): WAL is cluster-wide, so nothing else may write meanwhile.
        new_summary["wal_bytes_per_call"] = round(
            wal_bytes_since(database_url, wal_from) / (len(new) + len(held))
        )
    return new_summary, kept_summary


def wal_lsn(database_url: str) -> str:
    import psycopg

    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]


def wal_bytes_since(database_url: str, lsn: str) -> int:
    import psycopg

    with psycopg.connect(database_url) as conn:
        query = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)"
        return int(conn.execute(query, [lsn]).fetchone()[0])


def job_moments(database_url: str, job_id: str) -> tuple[float, float, float]:
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM created_at), extract(epoch FROM started_at), "
            "extract(epoch FROM finished_at) FROM playground_job WHERE id = %s",
            [job_id],
        ).fetchone()
    return tuple(float(v) for v in row)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def load(port: int, model_id: str, key: str, calls: int) -> dict:
    image = jpeg()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg"}
    health: list[float] = []
    probes: list[tuple[float, float]] = []  # (wall-clock start, seconds) of each 200
    health_errors = 0
    done = asyncio.Event()

    async def probe():
        nonlocal health_errors
        await asyncio.sleep(1.0)  # once the calls are in and waiting
        while not done.is_set():
            started = time.time()
            status, seconds = await http(port, "GET", "/healthz")
            if status == 200:
                health.append(seconds)
                probes.append((started, seconds))
            else:
                health_errors += 1
            await asyncio.sleep(0.05)

    prober = asyncio.create_task(probe())
    began_wall = time.time()
    began = time.perf_counter()
    results = await asyncio.gather(
        *(http(port, "POST", f"/v1/inference/{model_id}", image, headers) for _ in range(calls))
    )
    elapsed = time.perf_counter() - began
    done.set()
    await prober
    statuses: dict[str, int] = {}
    for status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    latencies = [s for _, s in results]
    return {
        "calls": calls,
        "_began": began_wall,
        "elapsed_s": round(elapsed, 1),
        "statuses": statuses,
        "server_errors": sum(n for s, n in statuses.items() if int(s) >= 500),
        "unanswered": statuses.get("-1", 0),
        "call_p50_s": round(pct(latencies, 50), 2),
        "call_max_s": round(max(latencies), 2),
        "healthz_probes": len(health),
        "healthz_errors": health_errors,
        "healthz_p50_ms": round(1000 * pct(health, 50), 1),
        "healthz_p95_ms": round(1000 * pct(health, 95), 1),
        "healthz_max_ms": round(1000 * max(health), 1) if health else None,
        "_probes": probes,
    }


def split_probes(result: dict, last_created: float | None) -> None:
    """/healthz once every call's job exists (they all just wait), apart from the burst of
    job creations before it."""
    probes = result.pop("_probes")
    if last_created is None:
        return
    waiting = [seconds for started, seconds in probes if started > last_created]
    creating = [seconds for started, seconds in probes if started <= last_created]
    result["all_created_after_s"] = round(last_created - result["_began"], 1)
    for name, values in (("creating", creating), ("waiting", waiting)):
        result[f"healthz_{name}_probes"] = len(values)
        result[f"healthz_{name}_p50_ms"] = round(1000 * pct(values, 50), 1)
        result[f"healthz_{name}_p95_ms"] = round(1000 * pct(values, 95), 1)


def last_job_created(database_url: str) -> float | None:
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT extract(epoch FROM max(created_at)) FROM playground_job")
        value = row.fetchone()[0]
    return float(value) if value is not None else None


def wait_http(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _ = asyncio.run(http(port, "GET", "/healthz"))
        if status == 200:
            return
        time.sleep(0.5)
    raise SystemExit("the web process did not answer /healthz")


def postgres_database(url: str, name: str, *, create: bool) -> None:
    import psycopg

    parts = urlsplit(url)
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')


def redis_claim_path(redis_url: str) -> Path:
    """The lock file of ``redis_claim``: one per Redis database, in the temporary folder."""
    digest = hashlib.sha256(redis_url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"vitrine-bench-redis-{digest}.lock"


def redis_claim(redis_url: str):
    """An exclusive hold on ``redis_url``'s database for this process (an open file locked
    with ``flock``, let go when closed or when the process ends), or SystemExit when
    another bench stack holds it: two stacks on one Redis database flush each other's
    queues and take each other's jobs (the broker's queue names are fixed), so one of them
    sees a call wait out its bound and answer 202, which reads as a fault of the serving
    path. Benches run one at a time (``bench_all.py`` runs them in turn)."""
    held = redis_claim_path(redis_url).open("a+")
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        held.seek(0)
        owner = held.read().strip() or "another process"
        held.close()
        raise SystemExit(
            f"another bench stack is using {redis_url} ({owner}): two at once take each "
            "other's jobs; run one bench at a time"
        ) from None
    held.seek(0)
    held.truncate()
    held.write(f"pid {os.getpid()}")
    held.flush()
    return held


class Stack:
    """One web process (uvicorn, ASGI) and one Celery worker (concurrency 1) of the checkout
    at ``repo``, as production runs them, on a scratch PostgreSQL database and a Redis
    database of their own, serving a random-weight YOLOS tiny with a funded API key."""

    def __init__(
        self,
        repo: Path,
        database_url: str,
        redis_url: str,
        sync_wait: int,
        worker_threads: int,
        extra_env: dict[str, str] | None = None,
        processor_size: dict[str, int] | None = None,
        config_overrides: dict | None = None,
    ) -> None:
        self.repo, self.admin_url, self.redis_url = Path(repo), database_url, redis_url
        # A test-sized input and model (bench_worker.py): the same classes, a forward of a few ms.
        self.processor_size, self.config_overrides = processor_size, config_overrides
        self.sync_wait, self.worker_threads = sync_wait, worker_threads
        # Set last: what an A/B of settings changes on one side (bench_overhead_ab.py).
        self.extra_env = extra_env or {}
        # Two stacks of one checkout (an A/B of settings) differ by their Redis database.
        side = abs(hash((str(repo), redis_url))) % 10**6
        self.db_name = f"vitrine_bench_serving_{os.getpid()}_{side}"
        self.database_url = urlsplit(database_url)._replace(path=f"/{self.db_name}").geturl()
        self.procs: list[subprocess.Popen] = []
        self.claim = None  # redis_claim's, while started

    def start(self, *, worker: bool = True) -> tuple[int, str, str, str]:
        """(port, model id, API key, database URL) once the web process answers. ``worker``
        False: the web process only (``worker_start`` starts the worker later)."""
        sys.path.insert(0, str(REPO))
        from playground.runtime.checkpoints import build_checkpoint

        self.claim = redis_claim(self.redis_url)
        postgres_database(self.admin_url, self.db_name, create=True)
        work = Path(tempfile.mkdtemp(prefix="vitrine-bench-serving-"))
        env = {
            **os.environ,
            # As production runs: DEBUG off (with it, Django wraps every cursor to log each
            # query).
            "DEBUG": "0",
            "SECRET_KEY": "bench-serving-" + os.urandom(24).hex(),
            "BYOK_ENCRYPTION_KEY": "bench-serving",
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "0",
            # Random weights: a paid job on untrained weights is refused unless allowed.
            "VITRINE_ALLOW_UNTRAINED": "1",
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.redis_url,
            "VITRINE_VAR_DIR": str(work / "var"),
            "VITRINE_SYNC_WAIT": str(self.sync_wait),
            # The load is the point here: abuse limits (tested on their own) are lifted.
            "VITRINE_MAX_INFLIGHT_JOBS": "100000",
            "VITRINE_API_RATE_PER_MINUTE": "100000",
            "VITRINE_ACCOUNT_RATE_PER_MINUTE": "100000",
            # One core for the model, one left for the web process (2 cores here).
            "VITRINE_TORCH_THREADS": str(self.worker_threads),
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            **self.extra_env,
        }
        py = sys.executable
        subprocess.run(
            [py, "-c", "import redis,sys; redis.Redis.from_url(sys.argv[1]).flushdb()",
             self.redis_url], check=True,
        )  # fmt: skip
        subprocess.run(
            [py, "manage.py", "migrate", "--noinput"], cwd=self.repo, env=env, check=True,
            capture_output=True,
        )  # fmt: skip
        checkpoint = build_checkpoint(
            "yolos_tiny", work / "yolos_tiny", processor_size=self.processor_size,
            config_overrides=self.config_overrides,
        )  # fmt: skip
        setup = subprocess.run(
            [py, "-c", SETUP, str(checkpoint)], cwd=self.repo, env=env, capture_output=True,
            text=True,
        )  # fmt: skip
        if setup.returncode:
            raise SystemExit(setup.stderr)
        model_id, key = setup.stdout.split()[-2:]
        port = free_port()
        self.env, self.logs = env, work / "logs"
        self.logs.mkdir()
        print(f"web and worker logs of {self.repo}: {self.logs}", file=sys.stderr, flush=True)
        self._spawn(
            "web", ["-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
                    "--port", str(port), "--no-access-log", "--timeout-graceful-shutdown", "5"],
        )  # fmt: skip
        if worker:
            self.worker_start()
        wait_http(port)
        return port, model_id, key, self.database_url

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        with (self.logs / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, *args], cwd=self.repo, env=self.env, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    def worker_start(self) -> subprocess.Popen:
        """The Celery worker (concurrency 1), as production runs it."""
        return self._spawn(
            "worker", ["-m", "celery", "-A", "config", "worker", "-Q", "default,webhooks,cpu",
                       "--concurrency", "1", "--loglevel", "WARNING"],
        )  # fmt: skip

    def worker_stop(self, proc: subprocess.Popen) -> None:
        """Stop a worker as a deploy does (TERM: Celery's warm shutdown) and wait for it."""
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self.procs.remove(proc)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        postgres_database(self.admin_url, self.db_name, create=False)
        if self.claim is not None:
            self.claim.close()
            self.claim = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--sync-wait", type=int, default=30)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--worker-threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--overhead", type=int, default=50, help="sequential calls for the API-overhead row"
    )
    parser.add_argument(
        "--overhead-photo",
        type=int,
        default=0,
        help="sequential calls for the same row with a 12-megapixel phone-size JPEG",
    )
    args = parser.parse_args()

    stack = Stack(REPO, args.database_url, args.redis_url, args.sync_wait, args.worker_threads)
    try:
        port, model_id, key, database_url = stack.start()
        # One call first, so the worker has loaded the model before the burst.
        asyncio.run(load(port, model_id, key, 1))
        overhead = None
        if args.overhead:
            overhead, kept = asyncio.run(
                api_overhead_both(port, model_id, key, args.overhead, database_url)
            )
            print(
                f"API overhead ({overhead['calls']} sequential sync calls, random-weight YOLOS "
                f"tiny): p50 {overhead['overhead_p50_ms']} ms, p95 "
                f"{overhead['overhead_p95_ms']} ms (call p50 {overhead['call_p50_ms']} ms, "
                f"model p50 {overhead['model_p50_ms']} ms; goal <= 15 ms p50)",
                flush=True,
            )
            print(f"  where it goes (p50, ms): {overhead.get('parts_p50_ms')}", flush=True)
            if "wal_bytes_per_call" in overhead:
                print(f"  WAL per call: {overhead['wal_bytes_per_call']} bytes", flush=True)
            print(
                f"  on one kept connection (as SDK clients call, alternating with the above): "
                f"p50 {kept['overhead_p50_ms']} ms, p95 {kept['overhead_p95_ms']} ms "
                f"(per pair {kept['saved_vs_new_connection_p50_ms']} ms less; "
                f"{kept['connections_opened']} connection(s) opened for them)",
                flush=True,
            )
        photo = None
        if args.overhead_photo:
            image = phone_photo()
            photo = asyncio.run(
                api_overhead(port, model_id, key, args.overhead_photo, database_url, image)
            )
            print(
                f"API overhead with a 12 MP photo ({len(image) / 1e6:.1f} MB, "
                f"{photo['calls']} calls): p50 {photo['overhead_p50_ms']} ms, p95 "
                f"{photo['overhead_p95_ms']} ms (call p50 {photo['call_p50_ms']} ms, model p50 "
                f"{photo['model_p50_ms']} ms)",
                flush=True,
            )
            print(f"  where it goes (p50, ms): {photo.get('parts_p50_ms')}", flush=True)
        rows = {"api_overhead": overhead, **({"api_overhead_photo": photo} if photo else {})}
        if overhead:
            rows["api_overhead_kept_connection"] = kept
        if not args.calls:
            if args.json and (overhead or photo):
                args.json.parent.mkdir(parents=True, exist_ok=True)
                machine = {"cpu": cpu_model(), "cores": os.cpu_count()}
                args.json.write_text(json.dumps({**machine, **rows}, indent=2))
            return
        result = asyncio.run(load(port, model_id, key, args.calls))
        result.update(rows)
        split_probes(result, last_job_created(database_url))
        result.pop("_began")
    finally:
        stack.stop()

    result = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sync_wait_s": args.sync_wait,
        "web": "1 uvicorn process",
        "worker": f"1 celery process, concurrency 1, {args.worker_threads} torch thread(s), "
        "random-weight YOLOS tiny",
        **result,
    }
    print(f"CPU: {result['cpu']} ({result['cores']} cores)")
    print(
        f"{result['calls']} concurrent sync calls in {result['elapsed_s']} s: "
        f"answers {result['statuses']}, 5xx {result['server_errors']}, "
        f"unanswered {result['unanswered']}; call p50 {result['call_p50_s']} s, "
        f"max {result['call_max_s']} s"
    )
    print(
        f"/healthz while they wait: {result['healthz_probes']} probes, "
        f"p50 {result['healthz_p50_ms']} ms, p95 {result['healthz_p95_ms']} ms, "
        f"max {result['healthz_max_ms']} ms, errors {result['healthz_errors']}"
    )
    if "healthz_waiting_probes" in result:
        print(
            f"  while jobs were being created (the first {result['all_created_after_s']} s): "
            f"{result['healthz_creating_probes']} probes, p50 {result['healthz_creating_p50_ms']}"
            f" ms, p95 {result['healthz_creating_p95_ms']} ms"
        )
        print(
            f"  once every call's job existed (all waiting): {result['healthz_waiting_probes']} "
            f"probes, p50 {result['healthz_waiting_p50_ms']} ms, "
            f"p95 {result['healthz_waiting_p95_ms']} ms"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    ok = result["server_errors"] == 0 and result["unanswered"] == 0
    waiting_p95 = result.get("healthz_waiting_p95_ms", result["healthz_p95_ms"])
    print(
        "goal (no 5xx, all answered, /healthz p95 < 100 ms while the calls wait):",
        "met" if ok and waiting_p95 < 100 else "NOT met",
        f"(p95 over the whole run, job creations included: {result['healthz_p95_ms']} ms)",
    )


if __name__ == "__main__":
    main()
