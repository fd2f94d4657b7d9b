"""Which memory allocator a torch worker process runs with, chosen by measurement.

Eager torch allocates and frees large activation buffers on every forward; glibc's malloc
returns them to the kernel and faults them in again, tcmalloc and jemalloc keep them. Which
one pays depends on the machine (tcmalloc 1.59x on one 2-core machine, jemalloc 0.7x there):
``bench/bench_detector.py --allocators`` measures them on this machine, interleaved, and
writes its choice to ``bench/results/allocators.json``.

An allocator can only be chosen when a process starts (``LD_PRELOAD``), so ``make run``
(``manage.py devstack``) sets it for the worker it starts, and ``manage.py allocator`` prints
the library for other start scripts. Only for torch workers (``VITRINE_BACKEND=torch``):
both tcmalloc and jemalloc preloaded crash OpenVINO's ``compile_model``.

``VITRINE_ALLOCATOR``: ``measured`` (default: the bench's choice for this CPU model when its
file is there, else glibc's malloc), ``malloc``, ``tcmalloc`` or ``jemalloc``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from playground.runtime.env import env_choice

ALLOCATOR_ENV = "VITRINE_ALLOCATOR"
ALLOCATOR_CHOICES = ("measured", "malloc", "tcmalloc", "jemalloc")
# Debian's packages: libtcmalloc-minimal4, libjemalloc2.
LIBRARIES = {
    "tcmalloc": (
        "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
        "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    ),
    "jemalloc": (
        "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
        "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    ),
}
MEASURED_FILE = Path(__file__).resolve().parents[2] / "bench" / "results" / "allocators.json"


def library(name: str) -> str | None:
    """The installed shared library of allocator ``name`` (None for malloc or when absent)."""
    for path in LIBRARIES.get(name, ()):
        if os.path.exists(path):
            return path
    return None


def cpuinfo_fields() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo ("model name", "cpu family", ...);
    empty where there is none."""
    fields: dict[str, str] = {}
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return fields
    for line in lines:
        if not line.strip():
            if fields:
                break  # the first processor's block ends
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_model() -> str:
    return cpuinfo_fields().get("model name", "")


def measured_choice(path: Path | None = None) -> str:
    """The allocator the bench chose for this CPU model; ``malloc`` when it did not run here."""
    path = path or MEASURED_FILE
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return "malloc"
    if result.get("cpu") != cpu_model():
        return "malloc"  # measured on another machine kind: it does not carry over
    return result.get("choice", "malloc")


def worker_preload(*, backend: str, setting: str | None = None) -> str | None:
    """The library to put in a torch worker's ``LD_PRELOAD``, or None.

    None unless the worker's backend is ``torch`` (OpenVINO crashes with either preloaded;
    ``auto`` may pick it), the allocator chosen is not malloc, and its library is installed.
    """
    if backend != "torch":
        return None
    choice = setting or env_choice(ALLOCATOR_ENV, "measured", ALLOCATOR_CHOICES)
    if choice == "measured":
        choice = measured_choice()
    return library(choice)
