"""``manage.py worker_check``: is a worker taking messages from each queue? For an operator
after a deploy, or as a readiness probe of the worker tier:

    manage.py worker_check          # default, VITRINE_WEBHOOK_QUEUE and VITRINE_INFERENCE_QUEUE
    manage.py worker_check --queue gpu --timeout 20

Sends the ``health_ping`` task to each queue with a fresh token and waits for its row
(``WorkerHeartbeat``, also in the admin's "Worker heartbeats"): the worker that ran it is
named (host and pid). Exits non-zero when a queue had no answer within ``--timeout``
seconds: no worker listens there, or it is stuck, or broker and database are not the ones
it uses.

Each answer also says how far its worker's clock is from the database's (the row's
``seen_at`` is the worker's clock): past ``--max-skew`` seconds (5) the check fails, as it
does when this machine's own clock is that far off. Machines that disagree on the time
misreport queue waits, fail jobs as queued too long, and sign webhooks a receiver refuses
(session 43): keep every machine on NTP.
"""

from __future__ import annotations

import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from playground.models import WorkerHeartbeat
from playground.services import db_now
from playground.tasks import health_ping

# The ping's expiry is a time on the sending machine's clock, read on the worker's: a worker
# whose clock is ahead by more than the expiry discards it. Room for such a worker to answer
# and be reported as skewed rather than as missing.
SKEW_ROOM = 600


def beyond(low: timedelta, high: timedelta) -> float:
    """Seconds of a clock's difference known to lie between ``low`` and ``high``: the bound
    nearest zero, 0 when the interval holds it (the difference is within the measuring)."""
    if low > timedelta(0):
        return low.total_seconds()
    return min(high.total_seconds(), 0.0)


class Command(BaseCommand):
    help = "Send a health ping to each worker queue and report which worker answered."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--queue", action="append", dest="queues",
            help="A queue to check (repeatable); default: default, VITRINE_WEBHOOK_QUEUE and "
            "VITRINE_INFERENCE_QUEUE.",
        )  # fmt: skip
        parser.add_argument("--timeout", type=float, default=30.0, help="Seconds per queue.")
        parser.add_argument(
            "--max-skew", type=float, default=5.0,
            help="Seconds a clock may be from the database's (default 5).",
        )  # fmt: skip

    def handle(
        self, *args, queues: list[str] | None, timeout: float, max_skew: float, **options
    ) -> None:
        queues = queues or list(
            dict.fromkeys(
                ["default", settings.VITRINE_WEBHOOK_QUEUE, settings.VITRINE_INFERENCE_QUEUE]
            )
        )
        tokens = {queue: f"check-{queue}-{secrets.token_hex(8)}" for queue in queues}
        sent = db_now()
        for queue, token in tokens.items():
            health_ping.apply_async((token,), queue=queue, expires=timeout + SKEW_ROOM)
        deadline = time.monotonic() + timeout
        answered: dict[str, WorkerHeartbeat] = {}
        # The worker's clock less the database's: its row was written after the pings were
        # sent and before it was read, so only a difference beyond both bounds is the
        # worker's, not this command's own wait (a loaded machine, a busy worker).
        skews: dict[str, float] = {}
        while len(answered) < len(tokens) and time.monotonic() < deadline:
            for queue, token in tokens.items():
                if queue not in answered:
                    row = WorkerHeartbeat.objects.filter(token=token).first()
                    if row is not None:
                        answered[queue] = row
                        skews[queue] = beyond(row.seen_at - db_now(), row.seen_at - sent)
            time.sleep(0.2)
        for queue in queues:
            row = answered.get(queue)
            if row is None:
                self.stdout.write(f"{queue}: no worker answered in {timeout:g} s")
            else:
                self.stdout.write(
                    f"{queue}: ok, {row.hostname} pid {row.pid}, "
                    f"clock {skews[queue]:+.1f} s from the database's"
                )
        missing = [queue for queue in queues if queue not in answered]
        if missing:
            raise CommandError(f"no worker answered on: {', '.join(missing)}")
        before = timezone.now()
        database = db_now()
        here = beyond(before - database, timezone.now() - database)
        skewed = [
            f"{queue} ({answered[queue].hostname} pid {answered[queue].pid}) {skews[queue]:+.1f} s"
            for queue in queues
            if abs(skews[queue]) > max_skew
        ]
        if abs(here) > max_skew:
            skewed.append(f"this machine {here:+.1f} s")
        if skewed:
            raise CommandError(
                f"clocks off the database's by more than {max_skew:g} s: {', '.join(skewed)}"
                " (keep every machine on NTP)"
            )
