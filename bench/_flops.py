"""FLOPs of the work a model really does, and the machine's own matmul peak, for a bench.

``count_linear_flops`` counts every ``nn.Linear`` call made inside it (2 · rows · in · out),
through a global forward hook: the projections, the MLP, the LM head, LoRA's A and B and
CODI's thought projection, whatever batching or prefix sharing the engine does. Attention's
score and value products are left out: at these contexts (a question of ~100 tokens and a few
dozen thought and answer tokens) they are about 1% of the linear work at the LLaMA-1B shape,
so the count is a slight under-estimate and the reported utilisation a conservative one.
"""

from __future__ import annotations

import contextlib
import time


@contextlib.contextmanager
def count_linear_flops():
    import torch

    counter = {"flops": 0, "calls": 0}

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Linear) and inputs:
            x = inputs[0]
            counter["flops"] += 2 * (x.numel() // x.shape[-1]) * module.in_features * module.out_features
            counter["calls"] += 1

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield counter
    finally:
        handle.remove()


def matmul_peak_gflops(*, size: int = 2048, dtype=None, device: str = "cpu", repeats: int = 5) -> float:
    """Best GFLOP/s of a square ``size`` matmul on this device with torch's current threads."""
    import torch

    dtype = dtype or torch.float32
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    torch.matmul(a, b)
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9
