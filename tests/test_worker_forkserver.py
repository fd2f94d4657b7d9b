"""The tests' worker fork server forks only what would boot the same as a new process."""

from __future__ import annotations

import pytest

from tests.worker_forkserver import forkable

pytestmark = pytest.mark.same_on_any_database

BASE = {"PATH": "/usr/bin", "HOME": "/root", "PYTHONUNBUFFERED": "1"}


def test_a_worker_differing_in_what_is_read_after_the_fork_is_forked():
    env = {
        **BASE,
        "DATABASE_URL": "postgres://db/test_vitrine",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/15",
        "VITRINE_DETECTION_FLOOR": "0.002",
        "AWS_SECRET_ACCESS_KEY": "wrong",
        "LOG_FORMAT": "json",
    }
    assert forkable(env, BASE)
    assert forkable(BASE, BASE)


def test_a_worker_differing_in_what_torch_or_transformers_read_on_import_is_a_new_process():
    for name, value in [
        ("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"),
        ("HF_HUB_OFFLINE", "1"),
        ("OMP_NUM_THREADS", "1"),
        ("TORCH_HOME", "/tmp/torch"),
        ("PYTHONHASHSEED", "0"),
    ]:
        assert not forkable({**BASE, name: value}, BASE), name
    # A variable the server had and the worker drops counts as a difference too.
    assert not forkable(BASE, {**BASE, "OMP_NUM_THREADS": "2"})
