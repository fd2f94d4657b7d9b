"""``manage.py worker_check``: is a worker taking messages from each queue? For an operator
after a deploy, or as a readiness probe of the worker tier:

    manage.py worker_check          # default, VITRINE_WEBHOOK_QUEUE and VITRINE_INFERENCE_QUEUE
    manage.py worker_check --queue gpu --timeout 20

Sends the ``health_ping`` task to each queue with a fresh token and waits for its row
(``WorkerHeartbeat``, also in the admin's "Worker heartbeats"): the worker that ran it is
named (host and pid). Exits non-zero when a queue had no answer within ``--timeout``
seconds: no worker listens there, or it is stuck, or broker and database are not the ones
it uses.
"""

from __future__ import annotations

import secrets
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from playground.models import WorkerHeartbeat
from playground.tasks import health_ping


class Command(BaseCommand):
    help = "Send a health ping to each worker queue and report which worker answered."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--queue", action="append", dest="queues",
            help="A queue to check (repeatable); default: default, VITRINE_WEBHOOK_QUEUE and "
            "VITRINE_INFERENCE_QUEUE.",
        )  # fmt: skip
        parser.add_argument("--timeout", type=float, default=30.0, help="Seconds per queue.")

    def handle(self, *args, queues: list[str] | None, timeout: float, **options) -> None:
        queues = queues or list(
            dict.fromkeys(
                ["default", settings.VITRINE_WEBHOOK_QUEUE, settings.VITRINE_INFERENCE_QUEUE]
            )
        )
        tokens = {queue: f"check-{queue}-{secrets.token_hex(8)}" for queue in queues}
        for queue, token in tokens.items():
            health_ping.apply_async((token,), queue=queue, expires=timeout)
        deadline = time.monotonic() + timeout
        answered: dict[str, WorkerHeartbeat] = {}
        while len(answered) < len(tokens) and time.monotonic() < deadline:
            for queue, token in tokens.items():
                if queue not in answered:
                    row = WorkerHeartbeat.objects.filter(token=token).first()
                    if row is not None:
                        answered[queue] = row
            time.sleep(0.2)
        for queue in queues:
            row = answered.get(queue)
            if row is None:
                self.stdout.write(f"{queue}: no worker answered in {timeout:g} s")
            else:
                self.stdout.write(f"{queue}: ok, {row.hostname} pid {row.pid}")
        missing = [queue for queue in queues if queue not in answered]
        if missing:
            raise CommandError(f"no worker answered on: {', '.join(missing)}")
