"""Self-BLEU for 1,000 prompts × 10 samples: polydag's fast path vs sacrebleu per hypothesis.

Naive way (what the issue names): for every sample, ``sacrebleu.sentence_bleu(sample, others)``,
which builds a BLEU object and re-extracts every reference's n-grams on each call. Also timed:
the reference path ``BLEU.sentence_score`` on one prebuilt object. The fast path extracts each
sample's n-grams once per prompt (see polydag/core/metrics/self_bleu.py). All three must agree
to 1e-9 (asserted here). Writes bench/results/self_bleu.json.

    python bench/bench_self_bleu.py [--n-prompts 1000] [--n-samples 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _synthetic import machine_info, synthetic_sample_sets  # noqa: E402

import sacrebleu  # noqa: E402

from polydag.core.ops.jsonable import to_jsonable  # noqa: E402
from polydag.core.evaluation.metrics.self_bleu import (  # noqa: E402
    bleu_metric,
    self_bleu,
    self_bleu_reference,
    self_bleu_signature,
)

RESULTS = Path(__file__).resolve().parent / "results" / "self_bleu.json"


def naive_self_bleu(texts: list[str]) -> float:
    scores = [
        min(sacrebleu.sentence_bleu(texts[i], texts[:i] + texts[i + 1:]).score / 100.0, 1.0)
        for i in range(len(texts))
    ]
    return sum(scores) / len(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prompts", type=int, default=1000)
    parser.add_argument("--n-samples", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    sets = synthetic_sample_sets(args.n_prompts, args.n_samples, args.seed)
    bleu_metric()  # build the shared BLEU object outside the timings

    start = time.perf_counter()
    fast = [self_bleu(texts) for texts in sets]
    t_fast = time.perf_counter() - start

    start = time.perf_counter()
    naive = [naive_self_bleu(texts) for texts in sets]
    t_naive = time.perf_counter() - start

    start = time.perf_counter()
    reference = [self_bleu_reference(texts) for texts in sets]
    t_reference = time.perf_counter() - start

    max_diff_naive = max(abs(a - b) for a, b in zip(fast, naive))
    max_diff_reference = max(abs(a - b) for a, b in zip(fast, reference))
    assert max_diff_naive <= 1e-9, f"fast Self-BLEU differs from sacrebleu.sentence_bleu by {max_diff_naive}"
    assert max_diff_reference <= 1e-9, f"fast Self-BLEU differs from BLEU.sentence_score by {max_diff_reference}"

    result = {
        "benchmark": "self_bleu",
        "n_prompts": args.n_prompts,
        "n_samples": args.n_samples,
        "n_hypotheses": args.n_prompts * args.n_samples,
        "fast_s": t_fast,
        "naive_sentence_bleu_s": t_naive,
        "reference_sentence_score_s": t_reference,
        "speedup_vs_sentence_bleu": t_naive / t_fast,
        "speedup_vs_sentence_score": t_reference / t_fast,
        "max_abs_diff_vs_sentence_bleu": max_diff_naive,
        "max_abs_diff_vs_sentence_score": max_diff_reference,
        "mean_self_bleu": sum(fast) / len(fast),
        "signature": self_bleu_signature(),
        "sacrebleu_version": sacrebleu.__version__,
        "machine": machine_info(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(to_jsonable(result), indent=2) + "\n")
    print(json.dumps(to_jsonable(result), indent=2))


if __name__ == "__main__":
    main()
