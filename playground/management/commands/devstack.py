"""``manage.py devstack``: the embedded broker, a Celery worker and the web server, together.

Each child runs in its own process session so that Ctrl-C reaches this supervisor alone;
it then stops the web server, the worker and the broker last, and waits for each. The
worker gets SIGTERM on its main process only: Celery's warm shutdown lets a running job
finish (its pool processes never see the signal). A second Ctrl-C stops it at once; its
unacknowledged job is then delivered again when the stack next starts. If any child dies,
all are stopped.

The web server is uvicorn (ASGI), as in production: waiting inference calls hold no
thread.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from playground.broker import EmbeddedRedis
from playground.runtime.allocator import worker_preload
from playground.runtime.backends import backend_setting


class Command(BaseCommand):
    help = "Run Vitrine for development: embedded Redis broker, one Celery worker, web server."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")
        parser.add_argument("--concurrency", default="1", help="Celery worker processes.")

    def handle(self, *args, host: str, port: str, concurrency: str, **options):
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        children: list[tuple[str, subprocess.Popen]] = []
        broker = None
        stopping = False

        def request_stop(signum, frame):
            nonlocal stopping
            if stopping:  # the second Ctrl-C: stop now, without waiting for jobs
                self.stderr.write("Stopping at once.")
                for _, proc in children:
                    _kill_group(proc, wait=False)  # the stopping loop below reaps them
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

        try:
            if f"redis+socket://{settings.EMBEDDED_BROKER_SOCKET}" == settings.CELERY_BROKER_URL:
                broker = EmbeddedRedis(
                    socket_path=settings.EMBEDDED_BROKER_SOCKET,
                    data_dir=settings.VAR_DIR / "redis",
                ).start()
                pid = broker.process.pid
                self.stdout.write(f"broker   pid {pid} redis-server on {broker.socket_path}")
            else:
                self.stdout.write(f"broker   {settings.CELERY_BROKER_URL} (external)")

            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            worker_env = dict(env)
            preload = worker_preload(backend=backend_setting())
            if preload and not os.environ.get("LD_PRELOAD"):
                # The allocator measured to pay for torch workers on this machine
                # (VITRINE_ALLOCATOR, playground/runtime/allocator.py); the web process
                # keeps glibc's.
                worker_env["LD_PRELOAD"] = preload
                self.stdout.write(f"worker   allocator {preload} (VITRINE_ALLOCATOR)")
            worker = [
                sys.executable, "-m", "celery", "-A", "config", "worker",
                "--loglevel", "INFO", "--concurrency", concurrency, "--hostname", "dev@%h",
                "--queues", ",".join(dict.fromkeys(
                    ["default", settings.VITRINE_WEBHOOK_QUEUE, settings.VITRINE_INFERENCE_QUEUE]
                )),
                # Embedded beat runs the stale-job reaper; one per deployment in production.
                "--beat", "--schedule", str(settings.VAR_DIR / "celerybeat-schedule"),
            ]  # fmt: skip
            web = [
                sys.executable, "-m", "uvicorn", "config.asgi:application",
                "--host", host, "--port", str(port), "--timeout-graceful-shutdown", "5",
            ]  # fmt: skip
            for name, argv, child_env in (("worker", worker, worker_env), ("web", web, env)):
                proc = subprocess.Popen(
                    argv, cwd=settings.BASE_DIR, env=child_env, start_new_session=True
                )
                children.append((name, proc))
                self.stdout.write(f"{name:8} pid {proc.pid}")

            self.stdout.write(
                self.style.SUCCESS(f"\nVitrine is running at http://{host}:{port}/\n")
                + f"Admin: http://{host}:{port}/admin/ — create a user with\n"
                f"  {sys.executable} manage.py createsuperuser\n"
                "Press Ctrl-C to stop everything.\n"
            )
            while not stopping:
                for name, proc in children:
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} exited with {proc.returncode}; stopping.")
                        stopping = True
                        break
                time.sleep(0.5)
        finally:
            for name, proc in reversed(children):
                if name == "worker":
                    self.stdout.write("stopping worker (running jobs finish; Ctrl-C again: now)")
                    # Warm: the main process alone, so the pool finishes what it runs.
                    _stop(proc, group=False, timeout=settings.CELERY_TASK_HARD_TIME_LIMIT + 30)
                else:
                    _stop(proc)
                self.stdout.write(f"stopped {name}")
            if broker is not None:
                broker.stop()
                self.stdout.write("stopped broker")


def _stop(proc: subprocess.Popen, *, group: bool = True, timeout: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    if group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
    # Whatever the main process left behind in its session (pool processes) goes too.
    _kill_group(proc)


def _kill_group(proc: subprocess.Popen, *, wait: bool = True) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if wait:
        proc.wait()
