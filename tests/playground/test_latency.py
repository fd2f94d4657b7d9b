"""Latency arithmetic: percentiles as PostgreSQL's percentile_cont, a job's two parts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from playground.latency import model_seconds, percentile, queue_seconds, to_ms


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([7], 0.5, 7),
        ([7], 0.95, 7),
        ([1, 2], 0.5, 1.5),
        ([3, 1, 2], 0.5, 2),  # order does not matter
        ([1, 2, 3, 4], 0.5, 2.5),
        ([1, 2, 3, 4], 0.95, 3.85),  # 0.95 * 3 = 2.85: 3 + 0.85 * (4 - 3)
        (list(range(1, 101)), 0.95, 95.05),
        (list(range(1, 101)), 0.5, 50.5),
        ([10, 10, 10, 1000], 0.5, 10),
        ([10, 10, 10, 1000], 0.95, 851.5),  # 10 + 0.85 * 990
        ([5, 1], 0.0, 1),
        ([5, 1], 1.0, 5),
    ],
)
def test_percentile_matches_percentile_cont(values, q, expected):
    assert percentile(values, q) == pytest.approx(expected)


@pytest.mark.parametrize(("values", "q"), [([], 0.5), ([1], -0.1), ([1], 1.5)])
def test_percentile_refuses_what_has_no_answer(values, q):
    with pytest.raises(ValueError):
        percentile(values, q)


@pytest.mark.parametrize(
    ("timings", "expected"),
    [
        ({"decode": 0.01, "preprocess": 0.02, "forward": 0.1, "postprocess": 0.005, "batch": 4},
         0.135),
        ({"provider": 0.8}, 0.8),
        ({"batch": 1}, None),
        ({}, None),
        (None, None),
        ({"forward": "fast"}, None),  # not a number: not a time
    ],
)  # fmt: skip
def test_model_seconds_sums_the_work_not_the_batch_size(timings, expected):
    result = model_seconds(timings)
    assert result == (pytest.approx(expected) if expected is not None else None)


def test_queue_seconds():
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert queue_seconds(at, at + timedelta(milliseconds=250)) == 0.25
    assert queue_seconds(at, at - timedelta(seconds=1)) == 0.0  # clock skew between hosts
    assert queue_seconds(at, None) is None


@pytest.mark.parametrize(("seconds", "ms"), [(0.0, 0), (0.0004, 0), (0.0005, 1), (1.2344, 1234)])
def test_to_ms_rounds_half_up(seconds, ms):
    assert to_ms(seconds) == ms
