"""Timing: seconds per call of a function, and how long this process has been running."""
from __future__ import annotations

import os
import time


def timeit(fn, seconds: float, min_iters: int = 3, warmup: int = 1) -> tuple[float, int]:
    """Seconds per call of ``fn``, averaged over at least ``min_iters`` calls and ``seconds`` of time."""
    for _ in range(warmup):                # allocator, kernel selection, torch.compile
        fn()
    n, start = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - start < seconds:
        fn()
        n += 1
    return (time.perf_counter() - start) / n, n


def process_age() -> float:
    """Seconds since this process started (the interpreter's start-up and imports included); 0 where
    the system does not say (only Linux's /proc is read)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0
