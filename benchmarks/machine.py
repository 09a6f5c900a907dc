"""What the parse benchmarks print about the machine they ran on (for the tables in README.md)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np


def load_average() -> str:
    """Return the 1-minute load average, or "n/a" where the OS has none."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):
        return "n/a"


def cpu_model() -> str:
    """Return the CPU model name (Linux), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe() -> str:
    """OS, CPU model, CPU count, Python and NumPy versions, in one line."""
    return (
        f"{platform.platform()}, {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"NumPy {np.__version__}"
    )
