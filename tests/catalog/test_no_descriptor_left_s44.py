"""A web process with no file descriptor free (session 44's resource probe).

A fresh uvicorn process under `ulimit -n 64`, sent 150 concurrent inference calls:
calls the process could not take were reset by the server, and those it took and refused
(503 queue_unavailable, storage_unavailable: the broker's socket and the upload's file
could not be opened) came out as 500s, because Django's logging of the 503 imported the
``unicode_escape`` codec from disk on first use and that import failed too.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

LOG_A_REFUSAL_WITH_NO_DESCRIPTOR_FREE = """
import os, resource
import django
django.setup()
from django.http import HttpResponse
from django.utils.log import log_response
in_use = len(os.listdir("/proc/self/fd")) - 1  # less the listing's own
resource.setrlimit(resource.RLIMIT_NOFILE, (in_use, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
try:
    open(os.devnull)
except OSError as exc:
    print("no descriptor free:", exc.errno)
response = HttpResponse(status=503)
log_response("Service Unavailable: %s", "/v1/inference/org/model", response=response)
print("logged")
"""


def test_a_process_with_no_descriptor_free_still_logs_its_refusals(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}",  # never opened
    }
    done = subprocess.run(
        [sys.executable, "-c", LOG_A_REFUSAL_WITH_NO_DESCRIPTOR_FREE],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["no descriptor free: 24", "logged"]
