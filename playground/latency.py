"""How long a job took, and percentiles of many: pure arithmetic, no ORM.

A job's latency has two parts a reader cares about: the *queue wait* (from when it last
entered the queue to when a worker claimed it) and the *model time* (what the worker spent
on it: decoding the upload, preprocess, forward pass, postprocess; or the provider's call
on a provider route), from ``Job.timings``. Percentiles are the continuous kind
(PostgreSQL's ``percentile_cont``, numpy's default "linear"), computed here so that SQLite
and PostgreSQL give the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

# Job.timings keys that are seconds of work (``batch`` is a count, not a time).
MODEL_STAGES = ("decode", "preprocess", "forward", "postprocess", "provider")


def model_seconds(timings: Mapping | None) -> float | None:
    """Seconds the worker (or provider) spent on the job; None when nothing was timed."""
    values = [timings[k] for k in MODEL_STAGES if isinstance((timings or {}).get(k), int | float)]
    return float(sum(values)) if values else None


def queue_seconds(queued_at: datetime | None, started_at: datetime | None) -> float | None:
    """Seconds between entering the queue and being claimed (never negative)."""
    if queued_at is None or started_at is None:
        return None
    return max(0.0, (started_at - queued_at).total_seconds())


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by linear interpolation between the closest
    ranks, as ``percentile_cont(q) WITHIN GROUP (ORDER BY value)``. Raises ValueError on an
    empty sequence or a ``q`` outside 0..1."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 1:
        raise ValueError(f"q must be within 0..1, got {q}")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def to_ms(seconds: float) -> int:
    """Whole milliseconds, half up (what the pages print)."""
    return math.floor(seconds * 1000 + 0.5)
