"""Calibrate τ of distinct_k's embedding partition against ground-truth intents.

For data without reply intents, distinct_k's classes come from complete-linkage clustering of
the MiniLM embeddings at cosine ≥ τ (``polydag.core.evaluation.metrics.classes``). This picks τ
where that partition agrees best with the intents that the default data's generator
(``data/make_reply_pairs.py``) draws. It reads only the generator's templates, never a model's
samples, so no λ result can influence τ.

For each of ``--prompts`` prompts (spread over the topics), a pool of replies is filled the
generator's way: each reply intent with ``--per-intent`` distinct templates, on the prompt's
topic words (30% sibling words, as the generator does). Each pool is embedded with
all-MiniLM-L6-v2 and partitioned at every τ of the grid. Reported per τ:

- ``ari``: mean adjusted Rand index of the partition against the intents (1 = the intents
  exactly, 0 = chance);
- ``classes_per_intent``: mean of (number of classes / number of intents) (1 = as many classes
  as intents; > 1 splits an intent, < 1 merges intents);
- ``abs_count_error``: mean |classes − intents|, the error distinct_k itself would make; the
  default τ is the grid value that minimises it (``best_tau_by_count_error``), since
  distinct_k is a count.

Also ``same_intent_cos`` / ``other_intent_cos``: mean cosine of reply pairs of the same and of
different intents. Writes ``bench/results/class_threshold.json``.

    python bench/calibrate_class_threshold.py [--prompts 80] [--per-intent 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _synthetic import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "class_threshold.json"
GRID = [round(x, 2) for x in np.arange(0.40, 0.96, 0.05)]


def _generator():
    spec = importlib.util.spec_from_file_location("make_reply_pairs", ROOT / "data" / "make_reply_pairs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reply_pools(n_prompts: int, per_intent: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """[(texts, intents)] per prompt, filled the generator's way."""
    gen = _generator()
    rng = random.Random(seed)
    topics = sorted(gen.TOPICS)
    pools = []
    for p in range(n_prompts):
        vocab = gen.TOPICS[topics[p % len(topics)]]
        slots = {"thing": rng.choice(vocab["things"]), "doing": rng.choice(vocab["doing"]),
                 "alt": rng.choice(vocab["alt"]), "tag": rng.choice(vocab["tags"])}
        texts, intents = [], []
        for intent in sorted(gen.REPLY_TEMPLATES):
            for template in rng.sample(gen.REPLY_TEMPLATES[intent], per_intent):
                reply_slots = dict(slots)
                if rng.random() < 0.3:
                    reply_slots["thing"] = rng.choice(vocab["things"])
                if rng.random() < 0.3:
                    reply_slots["doing"] = rng.choice(vocab["doing"])
                reply_slots["emoji"], reply_slots["emoji2"] = rng.sample(vocab["emoji"], 2)
                reply_slots["tag"] = rng.choice(vocab["tags"])
                texts.append(gen._fill(template, reply_slots))
                intents.append(intent)
        pools.append((texts, intents))
    return pools


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=80)
    parser.add_argument("--per-intent", type=int, default=2)
    args = parser.parse_args(argv)

    from sklearn.metrics import adjusted_rand_score  # a bench-only dependency (sentence-transformers brings it)

    from polydag.core.evaluation.metrics.classes import embedding_classes
    from polydag.core.evaluation.metrics.semantic import default_embedder

    pools = reply_pools(args.prompts, args.per_intent)
    started = time.perf_counter()
    embedder = default_embedder()
    flat = [t for texts, _ in pools for t in texts]
    vectors = embedder.encode(flat)
    embed_s = time.perf_counter() - started
    blocks, start = [], 0
    for texts, intents in pools:
        blocks.append((vectors[start:start + len(texts)], intents))
        start += len(texts)

    same, other = [], []
    for e, intents in blocks:
        cos = e @ e.T
        for i in range(len(intents)):
            for j in range(i + 1, len(intents)):
                (same if intents[i] == intents[j] else other).append(float(cos[i, j]))
    rows = []
    for tau in GRID:
        ari, ratio, error = [], [], []
        for e, intents in blocks:
            labels = embedding_classes(e, tau)
            n_intents, n_classes = len(set(intents)), len(set(labels))
            ari.append(adjusted_rand_score(intents, labels))
            ratio.append(n_classes / n_intents)
            error.append(abs(n_classes - n_intents))
        rows.append({"tau": tau, "ari": float(np.mean(ari)), "classes_per_intent": float(np.mean(ratio)),
                     "abs_count_error": float(np.mean(error))})
    best = max(rows, key=lambda r: r["ari"])
    # distinct_k is a count, so τ is chosen where the count is closest to the intents' count;
    # ties go to the larger τ (the stricter partition)
    best_count = min(rows, key=lambda r: (r["abs_count_error"], -r["tau"]))
    result = {
        "what": "agreement of distinct_k's MiniLM complete-linkage partition with ground-truth intents",
        "n_prompts": args.prompts, "per_intent": args.per_intent,
        "n_texts": len(flat), "embed_seconds": round(embed_s, 1),
        "same_intent_cos": float(np.mean(same)), "other_intent_cos": float(np.mean(other)),
        "grid": rows, "best_tau_by_ari": best["tau"], "best_tau_by_count_error": best_count["tau"],
        "machine": machine_info(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for r in rows:
        print(f"τ={r['tau']:.2f}  ARI={r['ari']:.3f}  classes/intent={r['classes_per_intent']:.2f}  "
              f"|Δcount|={r['abs_count_error']:.2f}")
    print(f"same-intent cos {result['same_intent_cos']:.3f}, other-intent cos {result['other_intent_cos']:.3f}; "
          f"best τ by ARI: {best['tau']} (ARI {best['ari']:.3f}); by count error: {best_count['tau']} "
          f"(|Δcount| {best_count['abs_count_error']:.2f}); wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
