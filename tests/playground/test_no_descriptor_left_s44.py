"""A web process with no file descriptor free (session 44's resource probe: a fresh uvicorn
process under `ulimit -n 64`, sent 150 concurrent inference calls).

Calls the process could not take were reset by the server; calls it took and refused (503
``queue_unavailable``, ``storage_unavailable``: the broker's socket and the upload's file
could not be opened) came out as 500s, twice over: Django's logging of the 503 imported the
``unicode_escape`` codec from disk on first use, and the process's first job message
imported ``playground.messages`` before the send's own error handling. Each check here runs
in a fresh interpreter whose descriptor limit is what it already has open.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

NO_DESCRIPTOR_FREE = """
import os, resource, sys
import django
django.setup()
{before}
in_use = len(os.listdir("/proc/self/fd")) - 1  # less the listing's own
resource.setrlimit(resource.RLIMIT_NOFILE, (in_use, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
try:
    open(os.devnull)
except OSError as exc:
    print("no descriptor free:", exc.errno)
{then}
"""


def run_without_descriptors(tmp_path, *, before: str, then: str, **env: str) -> list[str]:
    """What ``before`` and ``then`` printed, ``then`` run with no descriptor free."""
    done = subprocess.run(
        [sys.executable, "-c", NO_DESCRIPTOR_FREE.format(before=before, then=then)],
        cwd=REPO,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}",  # never opened
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    lines.remove("no descriptor free: 24")  # ValueError: descriptors were left
    return lines


def test_a_process_with_no_descriptor_free_still_logs_its_refusals(tmp_path):
    logged = run_without_descriptors(
        tmp_path,
        before="from django.http import HttpResponse\nfrom django.utils.log import log_response",
        then=(
            "log_response('Service Unavailable: %s', '/v1/inference/org/model',"
            " response=HttpResponse(status=503))\nprint('logged')"
        ),
    )
    assert logged == ["logged"]


def test_a_first_send_with_no_descriptor_free_is_not_sent_not_a_crash(tmp_path):
    sent = run_without_descriptors(
        tmp_path,
        before=(
            "from playground.models import Job\nfrom playground.services import _send\n"
            "print('messages imported:', 'playground.messages' in sys.modules)"
        ),
        then="print('sent:', _send(Job(queue='cpu')))",
        CELERY_BROKER_URL="redis://127.0.0.1:1/0",  # never reached: no socket to open
    )
    assert sent == ["messages imported: False", "sent: False"]
