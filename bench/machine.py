"""What every bench prints about the machine it ran on (machines differ between sessions)."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The runtime reads the same name to pick the allocator measured on this CPU, so the bench
# that writes the measurement and the worker that reads it cannot spell the CPU differently.
from playground.runtime.allocator import cpu_model as _proc_cpu_model
from playground.runtime.allocator import cpu_signature  # noqa: F401  (the benches' import)


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it."""
    return _proc_cpu_model() or platform.processor() or platform.machine() or "unknown"
