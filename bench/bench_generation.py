"""Batched generation vs one sample per ``generate`` call, same model, prompts and settings.

Batched: ``generate_samples`` (prompt batches × ``num_return_sequences``). Naive:
``generate_samples_one_at_a_time`` (one prompt, one sample per call). Both use the same
tokenization, sampling options and decoding. The model is ``--model-dir`` (any local Hugging
Face causal-LM directory, e.g. the pipeline's base model under data/artifacts/), else a small
model of the pipeline's default architecture built here with a few pretraining steps.
Writes bench/results/generation.json.

    python bench/bench_generation.py [--model-dir DIR] [--n-prompts 8] [--n-samples 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _synthetic import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "generation.json"
REPLY_PAIRS = Path(__file__).resolve().parents[1] / "data" / "reply_pairs.jsonl"


def _pairs(n: int) -> list[tuple[str, str]]:
    with REPLY_PAIRS.open() as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [(r["prompt"], r["reply"]) for r in rows[:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None, help="local HF model dir (default: build a small one)")
    parser.add_argument("--n-prompts", type=int, default=8)
    parser.add_argument("--n-samples", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--prompt-batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from polydag.core.polychromic.base_model import BaseModelConfig, build_default_base_model, load_model_and_tokenizer
    from polydag.core.evaluation.generation import GenerationConfig, generate_samples, generate_samples_one_at_a_time
    from polydag.core.ops.jsonable import to_jsonable
    from polydag.core.polychromic.prompting import format_prompt

    pairs = _pairs(max(400, args.n_prompts))
    with tempfile.TemporaryDirectory(prefix="bench-generation-") as tmp:
        if args.model_dir:
            model_dir, model_source = Path(args.model_dir), "given"
        else:
            model_dir, model_source = Path(tmp) / "base", "built: default architecture, 40 pretraining steps"
            build_default_base_model(pairs, model_dir, BaseModelConfig(pretrain_steps=40, device=args.device))
        model, tokenizer = load_model_and_tokenizer(model_dir, device=args.device)

    prompts = [format_prompt(p) for p, _ in pairs[: args.n_prompts]]
    cfg = GenerationConfig(
        n_samples=args.n_samples, max_new_tokens=args.max_new_tokens, prompt_batch_size=args.prompt_batch_size
    )
    generate_samples(model, tokenizer, prompts[:1], GenerationConfig(n_samples=2, max_new_tokens=4))  # warm-up

    start = time.perf_counter()
    batched = generate_samples(model, tokenizer, prompts, cfg)
    t_batched = time.perf_counter() - start

    start = time.perf_counter()
    naive = generate_samples_one_at_a_time(model, tokenizer, prompts, cfg)
    t_naive = time.perf_counter() - start

    n = len(prompts) * cfg.n_samples
    assert all(len(r) == cfg.n_samples for r in batched) and all(len(r) == cfg.n_samples for r in naive)
    mean_chars = lambda sets: sum(len(t) for s in sets for t in s) / n  # noqa: E731
    result = {
        "benchmark": "generation",
        "model": str(model_dir) if model_source == "given" else model_source,
        "model_class": type(model).__name__,
        "n_params": sum(p.numel() for p in model.parameters()),
        "device": args.device,
        "torch_threads": args.threads,
        "n_prompts": len(prompts),
        "n_samples": cfg.n_samples,
        "max_new_tokens": cfg.max_new_tokens,
        "prompt_batch_size": cfg.prompt_batch_size,
        "batched_s": t_batched,
        "one_at_a_time_s": t_naive,
        "speedup": t_naive / t_batched,
        "batched_samples_per_s": n / t_batched,
        "one_at_a_time_samples_per_s": n / t_naive,
        "mean_reply_chars_batched": mean_chars(batched),
        "mean_reply_chars_one_at_a_time": mean_chars(naive),
        "example_replies": batched[0][:3],
        "machine": machine_info(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(to_jsonable(result), indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(to_jsonable(result), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
