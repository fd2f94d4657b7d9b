"""A Redis broker out of memory (session 44's resource probe).

With ``maxmemory`` reached and the ``noeviction`` policy, Redis refuses writes with an
error reply (``OOM command not allowed``), which kombu counts as a channel error, not a
lost connection. A worker that met one (its ack of a finished job, a queue binding at
start-up) logged "Unrecoverable error: OutOfMemoryError" and exited: its queued jobs
waited for someone to restart it, and a supervisor's restart while the server was still
full exited again. Now the worker retries as it does for a lost connection, and takes the
jobs once the server has room.
"""

from __future__ import annotations

import io
import time

import pytest
import redis
from PIL import Image

from config.settings.env import redis_client_url
from playground import services
from playground.broker import EmbeddedRedis
from playground.models import Job
from tests import factories
from tests.conftest import _reset_producer_pool, wait_for


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (30, 140, 220)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def own_broker(tmp_path, settings):
    """A broker of this test's own (its memory limit is changed), the app sending to it."""
    from config.celery import app

    previous = app.conf.broker_url
    server = EmbeddedRedis(
        socket_path=tmp_path / "broker.sock", data_dir=tmp_path / "broker", persist=False
    ).start()
    client = redis.Redis.from_url(redis_client_url(server.url))
    yield server.url, client
    client.close()
    server.stop()
    _reset_producer_pool(app)
    app.conf.broker_url = previous  # later tests send to the session's broker again


def test_a_worker_waits_out_a_full_broker_and_then_runs_its_jobs(
    start_worker, own_broker, settings, tmp_path, runtime_checkpoint
):
    from config.celery import app

    url, client = own_broker
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    # start_worker pointed the app at the session's broker: at this test's instead
    app.conf.broker_url = settings.CELERY_BROKER_URL = url
    settings.VITRINE_REDIS_URL = redis_client_url(url)
    _reset_producer_pool(app)
    card = factories.card(checkpoint_local_dir=str(runtime_checkpoint("yolos_tiny")))
    job = services.job_create(card=card, image_bytes=jpeg())
    job.refresh_from_db()
    assert job.enqueued_at is not None and client.llen(job.queue) == 1

    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)  # every write refused: the server is full
    worker = start_worker(env_extra={"CELERY_BROKER_URL": url})
    wait_for(
        lambda: "maxmemory" in worker.output(),
        timeout=120,
        message=f"the worker never met the full broker:\n{worker.output()}",
    )
    client.config_set("maxmemory", 0)  # room again

    def finished() -> bool:
        job.refresh_from_db()
        return job.status not in (Job.Status.QUEUED, Job.Status.RUNNING)

    # Before the fix the worker had exited: the job stayed queued.
    wait_for(finished, timeout=180, message=f"the job never ran:\n{worker.output()}")
    assert (job.status, job.error_code) == (Job.Status.SUCCEEDED, ""), worker.output()


# Celery's line for each restart of the consumer: refused while connecting, or after.
RESTARTS = ("consumer: Cannot connect to", "consumer: Connection to broker lost")


def restarts(output: str) -> int:
    return sum(output.count(line) for line in RESTARTS)


def test_a_full_broker_restarts_the_consumer_with_pauses_not_five_times_a_second(
    start_worker, own_broker, settings, tmp_path
):
    """While the server refuses writes the worker restarts its consumer after 1, 2, 4... s
    (playground/consumer.py), not at once: Celery's own restarted five times a second and
    logged "Frequent restarts detected" with its traceback every second (session 45).
    Watched for 3 s after the third restart, where the next pause is 4 s: undone, the
    consumer restarts ~15 more times in that window."""
    from config.celery import app

    url, client = own_broker
    app.conf.broker_url = settings.CELERY_BROKER_URL = url
    settings.VITRINE_REDIS_URL = redis_client_url(url)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)  # every write refused: the server is full
    worker = start_worker(env_extra={"CELERY_BROKER_URL": url})
    wait_for(
        lambda: restarts(worker.output()) >= 3,
        timeout=120,
        message="the worker never restarted three times",
    )
    seen = restarts(worker.output())
    time.sleep(3)  # an observation window, not a bound on speed: more pauses only help
    output = worker.output()
    client.config_set("maxmemory", 0)
    assert "Frequent restarts detected" not in output, output
    assert restarts(output) <= seen + 1, output
