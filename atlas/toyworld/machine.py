"""What machine a measurement ran on: CPU model, the SIMD flags that decide CPU training speed, torch.

Usage::

    from atlas.toyworld.machine import machine_info, describe
    info = machine_info()   # {"cpu_model", "cpu_flags": {...}, "cpus", "torch", "torch_threads", ...}
    print(describe(info))   # "Intel(R) Xeon(R) Processor, 2 CPUs, flags: avx2 avx512f ...; torch ..."
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

# the flags that change how fast torch trains on a CPU (oneDNN picks its kernels by them)
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key == "flags":
            flags = set(value.split())
            break  # every core lists the same flags; the model name comes before them
    return model, flags


def machine_info() -> dict[str, Any]:
    import torch

    model, flags = _cpuinfo()
    return {
        "cpu_model": model,
        "cpu_flags": {f: f in flags for f in FLAGS},
        "cpus": os.cpu_count(),
        "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def load_average() -> float | None:
    """The machine's 1-minute load average (runnable processes, this one's threads included); None where
    the system does not say."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def busy_note(before: float | None, after: float | None, cpus: int, own_threads: int) -> str | None:
    """A line saying a speed measurement shared the machine, or None: the load before it began above half
    the CPUs, or during it above its own threads plus one (a 2-core machine's throughput moved 24x with
    another process at 100 %)."""
    said = []
    if before is not None and before > 0.5 * cpus:
        said.append(f"{before:g} before it started")
    if after is not None and after > own_threads + 1:
        said.append(f"{after:g} at its end ({own_threads} of it this measurement's threads)")
    if not said:
        return None
    return (
        f"atlas: warning: the machine was busy (load average {' and '.join(said)}, on {cpus} CPUs): these "
        "rates are lower than an idle machine's and move from run to run; measure again on idle cores"
    )


def describe(info: dict[str, Any]) -> str:
    flags = " ".join(f for f, on in info["cpu_flags"].items() if on) or "none of " + "/".join(FLAGS)
    return (
        f"{info['cpu_model']}, {info['cpus']} CPUs, flags: {flags}; "
        f"torch {info['torch']}, {info['torch_threads']} threads"
    )
