from __future__ import annotations

import os
import socket

from celery import shared_task

from playground.models import WorkerHeartbeat


@shared_task(name="playground.health_ping")
def health_ping(token: str) -> None:
    """Record that a worker is alive. Idempotent: a redelivered message writes nothing new."""
    WorkerHeartbeat.objects.get_or_create(
        token=token, defaults={"hostname": socket.gethostname(), "pid": os.getpid()}
    )
