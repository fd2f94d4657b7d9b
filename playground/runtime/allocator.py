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

``VITRINE_ALLOCATOR``: ``measured`` (default: the bench's choice for this CPU when the file
holds one, else glibc's malloc), ``malloc``, ``tcmalloc`` or ``jemalloc``. "This CPU" is the
model name with its family and model numbers (``cpu_identity``): behind a hypervisor one
name ("AMD EPYC") covers Zen 3, 4 and 5, whose allocators and vector units differ, so a
choice measured on one of them must not carry over to another. The file keeps one
measurement per CPU, so a fleet of mixed workers reads each its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from playground.runtime.env import CHOICES, env_choice

ALLOCATOR_ENV = "VITRINE_ALLOCATOR"
ALLOCATOR_CHOICES = CHOICES[ALLOCATOR_ENV]
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


def cpu_signature() -> str:
    """Family and model numbers ("family 25, model 17"); empty where /proc/cpuinfo has none.
    One model name ("AMD EPYC") covers generations whose vector units differ (Zen 3: AVX2;
    Zen 4: AVX-512 on 256-bit halves; Zen 5: full 512-bit units)."""
    fields = cpuinfo_fields()
    if "cpu family" not in fields:
        return ""
    return f"family {fields['cpu family']}, model {fields.get('model', '?')}"


def cpu_identity() -> str:
    """What a measurement is kept under: the model name and its family and model numbers."""
    signature = cpu_signature()
    return f"{cpu_model()} ({signature})" if signature else cpu_model()


def measured_choice(path: Path | None = None) -> str:
    """The allocator the bench chose on this CPU; ``malloc`` where it has not run on one."""
    path = path or MEASURED_FILE
    try:
        measurements = json.loads(path.read_text()).get("by_cpu", {})
    except (OSError, ValueError, AttributeError):
        return "malloc"
    # Measured on another CPU (or on one the file cannot tell apart): it does not carry over.
    return measurements.get(cpu_identity(), {}).get("choice", "malloc")


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
