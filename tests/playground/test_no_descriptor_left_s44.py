"""A web process's first job message sent with no file descriptor free (session 44's
resource probe: a fresh uvicorn process under `ulimit -n 64`, 150 concurrent calls).

The call that sent the process's first message imported ``playground.messages`` then, and
that import failed with EMFILE before the send's own error handling: a 500 for a call the
process would have refused with 503 ``queue_unavailable`` had its broker been away. The job
row was never written (the import came first), so nothing was charged either way.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

FIRST_SEND_WITH_NO_DESCRIPTOR_FREE = """
import os, resource, sys
import django
django.setup()
from playground.models import Job
from playground.services import _send
print("messages imported:", "playground.messages" in sys.modules)
in_use = len(os.listdir("/proc/self/fd")) - 1  # less the listing's own
resource.setrlimit(resource.RLIMIT_NOFILE, (in_use, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
print("sent:", _send(Job(queue="cpu")))
"""


def test_a_first_send_with_no_descriptor_free_is_not_sent_not_a_crash(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}",  # never opened
        "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",  # never reached: no socket to open
    }
    done = subprocess.run(
        [sys.executable, "-c", FIRST_SEND_WITH_NO_DESCRIPTOR_FREE],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["messages imported: False", "sent: False"]
