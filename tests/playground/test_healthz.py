"""``/healthz`` when the database cannot be reached: a JSON 503 with Retry-After, at once,
for a load balancer to take the process out (it was Django's HTML 500, after the pool's
10 s wait on the ASGI processes). Each case runs in a process of its own whose database is
a server that is not there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
PROBE = (
    "import django, json; django.setup()\n"
    "from django.test import Client\n"
    "r = Client().get('/healthz')\n"
    "print(json.dumps([r.status_code, r['Content-Type'], r.get('Retry-After'), r.json()]))\n"
)


@pytest.mark.same_on_any_database
@pytest.mark.parametrize(
    "database",
    [
        "postgres://postgres@127.0.0.1:{port}/nowhere?pool",  # the web's pool (config/asgi)
        "postgres://postgres@127.0.0.1:{port}/nowhere",
    ],
)
def test_healthz_says_503_in_json_when_the_database_is_down(database):
    pooled = database.endswith("?pool")
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env |= {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "1",
        "DATABASE_URL": database.removesuffix("?pool").format(port=free_port()),
        "VITRINE_DB_POOL": "1" if pooled else "0",
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    status, content_type, retry_after, body = json.loads(out.stdout.strip().splitlines()[-1])
    assert (status, content_type, retry_after) == (503, "application/json", "5")
    assert body == {"status": "unavailable", "error": "The database cannot be reached."}
