"""``manage.py allocator``: the library a torch worker should preload, for start scripts.

    LD_PRELOAD="$(python manage.py allocator)" celery -A config worker ...

Prints the path of the allocator chosen by ``VITRINE_ALLOCATOR`` (default ``measured``: the
choice of ``bench/bench_detector.py --allocators`` on this CPU model) when the worker's
backend is torch (``VITRINE_BACKEND``, or ``--backend``) and the library is installed; prints
nothing otherwise (glibc's malloc). ``make run`` applies it by itself.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from playground.runtime.allocator import worker_preload
from playground.runtime.backends import backend_setting


class Command(BaseCommand):
    help = "Print the allocator library a torch worker should preload (nothing: malloc)."

    def add_arguments(self, parser):
        parser.add_argument("--backend", help="The worker's backend (default VITRINE_BACKEND).")

    def handle(self, *args, backend: str | None, **options):
        preload = worker_preload(backend=backend or backend_setting())
        self.stdout.write(preload or "")
