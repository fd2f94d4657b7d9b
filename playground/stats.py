"""Measured latency per model, from real jobs, into ``catalog.ModelStats``.

The model pages show p50/p95 queue wait and model time and the run count of the last 7
days. Computing them on every page view would scan jobs; instead the beat task
``playground.refresh_model_stats`` recomputes them every ``VITRINE_STATS_INTERVAL`` seconds
and the pages read one joined row. Percentiles are computed in Python (playground/latency.py)
so SQLite and PostgreSQL agree, over at most ``VITRINE_STATS_SAMPLE`` of each model's newest
jobs (the run count stays exact: it is a COUNT).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from catalog.cache import bump_catalog_version
from catalog.models import ModelStats
from playground.latency import model_seconds, percentile, queue_seconds, to_ms
from playground.models import Job, JobStatus

WINDOW = timedelta(days=7)
FIELDS = (
    "runs_7d",
    "queue_p50_ms",
    "queue_p95_ms",
    "model_p50_ms",
    "model_p95_ms",
    "arithmetic",
)


def measured_jobs(*, now: datetime):
    """Succeeded jobs of the window that ran on our own workers (a provider route measures
    the provider, not Vitrine)."""
    return Job.objects.filter(
        status=JobStatus.SUCCEEDED, finished_at__gte=now - WINDOW, finished_at__lte=now
    ).filter(Q(route__isnull=True) | Q(route__is_own=True))


def _arithmetic(precisions) -> str:
    """What the sampled runs computed in, fp32 first: a worker switched to a fast variant
    (VITRINE_PRECISION) changes the model time, and the page says so."""
    found = {p for p in precisions if p}
    return ", ".join(sorted(found, key=lambda p: (p != "fp32", p)))


def _figures(rows) -> dict:
    queue = [s for q, st, _, _ in rows if (s := queue_seconds(q, st)) is not None]
    model = [s for _, _, t, _ in rows if (s := model_seconds(t)) is not None]

    def pair(values):
        if not values:
            return None, None
        return to_ms(percentile(values, 0.5)), to_ms(percentile(values, 0.95))

    (queue_p50, queue_p95), (model_p50, model_p95) = pair(queue), pair(model)
    return {
        "queue_p50_ms": queue_p50,
        "queue_p95_ms": queue_p95,
        "model_p50_ms": model_p50,
        "model_p95_ms": model_p95,
        "arithmetic": _arithmetic(p for _, _, _, p in rows),
    }


def model_stats_refresh(*, now: datetime | None = None) -> dict[str, int]:
    """Recompute every card's figures; cards with no run in the window get zeros.

    Bumps the page-cache version (as a catalogue save does) only when a shown figure
    changed, so an idle site's cached pages are not thrown away every interval.
    Returns ``{"cards": <rows written>, "changed": <rows whose figures changed>}``.
    """
    now = now or timezone.now()
    jobs = measured_jobs(now=now)
    counts = dict(jobs.values_list("card_id").annotate(n=Count("pk")).order_by())
    fresh: dict[int, dict] = {}
    for card_id, runs in counts.items():
        rows = list(
            jobs.filter(card_id=card_id)
            .order_by("-finished_at")
            .values_list("queued_at", "started_at", "timings", "runtime_precision")[
                : settings.VITRINE_STATS_SAMPLE
            ]
        )
        fresh[card_id] = {"runs_7d": runs, **_figures(rows)}
    empty = {**dict.fromkeys(FIELDS), "runs_7d": 0, "arithmetic": ""}
    changed, unchanged = 0, []
    with transaction.atomic():
        existing = {s.card_id: s for s in ModelStats.objects.select_for_update()}
        for card_id in sorted(set(existing) | set(fresh)):  # one lock order
            values = fresh.get(card_id, empty)
            row = existing.get(card_id)
            if row is None:
                ModelStats.objects.create(card_id=card_id, refreshed_at=now, **values)
                changed += 1
            elif _differs(row, values):
                ModelStats.objects.filter(pk=card_id).update(refreshed_at=now, **values)
                changed += 1
            else:
                unchanged.append(card_id)
        # Unchanged rows only learn when they were last checked: no page to re-render.
        ModelStats.objects.filter(pk__in=unchanged).update(refreshed_at=now)
        if changed:
            transaction.on_commit(bump_catalog_version)
    return {"cards": len(set(existing) | set(fresh)), "changed": changed}


def _differs(row: ModelStats, values: dict) -> bool:
    return any(getattr(row, f) != values[f] for f in FIELDS)
