"""What every bench prints about the machine it ran on (machines differ between sessions)."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The runtime reads the same name to pick the allocator measured on this CPU, so the bench
# that writes the measurement and the worker that reads it cannot spell the CPU differently.
from playground.runtime.allocator import cpu_model as _proc_cpu_model
from playground.runtime.allocator import cpuinfo_fields


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it."""
    return _proc_cpu_model() or platform.processor() or platform.machine() or "unknown"


def cpu_signature() -> str:
    """Family and model numbers: one model name ("AMD EPYC") covers generations whose
    vector units differ (Zen 4 runs AVX-512 on 256-bit halves, Zen 5 on full 512-bit units:
    half and full GEMM peak on the same 2 cores)."""
    fields = cpuinfo_fields()
    if "cpu family" not in fields:
        return ""
    return f"family {fields['cpu family']}, model {fields.get('model', '?')}"
