"""How many threads torch may use for CPU work.

On a small, shared CPU box, torch's default (one OpenMP thread per core) collapses when any
other process is busy: its threads spin-wait on each other while the scheduler runs someone
else, and a training step measured 4.5 s with two threads against 0.65 s with one (2 cores,
one other busy process). polydag therefore uses few threads on small machines: one on up to
4 cores, half the cores above that. ``POLYDAG_TORCH_THREADS`` overrides it.
"""

from __future__ import annotations

import os


def default_torch_threads(cpu_count: int | None = None) -> int:
    env = os.environ.get("POLYDAG_TORCH_THREADS")
    if env:
        threads = int(env)
        if threads < 1:
            raise ValueError(f"POLYDAG_TORCH_THREADS must be >= 1, got {env!r}")
        return threads
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    return 1 if cores <= 4 else cores // 2


def configure_torch_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads for this process; returns the number set."""
    import torch

    threads = threads or default_torch_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
