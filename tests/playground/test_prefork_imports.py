"""What a worker's main process imports before its pool forks (``worker_init``): every pool
process, also one started after a kill -9, then loads its first model without importing
transformers' detection modules or building its table of checkpoint renamings again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.same_on_any_database

REPO = Path(__file__).resolve().parents[2]

# In a new process: what a fresh worker's main process has before and after the hook.
CHECK = """
import sys
import django
django.setup()
from playground.tasks import PREFORK_MODULES, import_the_runtime_before_fork
from transformers import conversion_mapping
def state():
    return [m in sys.modules for m in PREFORK_MODULES] + [
        conversion_mapping._checkpoint_conversion_mapping_cache is not None]
print(state())
import_the_runtime_before_fork()
print(state())
"""


def test_the_families_modules_and_the_renaming_table_are_ready_before_the_fork():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    done = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    before, after = done.stdout.strip().splitlines()[-2:]
    assert "True" not in before.split(", ")[-1]  # not built by anything imported before
    assert after == str([True] * (8 + 1))
