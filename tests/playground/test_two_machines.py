"""The README's production recipe on two "machines": the web server and the worker run in two
separate working directories with different ``VITRINE_VAR_DIR`` and share only PostgreSQL,
Redis and the S3 server, as processes on two hosts would. A paid API call succeeds end to end.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from PIL import Image

from billing.models import Charge
from billing.services.keys import api_key_create
from billing.services.ledger import wallet_for
from billing.services.topups import credit_grant
from playground.models import Job
from tests import factories
from tests.conftest import REPO, S3_BUCKET, database_url, free_port, wait_for

PRICE = Decimal("0.0002")


@pytest.fixture
def machines(transactional_db, broker_url, s3_server, tmp_path):
    """``start(role, argv, env)`` runs a process in its own working directory; all are
    stopped (their whole process group) at the end."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "two machines share a database server: run with DATABASE_URL=postgres://... "
            "(an SQLite file lives on one machine's disk)"
        )
    procs: list[tuple[subprocess.Popen, Path]] = []
    prefix = f"two-machines-{os.getpid()}"

    def start(role: str, argv: list[str]) -> tuple[subprocess.Popen, Path, Path]:
        home = tmp_path / role
        (home / "var").mkdir(parents=True)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DEBUG": "1",
            "ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": database_url(connection.settings_dict),
            "CELERY_BROKER_URL": broker_url,
            "VITRINE_VAR_DIR": str(home / "var"),
            **s3_server.env(prefix=prefix),
        }
        env.pop("VITRINE_JOB_STORAGE", None)  # each machine's local default: its own var/
        log = home / f"{role}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv, cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        procs.append((proc, log))
        return proc, home, log

    start.prefix = prefix
    yield start
    for proc, _log in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (160, 120), (200, 90, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


def http(method: str, url: str, *, data: bytes | None = None, headers: dict | None = None):
    """(status, JSON body, response headers)."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), exc.headers


def test_an_api_call_runs_on_a_worker_that_shares_no_disk_with_the_web(
    machines, s3_server, runtime_checkpoint
):
    bin_dir = Path(sys.executable).parent
    port = free_port()
    web, web_home, web_log = machines(
        "web",
        [
            str(bin_dir / "gunicorn"), "config.asgi:application",
            "-k", "uvicorn_worker.UvicornWorker", "--bind", f"127.0.0.1:{port}",
            "--workers", "1", "--timeout", "120",
        ],
    )  # fmt: skip
    worker, worker_home, worker_log = machines(
        "worker",
        [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "-Q", "default,webhooks,cpu", "--concurrency", "1", "--loglevel", "INFO",
        ],
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def logs() -> str:
        return f"web:\n{web_log.read_text()[-3000:]}\nworker:\n{worker_log.read_text()[-3000:]}"

    def web_up():
        assert web.poll() is None, logs()
        try:
            return http("GET", f"{base}/healthz")[0] == 200
        except OSError:
            return False

    wait_for(web_up, timeout=120, interval=0.5, message=f"the web server did not start\n{logs()}")

    user = factories.user()
    credit_grant(user=user, amount=Decimal("1.00"), reason="test")
    _key, secret = api_key_create(user=user, name="two machines")
    card = factories.card(checkpoint_local_dir=str(runtime_checkpoint("yolos_tiny")))
    factories.route(card=card, price=PRICE)

    auth = {"Authorization": f"Bearer {secret}"}
    status, body, headers = http(
        "POST",
        f"{base}/v1/inference/{card.model_id}",
        data=jpeg(),
        headers={**auth, "Content-Type": "image/jpeg"},
    )
    # 200: the detections, within VITRINE_SYNC_WAIT; 202: the job, still running (the
    # worker loads the model on its first job).
    assert status in (200, 202), (status, body, logs())
    assert isinstance(body, list) if status == 200 else body["status"] in ("queued", "running")
    job_url = f"{base}/v1/jobs/{headers['X-Vitrine-Job-Id']}"

    def finished():
        got = http("GET", job_url, headers=auth)[1]
        return got if got["status"] in ("succeeded", "failed") else None

    resource = wait_for(finished, timeout=180, interval=0.5, message=logs())
    assert (resource["status"], resource["error"]) == ("succeeded", None), (resource, logs())
    assert isinstance(resource["detections"], list)
    assert resource["charge_status"] == "posted" and resource["cost"] == str(PRICE)

    job = Job.objects.get(pk=resource["id"])
    # Neither machine has the upload on its disk: it is in the shared bucket.
    for home in (web_home, worker_home):
        jobs_dir = home / "var" / "jobs"
        assert not jobs_dir.exists() or not any(jobs_dir.iterdir()), home
    stored = s3_server.client().get_object(
        Bucket=S3_BUCKET, Key=f"{machines.prefix}/{job.image_name}"
    )
    assert stored["Body"].read() == jpeg()
    # Charged once, exactly the price.
    charge = Charge.objects.get(job_id=job.pk)
    assert (charge.status, charge.amount) == (Charge.Status.POSTED, PRICE)
    assert wallet_for(user).balance == Decimal("1.00") - PRICE
    assert worker.poll() is None and web.poll() is None, logs()
