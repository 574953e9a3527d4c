"""Wall time and peak RSS of the per-prompt metrics at 10k texts, and against a naive way.

Each measurement runs in its own subprocess, so its peak RSS (``ru_maxrss``) is its own:

- ``batched`` (polydag): ``per_prompt_metrics`` on 1,000 prompts × 10 samples with the real
  all-MiniLM-L6-v2 embedder: all texts in one cached ``encode`` call, 64 texts per forward
  batch, one prompt's 10×10 similarity matrix at a time. Must stay ≤ 1.5 GB.
- ``naive`` (the out-of-memory pattern): every text in ONE forward batch
  (``batch_size=len(texts)``), then the all-texts × all-texts cosine matrix, from which each
  prompt's block is averaged. Its memory grows with the number of texts (activations) and
  with its square (the matrix), so by default it runs on 1,000 texts (100 prompts), where
  ``batched`` is measured too for a like-for-like ratio; ``--naive-prompts 1000`` runs it at
  10k texts (about 5 GB and several minutes on 2 cores).

Writes bench/results/metrics_memory.json.

    python bench/bench_metrics_memory.py [--n-prompts 1000] [--naive-prompts 100]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _synthetic import machine_info, synthetic_sample_sets  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "metrics_memory.json"
RSS_LIMIT_MB = 1536


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _samples_table(n_prompts: int, n_samples: int):
    import polars as pl

    sets = synthetic_sample_sets(n_prompts, n_samples, seed=1)
    rows = [
        {"lambda_key": "0.0", "prompt_id": f"p{p:05d}", "sample_idx": i, "text": text, "passed": bool(len(text) > 20)}
        for p, texts in enumerate(sets)
        for i, text in enumerate(texts)
    ]
    return pl.DataFrame(rows)


def child(variant: str, n_prompts: int, n_samples: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from polydag.core.evaluation.embeddings import load_embedder
    from polydag.core.evaluation.metrics.per_prompt import per_prompt_metrics

    samples = _samples_table(n_prompts, n_samples)
    embedder = load_embedder(batch_size=64)
    rss_after_load = _peak_rss_mb()
    start = time.perf_counter()
    if variant == "batched":
        table = per_prompt_metrics(samples, embedder)
        semantic = table.sort("prompt_id").get_column("semantic_diversity").to_numpy()
    elif variant == "naive":
        texts = samples.sort("prompt_id", "sample_idx").get_column("text").to_list()
        with torch.inference_mode():
            vectors = embedder.model.encode(
                texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True
            )
        similarity = vectors @ vectors.T  # all texts × all texts
        semantic = []
        for p in range(n_prompts):
            block = similarity[p * n_samples:(p + 1) * n_samples, p * n_samples:(p + 1) * n_samples]
            upper = block[np.triu_indices(n_samples, k=1)].astype(np.float64)
            semantic.append(float(np.clip(1.0 - upper, 0.0, 2.0).mean()))
        semantic = np.array(semantic)
    else:
        raise ValueError(variant)
    wall = time.perf_counter() - start
    return {
        "variant": variant,
        "n_prompts": n_prompts,
        "n_texts": n_prompts * n_samples,
        "wall_s": wall,
        "texts_per_s": n_prompts * n_samples / wall,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_after_model_load_mb": rss_after_load,
        "mean_semantic_diversity": float(np.nanmean(semantic)),
    }


def run_child(variant: str, n_prompts: int, n_samples: int) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--n-prompts", str(n_prompts), "--n-samples", str(n_samples)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{variant:8s} {result['n_texts']:6d} texts: {result['wall_s']:.1f}s, peak RSS {result['peak_rss_mb']:.0f} MB",
          flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prompts", type=int, default=1000)
    parser.add_argument("--n-samples", type=int, default=10)
    parser.add_argument("--naive-prompts", type=int, default=100)
    parser.add_argument("--child", choices=("batched", "naive"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(child(args.child, args.n_prompts, args.n_samples)))
        return

    from polydag.core.ops.jsonable import to_jsonable

    full = run_child("batched", args.n_prompts, args.n_samples)
    small = run_child("batched", args.naive_prompts, args.n_samples)
    naive = run_child("naive", args.naive_prompts, args.n_samples)
    # both ways compute the same semantic diversity on the same texts
    assert abs(small["mean_semantic_diversity"] - naive["mean_semantic_diversity"]) < 1e-4, (small, naive)
    assert full["peak_rss_mb"] <= RSS_LIMIT_MB, f"per_prompt_metrics peaked at {full['peak_rss_mb']:.0f} MB > {RSS_LIMIT_MB} MB"

    result = {
        "benchmark": "metrics_memory",
        "batched_full": full,
        "batched_same_size_as_naive": small,
        "naive_same_size": naive,
        "rss_limit_mb": RSS_LIMIT_MB,
        "peak_rss_ratio_naive_over_batched": naive["peak_rss_mb"] / small["peak_rss_mb"],
        "incremental_rss_ratio_naive_over_batched": (
            (naive["peak_rss_mb"] - naive["rss_after_model_load_mb"])
            / max(1.0, small["peak_rss_mb"] - small["rss_after_model_load_mb"])
        ),
        "wall_ratio_naive_over_batched": naive["wall_s"] / small["wall_s"],
        "machine": machine_info(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(to_jsonable(result), indent=2) + "\n")
    print(json.dumps(to_jsonable(result), indent=2))


if __name__ == "__main__":
    main()
