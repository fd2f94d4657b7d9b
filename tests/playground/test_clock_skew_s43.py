"""Machines whose clocks disagree (session 43). A worker's clock runs behind the reaper's
(here the test process's) by more than a lease: its running jobs' leases must still be
counted on one clock, the database's, so the reaper leaves a live worker's job alone and the
job runs once. Before, the lease was the worker's own clock + 30 s: already run out on the
reaper's, the running job was queued again and run a second (and third) time.

The worker's clock is moved with libfaketime (Debian's ``faketime`` package); without it,
or on SQLite (one machine, one clock), the test is skipped.
"""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import pytest
import requests
from django.db import connection
from PIL import Image

from billing.services.webhook_secrets import webhook_secret_get
from playground import services
from playground.models import Job
from tests import factories
from tests.conftest import wait_for
from tests.playground.test_api_jobs_live import (  # noqa: F401 (fixtures)
    WORKER_ENV,
    checkpoint,
    live,
    readme_verify,
    receiver,
)

pytestmark = pytest.mark.worker

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


@pytest.fixture
def faketime():
    """``faketime(offset)``: the environment that moves a process's clock by ``offset``."""
    if not LIBFAKETIME.exists():
        pytest.skip("libfaketime is not installed (apt-get install faketime)")

    def env(offset: str) -> dict[str, str]:
        return {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": offset}

    return env


@pytest.fixture
def skewed(faketime, settings, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("clocks of several machines: PostgreSQL (SQLite runs on one machine)")
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    return faketime


def photo() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (40, 120, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_a_worker_whose_clock_is_behind_keeps_its_running_job(
    start_worker, skewed, runtime_checkpoint
):
    worker = start_worker(env_extra=skewed("-90s"), fresh=True)
    card = factories.card(checkpoint_local_dir=str(runtime_checkpoint("detr")))
    job = services.job_create(card=card, image_bytes=photo())
    # The first job of a worker loads its model while it holds the job: caught running.
    wait_for(
        lambda: Job.objects.get(pk=job.pk).status == "running", timeout=180, interval=0.02,
        message=worker.output(),
    )  # fmt: skip
    # Held still while the reaper looks (as a long forward pass would be): the worker is
    # alive, its lease freshly written, so nothing of it may be taken.
    os.killpg(worker.proc.pid, signal.SIGSTOP)
    try:
        reaped = services.jobs_reap_stale()
        running = Job.objects.get(pk=job.pk)
    finally:
        os.killpg(worker.proc.pid, signal.SIGCONT)
    assert reaped == {"requeued": 0, "failed": 0}, running.lease_expires_at
    assert running.status == "running"
    wait_for(
        lambda: Job.objects.get(pk=job.pk).is_final, timeout=240, interval=0.2,
        message=worker.output(),
    )  # fmt: skip
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("succeeded", 1), worker.output()
    assert list(job.attempt_log.values_list("number", "outcome")) == [(1, "succeeded")]


def test_worker_check_reports_a_worker_whose_clock_is_ahead(start_worker, skewed, settings):
    """A worker 60 s ahead answered ``worker_check`` as if all were well (its ping's expiry,
    30 s on the sender's clock, was not yet past on its own only because 60 < 90 here; at
    30 s it was discarded and the queue reported as having no worker): the check now says
    how far each worker's clock is from the database's and fails past ``--max-skew``."""
    from io import StringIO

    from django.core.management import CommandError, call_command

    worker = start_worker(env_extra=skewed("+60s"), fresh=True)
    out = StringIO()
    queue = settings.VITRINE_INFERENCE_QUEUE
    with pytest.raises(CommandError, match=rf"clocks off the database's .*{queue} \(.*\) \+"):
        call_command("worker_check", "--queue", queue, "--timeout", "90", stdout=out)
    (line,) = out.getvalue().splitlines()
    assert line.startswith(f"{queue}: ok, ") and "from the database's" in line, worker.output()
    skew = float(line.split("clock ")[1].split(" s ")[0])
    assert 55 < skew < 65, line
    # A worker on the database's clock passes (the test process is that machine here).
    worker.kill_hard()
    on_time = start_worker()
    calm = StringIO()
    call_command("worker_check", "--queue", "default", "--timeout", "90", stdout=calm)
    assert "clock " in calm.getvalue(), on_time.output()


def test_a_sweeper_whose_clock_is_ahead_fails_no_queued_job_early(
    start_worker, skewed, runtime_checkpoint, tmp_path
):
    """The reaper's machine (the default worker and beat) 700 s ahead: queued jobs failed
    ``queue_timeout`` (money released, the call failed) on its first sweep, 600 s early by the
    database's clock. The sweeper now reads the database's clock, as the reaper does."""
    card = factories.card(checkpoint_local_dir=str(runtime_checkpoint("yolos_tiny")))
    # On a queue no worker takes, so both stay queued; one's message is lost (never sent):
    # the sweeper sends it again, which shows that a sweep ran.
    waiting = services.job_create(card=card, image_bytes=photo(), queue="nobody-s43")
    lost = services.job_create(card=card, image_bytes=photo(), queue="nobody-s43")
    Job.objects.filter(pk=lost.pk).update(enqueued_at=None)
    env = {**skewed("+700s"), "VITRINE_REAPER_INTERVAL": "1"}
    schedule = str(tmp_path / "beat-schedule")
    worker = start_worker("--beat", "--schedule", schedule, env_extra=env, fresh=True)

    def swept():
        row = Job.objects.get(pk=lost.pk)
        return row.enqueued_at is not None or row.is_final

    wait_for(swept, timeout=180, interval=0.2, message=worker.output())
    rows = {row.pk: (row.status, row.error_code) for row in Job.objects.all()}
    assert rows == {waiting.pk: ("queued", ""), lost.pk: ("queued", "")}, worker.output()


def test_beats_reaper_run_is_not_discarded_by_a_default_worker_whose_clock_is_ahead(
    start_worker, skewed, runtime_checkpoint, settings
):
    """Beat stamps a task's expiry on its own clock, the worker reads it on its own: with the
    expiry at the reaper's interval (15 s), a default worker 60 s ahead of beat discarded
    every run ("Discarding revoked task ... expired"), and nothing was reaped or swept."""
    from config.celery import app

    card = factories.card(checkpoint_local_dir=str(runtime_checkpoint("yolos_tiny")))
    lost = services.job_create(card=card, image_bytes=photo(), queue="nobody-s43")
    Job.objects.filter(pk=lost.pk).update(enqueued_at=None)  # its message never sent
    worker = start_worker(env_extra=skewed("+60s"), fresh=True)
    entry = settings.CELERY_BEAT_SCHEDULE["reap-stale-jobs"]
    app.send_task(entry["task"], **entry["options"])  # as beat sends it, on this clock

    wait_for(
        lambda: Job.objects.get(pk=lost.pk).enqueued_at is not None, timeout=120,
        interval=0.2, message=worker.output(),
    )  # fmt: skip
    assert "Discarding revoked task" not in worker.output()


def test_a_webhook_signed_on_a_worker_whose_clock_is_ahead_is_accepted(
    start_worker,
    skewed,
    live,  # noqa: F811 (fixtures)
    receiver,  # noqa: F811
):
    """A webhook worker 400 s ahead signed ``t`` on its own clock: the README's verifier
    (300 s tolerance, on a receiver whose clock is right) refused every delivery, retried
    until its attempts ran out. It now signs on the database's clock."""
    worker = start_worker(env_extra={**WORKER_ENV, **skewed("+400s")}, fresh=True)
    url = requests.utils.quote(receiver.url)
    response = live.post("detections", f"?webhook={url}", Prefer="respond-async")
    assert response.status_code == 202, response.text
    wait_for(lambda: receiver.hits, timeout=240, interval=0.2, message=worker.output())
    hit = receiver.hits[0]
    secret = webhook_secret_get(user=live.user)
    verify = readme_verify()
    assert verify(secret, hit["body"], hit["headers"]["Vitrine-Signature"]), hit["headers"]


SLOTS = """
from catalog import ratelimit
take = lambda m: ratelimit.slot_take("s43", "{who}", limit=2, lapse=25, member=m)
print([take("a"), take("b"), take("c")])
"""


def test_webhook_slots_hold_their_limit_for_a_worker_whose_clock_is_behind(faketime, limits_redis):
    """One account's webhook attempts at once (``VITRINE_WEBHOOK_PER_ACCOUNT``) are slots in
    Redis. A worker 60 s behind set the set's expiry (PEXPIREAT, Redis's clock) in the past
    from its own clock: Redis dropped it at once and every attempt was admitted. The slots
    now run on Redis's clock."""
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    who = f"acct-{time.time_ns()}"
    env = {
        **os.environ,
        **faketime("-60s"),
        "VITRINE_LIMITS_REDIS_URL": limits_redis,
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    code = SLOTS.format(who=who)
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[True, True, False]", done.stderr
