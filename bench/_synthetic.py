"""Deterministic tweet-reply-like sample sets for the metric benchmarks.

Each prompt gets n samples that mostly perturb one shipped reply (word swaps, drops) with
some unrelated replies and a few empty ones, so Self-BLEU and Distinct-n land in realistic
mid ranges rather than at 0 or 1. Uses ``data/reply_pairs.jsonl`` of the checkout when present,
else a small built-in word list.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

_REPLIES_FILE = Path(__file__).resolve().parents[1] / "data" / "reply_pairs.jsonl"
_FALLBACK = (
    "so true I love this take honestly the best thing I have read today can't wait for the game "
    "tonight that ending was wild who else is tired of mondays coffee first then everything else"
).split()


def _replies() -> list[str]:
    if _REPLIES_FILE.is_file():
        with _REPLIES_FILE.open() as fh:
            return [json.loads(line)["reply"] for line in fh if line.strip()]
    rng = random.Random(0)
    return [" ".join(rng.choice(_FALLBACK) for _ in range(rng.randint(4, 14))) for _ in range(500)]


def synthetic_sample_sets(n_prompts: int, n_samples: int, seed: int = 0) -> list[list[str]]:
    replies = _replies()
    vocab = sorted({w for r in replies for w in r.split()})
    rng = random.Random(seed)
    sets = []
    for _ in range(n_prompts):
        base = rng.choice(replies).split()
        group = []
        for _ in range(n_samples):
            roll = rng.random()
            if roll < 0.02:
                words: list[str] = []
            elif roll < 0.17:
                words = rng.choice(replies).split()
            else:
                words = [rng.choice(vocab) if rng.random() < 0.3 else w for w in base if rng.random() > 0.1]
            group.append(" ".join(words))
        sets.append(group)
    return sets


def machine_info() -> dict:
    import os
    import platform

    return {"python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform()}
