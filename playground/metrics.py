"""``GET /metrics``: the serving path's state for Prometheus, read from the database.

Web and workers run as many processes on many machines, so no process's own counters
describe the service; the job rows do, and every process reads the same ones. Each scrape
reads them afresh (``prometheus_client`` only renders the exposition format):

- what is in flight now: queued and running jobs per model, the oldest queued job's age,
  queued jobs whose message could not be sent (the broker was away: the sweeper sends them
  again), running jobs past their lease (lost: the reaper takes them over), webhook
  deliveries waiting or pending;
- what finished in the last ``WINDOW`` seconds: jobs per model, status and error code, and
  the queue wait and model time p50/p95 of those that succeeded on our own workers
  (a provider route measures the provider), over at most ``SAMPLE`` of each model's newest.

They are gauges: a count over a sliding window, not a counter since start (no process
lives as long as the service, and retention deletes old jobs). ``rate()`` is not needed:
``vitrine_jobs_finished_recent`` already is the last five minutes' count.

Every read uses an index made for it (``job_queued_at``, ``job_running_lease``,
``job_finished_at``, ``webhook_delivery_status_idx``), and all are on the database's clock
(``db_now``), as the job times are. When the database cannot be reached within the health
check's 2 s, the answer is still 200 with ``vitrine_database_up 0`` and nothing else, as
an exporter reports a dependency that is down.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta

from django.db.models import Count, Min, Q
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from catalog.models import ModelCard
from playground.latency import model_seconds, percentile, queue_seconds
from playground.models import Job, JobStatus, WebhookDelivery
from playground.services import db_now

logger = logging.getLogger(__name__)

WINDOW = timedelta(minutes=5)
SAMPLE = 1_000  # newest succeeded jobs per model in the window, for the quantiles
QUANTILES = (0.5, 0.95)


def registry(database_check) -> CollectorRegistry:
    """A registry of this scrape's own: nothing global, nothing kept between scrapes.
    ``database_check`` raises when the database cannot be reached (the health check's)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServingCollector(database_check))
    return registry


class ServingCollector(Collector):
    def __init__(self, database_check) -> None:
        self._database_check = database_check

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "vitrine_database_up",
            "Whether this process reached the database within 2 s (the other figures are "
            "read from it, so they are missing when it is 0).",
        )
        try:
            self._database_check()
            families = list(_serving_families())
        except Exception as exc:  # any failure to read: the figures are unknown, not zero
            logger.warning("metrics: the database could not be read: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families


def _serving_families() -> Iterator[GaugeMetricFamily]:
    now = db_now()
    since = now - WINDOW
    names = _model_ids()

    window = GaugeMetricFamily(
        "vitrine_metrics_window_seconds",
        "The window of the *_recent figures, in seconds.",
        value=WINDOW.total_seconds(),
    )
    yield window

    inflight = GaugeMetricFamily(
        "vitrine_jobs_in_flight",
        "Jobs queued or running now, per model.",
        labels=["model", "status"],
    )
    rows = (
        Job.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
        .values_list("card_id", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for card_id, status, n in sorted(rows, key=lambda r: (names.get(r[0], ""), r[1])):
        inflight.add_metric([names.get(card_id, str(card_id)), status], n)
    yield inflight

    queued = Job.objects.filter(status=JobStatus.QUEUED).aggregate(
        oldest=Min("queued_at"), unsent=Count("pk", filter=Q(enqueued_at__isnull=True))
    )
    yield GaugeMetricFamily(
        "vitrine_jobs_queued_oldest_age_seconds",
        "How long the oldest queued job has waited since it entered the queue (0: none).",
        value=max(0.0, (now - queued["oldest"]).total_seconds()) if queued["oldest"] else 0.0,
    )
    yield GaugeMetricFamily(
        "vitrine_jobs_queued_unsent",
        "Queued jobs whose message could not be sent (the broker was away); the reaper's "
        "sweep sends them again.",
        value=queued["unsent"],
    )
    yield GaugeMetricFamily(
        "vitrine_jobs_running_past_lease",
        "Running jobs whose worker's lease ran out: presumed lost, the reaper re-queues "
        "them. Above 0 for longer than the reaper's interval: the reaper is not running.",
        value=Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=now).count(),
    )

    deliveries = GaugeMetricFamily(
        "vitrine_webhook_deliveries",
        "Webhook deliveries not yet final: waiting for their job, or pending an attempt.",
        labels=["status"],
    )
    counts = dict(
        WebhookDelivery.objects.filter(
            status__in=[WebhookDelivery.Status.WAITING, WebhookDelivery.Status.PENDING]
        )
        .values_list("status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for status in (WebhookDelivery.Status.WAITING, WebhookDelivery.Status.PENDING):
        deliveries.add_metric([status], counts.get(status, 0))
    yield deliveries

    recent = Job.objects.filter(finished_at__gte=since, finished_at__lte=now)
    finished = GaugeMetricFamily(
        "vitrine_jobs_finished_recent",
        "Jobs that finished in the window, per model, status and error code.",
        labels=["model", "status", "error_code"],
    )
    rows = recent.values_list("card_id", "status", "error_code").annotate(n=Count("pk")).order_by()
    for card_id, status, code, n in sorted(rows, key=lambda r: (names.get(r[0], ""), r[1], r[2])):
        finished.add_metric([names.get(card_id, str(card_id)), status, code], n)
    yield finished

    workers = set(
        Job.objects.filter(status=JobStatus.RUNNING)
        .exclude(worker="")
        .values_list("worker", flat=True)
    )
    workers.update(recent.exclude(worker="").values_list("worker", flat=True).distinct())
    yield GaugeMetricFamily(
        "vitrine_worker_processes_recent",
        "Worker processes running a job now or that finished one in the window (an idle "
        "worker is not seen here: `manage.py worker_check` pings them).",
        value=len(workers),
    )

    yield from _latency_families(recent, names)


def _latency_families(recent, names: dict[int, str]) -> Iterator[GaugeMetricFamily]:
    family = GaugeMetricFamily(
        "vitrine_job_seconds_recent",
        f"Queue wait and model time of the jobs that succeeded on this site's workers in "
        f"the window, per model (quantiles over at most {SAMPLE:,} of each model's newest).",
        labels=["model", "stage", "quantile"],
    )
    measured = recent.filter(status=JobStatus.SUCCEEDED).filter(
        Q(route__isnull=True) | Q(route__is_own=True)
    )
    by_card: dict[int, list] = defaultdict(list)
    for card_id in sorted(
        set(measured.values_list("card_id", flat=True)), key=lambda c: names.get(c, "")
    ):
        by_card[card_id] = list(
            measured.filter(card_id=card_id)
            .order_by("-finished_at")
            .values_list("queued_at", "started_at", "timings")[:SAMPLE]
        )
    for card_id, rows in by_card.items():
        stages = {
            "queue": [s for q, st, _ in rows if (s := queue_seconds(q, st)) is not None],
            "model": [s for _, _, t in rows if (s := model_seconds(t)) is not None],
        }
        for stage, values in stages.items():
            for q in QUANTILES if values else ():
                family.add_metric(
                    [names.get(card_id, str(card_id)), stage, str(q)], percentile(values, q)
                )
    yield family


def _model_ids() -> dict[int, str]:
    """Every card's ``org/name``, the label jobs are counted under (a renamed model's jobs
    count under its new id)."""
    return {
        pk: f"{org}/{slug}"
        for pk, org, slug in ModelCard.objects.values_list("pk", "organisation__slug", "slug")
    }
