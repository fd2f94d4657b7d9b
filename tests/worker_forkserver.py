"""A fork server for the tests' Celery workers: torch and transformers imported once.

Every worker a test starts is a real ``celery -A config worker`` process, and on a 2-core
machine ~8 s of its start-up is importing torch and transformers (the suite starts ~80
workers). This server imports them once, then forks a child per worker, which sets the
worker's environment, working directory and log, and runs Celery's own command-line entry
point (``celery.__main__.main``, what ``python -m celery`` runs) in its own session. Nothing
of Django, Celery or the project is imported before the fork: settings, the app and the
worker boot in the child from the environment it was given, as in a fresh process. It is
what Celery's prefork pool already does to every pool process (fork from a parent that
imported the runtime, ``playground.tasks.import_the_runtime_before_fork``).

Used by ``tests.conftest.start_worker`` when the worker's environment differs from the
server's only in variables read after the imports (``FORKABLE_ENV``); any other worker is
a fresh process.

Protocol: one JSON request per connection, ``{"argv", "env", "cwd", "log", "status"}``,
answered with ``{"pid": N}``. When the child exits, the server writes its exit code (as
``subprocess.Popen.returncode`` has it: negative for a signal) to the ``status`` path.
The server exits when its stdin closes (the test session ended or died).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import traceback

# Variables nothing imported here reads: a worker whose environment differs from the
# server's only in these can be forked from it. Everything else (LD_PRELOAD, HF_*, OMP_*,
# TORCH*, PYTHON*...) may be read while torch or transformers import: a fresh process.
FORKABLE_ENV = (
    "AWS_",
    "CACHE_URL",
    "CELERY_",
    "DATABASE_URL",
    "DJANGO_",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "PYTEST_",
    "REDIS_URL",
    "SENTRY_",
    "TEST_CELERY_",
    "VITRINE_",
)


def forkable(env: dict[str, str], base: dict[str, str]) -> bool:
    """Whether a worker with ``env`` can be forked from a server started with ``base``."""
    differ = {k for k in env.keys() | base.keys() if env.get(k) != base.get(k)}
    return all(k.startswith(FORKABLE_ENV) for k in differ)


def _preimport() -> None:
    import torch  # noqa: F401
    from transformers import (  # noqa: F401
        AutoConfig,
        AutoImageProcessor,
        AutoModelForObjectDetection,
    )
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    # As the worker's own import_the_runtime_before_fork does (playground/tasks.py, not
    # imported here): the families' models and PIL image processors, and transformers'
    # table of checkpoint renamings, once for every worker forked from here.
    for family in ("detr", "conditional_detr", "rt_detr", "yolos"):
        for kind in ("modeling", "image_processing_pil"):
            importlib.import_module(f"transformers.models.{family}.{kind}_{family}")
    get_checkpoint_conversion_mapping("detr")


def _run_child(request: dict) -> None:
    """In the forked child: become the worker. Never returns."""
    code = 1
    try:
        os.setsid()  # its own process group, as Popen(start_new_session=True)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        os.close(null)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["celery", *request["argv"]]
        from celery.__main__ import main

        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def serve(sock_path: str) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(16)
    _preimport()
    statuses: dict[int, str] = {}

    def reap(signum, frame) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            path = statuses.pop(pid, None)
            if path:
                with open(path + ".tmp", "w") as f:
                    f.write(str(os.waitstatus_to_exitcode(status)))
                os.replace(path + ".tmp", path)

    signal.signal(signal.SIGCHLD, reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches pytest, which ends us
    events = selectors.DefaultSelector()
    events.register(server, selectors.EVENT_READ)
    events.register(sys.stdin, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in events.select():
            if key.fileobj is sys.stdin:
                return  # the session is over (stdin closed)
            conn, _ = server.accept()
            with conn:
                request = json.loads(conn.makefile("r").readline())
                # SIGCHLD waits until the pid is known, so a child that dies at once is
                # still reaped into its status file.
                signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
                pid = os.fork()
                if pid == 0:
                    events.close()
                    server.close()
                    conn.close()
                    _run_child(request)
                statuses[pid] = request["status"]
                signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")


if __name__ == "__main__":
    serve(sys.argv[1])
