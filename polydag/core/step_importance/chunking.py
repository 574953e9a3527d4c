"""How many problems one batched forward of the engine takes: sized to the GPU's free memory.

A chunk is ``chunk_size`` problems, each with all of its ablation variants (rows). What a chunk
holds on the device, per the engine (:mod:`polydag.core.step_importance.inference`):

- per problem: the question's keys and values, stored once for all its rows (the shared
  prefix), and the prefill's logits and hidden states over the question tokens;
- per row: keys and values of its own steps (bot, the latent thoughts, eot and up to
  ``max_new_tokens`` answer tokens), its decoding logits, and with ``with_metrics`` the
  teacher-forced block of the gold reply in float32 log-probabilities.

:func:`chunk_size_for_memory` divides a share of the free memory by that upper bound (it
assumes every row decodes to the end, and leaves the rest of the memory to activations and the
allocator's fragmentation). On a CPU the same bound is taken against the memory the system
has available, and capped lower: past ~64 problems a chunk gains nothing on a CPU (the
rows' work no longer fits the caches), so :data:`MAX_CPU_CHUNK` applies there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

REFERENCE_BLOCK = 32  # an auto-sized run's reference gate samples per this many problems
MEMORY_SHARE = 0.5  # of the free memory; the rest is for activations and fragmentation
MAX_AUTO_CHUNK = 1024  # more problems per forward gains nothing once the GPU is busy
MAX_CPU_CHUNK = 64  # bench/results/ablation_chunks.json: 64 problems per chunk did best on a quiet CPU (1.19x 32)


@dataclass(frozen=True)
class ChunkMemory:
    """Upper bounds, in bytes, of what one problem and one of its rows hold on the device."""

    per_problem: int
    per_row: int

    def problem_bytes(self, n_variants: int) -> int:
        return self.per_problem + n_variants * self.per_row


def chunk_memory(*, n_layers: int, n_kv_heads: int, head_dim: int, hidden_size: int, vocab_size: int,
                 dtype_bytes: int, question_tokens: int, num_latent: int, max_new_tokens: int,
                 gold_tokens: int, with_metrics: bool) -> ChunkMemory:
    """The bytes a problem and a row of a chunk hold, from the model's shape (see the module
    docstring for what is counted)."""
    kv_per_token = 2 * n_layers * n_kv_heads * head_dim * dtype_bytes
    per_problem = question_tokens * (kv_per_token + (vocab_size + 2 * hidden_size) * dtype_bytes)
    row_tokens = num_latent + 2 + max_new_tokens  # bot, the thoughts, eot, the answer
    per_row = row_tokens * kv_per_token + 2 * vocab_size * 4  # its steps' cache; logits and argmax in fp32
    if with_metrics:
        per_row += (gold_tokens + 1) * vocab_size * 4  # float32 log-probs of the teacher-forced gold reply
    return ChunkMemory(per_problem=per_problem, per_row=per_row)


def chunk_size_for_memory(free_bytes: int, memory: ChunkMemory, n_variants: int, *, n_problems: int,
                          share: float = MEMORY_SHARE, cap: int = MAX_AUTO_CHUNK) -> int:
    """Problems per chunk that fit ``share`` of ``free_bytes``: at least 1, at most ``cap`` and
    the run's ``n_problems``."""
    if free_bytes <= 0:
        raise ValueError(f"free memory must be positive, got {free_bytes} bytes")
    fits = math.floor(share * free_bytes / memory.problem_bytes(n_variants))
    return max(1, min(fits, cap, max(1, n_problems)))


def free_device_memory(device: str) -> int:
    """Free bytes on a CUDA device (``torch.cuda.mem_get_info``), or the memory the system has
    available on a CPU (psutil)."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def device_chunk_cap(device: str) -> int:
    return MAX_AUTO_CHUNK if device.startswith("cuda") else MAX_CPU_CHUNK
