from __future__ import annotations

import uuid

import pytest

from playground.models import WorkerHeartbeat
from playground.tasks import health_ping
from tests.conftest import wait_for

pytestmark = pytest.mark.worker


# A fresh ``python -m celery`` process, as deployed (the other tests fork theirs from the
# session's fork server) and one forked the same way the others are.
@pytest.mark.parametrize("fresh", [True, False], ids=["fresh-process", "forked"])
def test_a_real_worker_process_runs_the_health_task(start_worker, fresh):
    worker = start_worker(fresh=fresh)
    token = uuid.uuid4().hex

    health_ping.delay(token)

    beat = wait_for(
        lambda: WorkerHeartbeat.objects.filter(token=token).first(),
        timeout=90,
        message="no heartbeat from the worker",
    )
    assert beat.pid != 0
    assert worker.proc.poll() is None, worker.output()
    worker.stop()
    assert worker.proc.returncode == 0, worker.output()
    assert "playground.health_ping" in worker.output()


def test_a_redelivered_health_task_writes_one_row(db):
    # Called directly, as a redelivery would run it: the row is written once.
    health_ping("same-token")
    health_ping("same-token")
    assert WorkerHeartbeat.objects.filter(token="same-token").count() == 1


def test_worker_check_names_the_worker_of_each_queue_and_fails_on_a_silent_one(start_worker):
    from io import StringIO

    from django.conf import settings
    from django.core.management import CommandError, call_command

    start_worker()
    out = StringIO()
    call_command("worker_check", "--timeout", "90", stdout=out)
    lines = out.getvalue().splitlines()
    queues = ["default", settings.VITRINE_WEBHOOK_QUEUE, settings.VITRINE_INFERENCE_QUEUE]
    assert [line.split(":")[0] for line in lines] == queues
    assert all(": ok, " in line and " pid " in line for line in lines), lines
    with pytest.raises(CommandError, match="no worker answered on: nobody"):
        call_command("worker_check", "--queue", "nobody", "--timeout", "1", stdout=StringIO())
