"""`make run`'s promise: web, worker and embedded broker start together and stop together."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from playground.runtime.allocator import library
from tests.conftest import wait_for

# It starts its own SQLite database and embedded broker, whatever the suite runs on.
pytestmark = [pytest.mark.worker, pytest.mark.same_on_any_database]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


CREATE_JOB = """
import io, sys
import django
django.setup()
from PIL import Image
from playground import services
from tests import factories
buffer = io.BytesIO()
Image.new("RGB", (320, 240), (40, 120, 200)).save(buffer, format="JPEG")
card = factories.card(checkpoint_local_dir=sys.argv[1])
print(services.job_create(card=card, image_bytes=buffer.getvalue()).pk.hex)
"""


def preloaded(pid: int) -> str:
    """The LD_PRELOAD a process was started with ("" when none)."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = [v for v in environ if v.startswith(b"LD_PRELOAD=")]
    return found[0].split(b"=", 1)[1].decode() if found else ""


def job_status(database: Path, job_hex: str) -> str | None:
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as db:
        row = db.execute("SELECT status FROM playground_job WHERE id = ?", [job_hex]).fetchone()
    return row[0] if row else None


def test_devstack_serves_runs_a_task_and_stops_everything_on_ctrl_c(tmp_path, runtime_checkpoint):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env |= {"VITRINE_VAR_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1"}
    env.pop("LD_PRELOAD", None)
    # A torch worker with an allocator chosen by the setting gets it preloaded (when Debian's
    # libjemalloc2 is installed); the web process keeps glibc's malloc.
    jemalloc = library("jemalloc")
    env |= {"VITRINE_BACKEND": "torch", "VITRINE_ALLOCATOR": "jemalloc"}
    manage = [sys.executable, "manage.py"]
    subprocess.run(
        [*manage, "migrate", "--noinput"],
        cwd=settings.BASE_DIR,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    log = tmp_path / "devstack.log"
    with log.open("wb") as out:
        stack = subprocess.Popen(
            [*manage, "devstack", "--port", str(port)],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "Vitrine is running" in log.read_text(), timeout=60)
        pids = {
            name: int(pid) for name, pid in re.findall(r"^(\w+)\s+pid (\d+)", log.read_text(), re.M)
        }
        assert set(pids) == {"broker", "worker", "web"}, log.read_text()
        preloads = {name: preloaded(pids[name]) for name in ("worker", "web")}
        assert preloads == {"worker": jemalloc or "", "web": ""}

        def health():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(health, timeout=60, message=log.read_text())

        # The worker of the stack takes a task from the stack's broker and writes the row.
        token = uuid.uuid4().hex
        code = (
            "import django, sys; django.setup();"
            "from playground.tasks import health_ping; health_ping.delay(sys.argv[1])"
        )
        subprocess.run(
            [sys.executable, "-c", code, token],
            cwd=settings.BASE_DIR,
            env=env,
            check=True,
            timeout=60,
        )
        check = (
            "import django, sys; django.setup();"
            "from playground.models import WorkerHeartbeat as W;"
            "sys.exit(0 if W.objects.filter(token=sys.argv[1]).exists() else 1)"
        )
        wait_for(
            lambda: (
                subprocess.run(
                    [sys.executable, "-c", check, token], cwd=settings.BASE_DIR, env=env, timeout=60
                ).returncode
                == 0
            ),
            timeout=90,
            interval=1,
            message=log.read_text(),
        )
        # Ctrl-C while a job runs: the worker stops warmly, the job finishes first.
        created = subprocess.run(
            [sys.executable, "-c", CREATE_JOB, str(runtime_checkpoint("detr"))],
            cwd=settings.BASE_DIR, env=env, check=True, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        job_hex = created.stdout.split()[-1]
        database = tmp_path / "var" / "vitrine.sqlite3"
        wait_for(
            lambda: job_status(database, job_hex) == "running", timeout=120, interval=0.02,
            message=log.read_text(),
        )  # fmt: skip
    finally:
        stack.send_signal(signal.SIGINT)
        stack.wait(timeout=240)
    assert stack.returncode == 0, log.read_text()
    assert job_status(database, job_hex) == "succeeded", log.read_text()
    text = log.read_text()
    assert "stopped web" in text and "stopped worker" in text and "stopped broker" in text
    time.sleep(0.5)
    assert {name for name, pid in pids.items() if alive(pid)} == set()
