"""Shared helpers for the benchmarks: timing, peak memory, the machine's description, results rows."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch


@dataclass
class Row:
    """One benchmark result. ``value`` is in ``unit``; ``extra`` holds anything else worth a column."""

    bench: str
    case: str
    metric: str
    value: float
    unit: str
    device: str = "cpu"
    extra: dict = field(default_factory=dict)

    def flat(self) -> dict:
        d = asdict(self)
        extra = d.pop("extra")
        d.update({k: v for k, v in extra.items()})
        return d


def machine() -> str:
    """A one-line description of this machine: CPU model, cores, torch threads, GPU if any."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    n = torch.get_num_threads()
    return f"{cpu}; {os.cpu_count()} cores; torch {torch.__version__} ({n} thread{'' if n == 1 else 's'}); {gpu}"


def time_fn(fn: Callable[[], object], *, warmup: int = 2, repeats: int = 5, sync_cuda: bool = False) -> tuple[float, float]:
    """Median and standard deviation of ``fn()``'s wall time in seconds over ``repeats`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if sync_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), (statistics.stdev(times) if len(times) > 1 else 0.0)


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_peak_gflops(n: int = 1024, repeats: int = 5, device: str = "cpu") -> float:
    """The measured fp32 matrix-multiply rate of this device (GFLOP/s), from n x n @ n x n products."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    med, _ = time_fn(lambda: a @ b, warmup=2, repeats=repeats, sync_cuda=device == "cuda")
    return 2 * n**3 / med / 1e9
