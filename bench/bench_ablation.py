"""Batched step-importance engine vs a one-problem, one-ablation Python token loop.

Naive side (like the researchers' script): for every problem and every variant (baseline, null
control, each ablation), :func:`reference_answer_one`, a one-row loop written like CODI's
test.py (one forward per latent step and per generated token). Engine side:
:func:`run_ablations` on the same model, problems and variants, with its extra metrics
(teacher-forced gold log-prob and KL) on, so the ratio is conservative; ``--no-metrics`` turns
them off, so both sides do the same work (answers only). The answers of both sides are
asserted identical, row by row.

Model: ``--shape`` always builds a randomly initialised model of that shape, whatever is on
disk: ``tiny`` (the default architecture), or a larger shape: ``small`` (a CPU
smoke test of the shape path) or ``1b`` (LLaMA-3.2-1B dimensions: hidden 2048, 16 layers,
32 heads / 8 KV heads, MLP 8192, vocabulary 128,256, LoRA r 128 on all seven projections,
prj_dim 2048) to measure problems/hour on a GPU (``--device cuda``). Random models rarely emit
EOS, so every row decodes ``--max-new-tokens`` tokens (default 16, about the length of
"The answer is: N" in LLaMA's tokenizer): the measured work is then fixed and comparable.
Otherwise ``--model-dir`` (a default model trained by the pipeline; without either option,
data/artifacts/codi_model/default when it exists, else ``--shape tiny``).

Writes bench/results/ablation.json (or ``--out``).

    python bench/bench_ablation.py [--model-dir DIR] [--n-problems 32]
    python bench/bench_ablation.py --device cuda --shape 1b --dtype bfloat16 --n-problems 256 --naive-problems 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _flops import count_linear_flops, matmul_peak_gflops  # noqa: E402
from _synthetic import machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "ablation.json"
PROBLEMS = ROOT / "data" / "gsm8k_synthetic.jsonl"

SHAPES = {
    "small": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=4, vocab_size=4096, lora_r=16, lora_alpha=32, prj_dim=256),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, lora_r=128, lora_alpha=32, prj_dim=2048),
}


def build_shape(shape: str, tokenizer, device: str, dtype):
    """A random-weight CODI model of a named shape, built directly on ``device``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from polydag.core.step_importance.model import LLAMA_TARGET_MODULES, CodiArchitecture, assemble_codi_model

    s = SHAPES[shape]
    config = LlamaConfig(
        vocab_size=max(s["vocab_size"], len(tokenizer)), hidden_size=s["hidden_size"],
        intermediate_size=s["intermediate_size"], num_hidden_layers=s["num_hidden_layers"],
        num_attention_heads=s["num_attention_heads"], num_key_value_heads=s["num_key_value_heads"],
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        max_position_embeddings=2048,
    )
    torch.manual_seed(0)
    with torch.device(device):
        causal_lm = LlamaForCausalLM(config).to(dtype)
        model = assemble_codi_model(causal_lm, CodiArchitecture(s["lora_r"], s["lora_alpha"], LLAMA_TARGET_MODULES,
                                                                s["prj_dim"], 6))
    return model.to(device=device, dtype=dtype).eval()


def load_bench_model(args, problems, device, dtype):
    from polydag.core.step_importance.model import TinyCodiConfig, build_tiny_codi_model
    from polydag.core.step_importance.tiny_tokenizer import build_tiny_tokenizer
    from polydag.core.step_importance.config import CodiTrainConfig
    from polydag.core.step_importance.train import load_trained_model

    if args.model_dir and Path(args.model_dir, "codi_settings.json").is_file():
        model, tokenizer = load_trained_model(args.model_dir, device=device, dtype=dtype)
        return model, tokenizer, {"source": "trained default", "path": str(args.model_dir)}
    if args.model_dir:
        raise SystemExit(f"--model-dir {args.model_dir} has no trained model (no codi_settings.json); "
                         "use --shape for a random model")
    tokenizer = build_tiny_tokenizer(problems["question"].to_list())
    if args.shape == "tiny":
        t = CodiTrainConfig()
        cfg = TinyCodiConfig(hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
                             num_hidden_layers=t.num_hidden_layers, num_attention_heads=t.num_attention_heads,
                             num_key_value_heads=t.num_key_value_heads, lora_r=t.lora_r, lora_alpha=t.lora_alpha,
                             prj_dim=t.prj_dim, num_latent=t.num_latent)
        model = build_tiny_codi_model(tokenizer, cfg).to(device=device, dtype=dtype)
        return model, tokenizer, {"source": "random", "shape": "tiny (default architecture)"}
    return build_shape(args.shape, tokenizer, device, dtype), tokenizer, {"source": "random", "shape": args.shape}


def naive_rows(model, tokenizer, problems, spec):
    """One problem, one variant at a time, through the test.py-style loop."""
    from polydag.core.step_importance.ablation import reference_edits
    from polydag.core.step_importance.inference import reference_answer_one

    protocol = spec.protocol(model)
    variants = spec.variants(protocol)
    out = []
    for pid, question in zip(problems["problem_id"].to_list(), problems["question"].to_list()):
        for variant in variants:
            edits = reference_edits(variant, protocol, model.hidden_size)
            result = reference_answer_one(model, tokenizer, question, edits, num_fed=protocol.num_fed,
                                          max_new_tokens=spec.max_new_tokens)
            out.append((pid, variant.variant, result.answer_text))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None,
                        help="a trained default model (default: data/artifacts/codi_model/default when present)")
    parser.add_argument("--shape", choices=["tiny", "small", "1b"], default=None,
                        help="build a random model of this architecture (always: a trained default is then "
                             "ignored); without --shape and --model-dir, the trained default when present, "
                             "else tiny")
    parser.add_argument("--n-problems", type=int, default=32, help="problems for the engine")
    parser.add_argument("--naive-problems", type=int, default=None,
                        help="problems for the naive loop (a prefix of the engine's; default: all of them)")
    parser.add_argument("--chunk-size", type=int, default=32)
    parser.add_argument("--warmup-problems", type=int, default=2, help="problems of the untimed warm-up run")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="decoding cap (default: 256 for a trained model, 16 for random models)")
    parser.add_argument("--no-metrics", action="store_true",
                        help="the engine without its teacher-forced gold log-prob and KL, i.e. the same work as "
                             "the naive loop (answers only); by default the engine also computes them")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import polars as pl
    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(args.threads)
    from polydag.core.step_importance.ablation import AblationSpec, run_ablations
    from polydag.core.ops.paths import artifacts_dir
    from polydag.core.step_importance.problems import load_problems

    if args.shape is not None and args.model_dir is not None:
        parser.error("--shape builds a random model; it cannot be combined with --model-dir")
    if args.shape is None and args.model_dir is None:
        if (artifacts_dir() / "codi_model" / "default" / "codi_settings.json").is_file():
            args.model_dir = str(artifacts_dir() / "codi_model" / "default")
        else:
            args.shape = "tiny"

    load_start = os.getloadavg()[0]
    dtype = getattr(torch, args.dtype)
    problems = load_problems(PROBLEMS).head(args.n_problems)
    model, tokenizer, model_info = load_bench_model(args, load_problems(PROBLEMS), args.device, dtype)
    trained = model_info["source"] == "trained default"
    max_new = args.max_new_tokens or (256 if trained else 16)
    # the default sweep: prefix + single, zero, input
    spec = AblationSpec(max_new_tokens=max_new, with_metrics=not args.no_metrics)
    n_variants = len(spec.variants(spec.protocol(model)))
    naive_n = min(args.naive_problems or problems.height, problems.height)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    run_ablations(model, tokenizer, problems.head(args.warmup_problems), spec, chunk_size=args.chunk_size)  # warm-up
    sync()
    peak_before = matmul_peak_gflops(dtype=dtype, device=args.device)
    with count_linear_flops() as flops:  # the work the engine really does: shared prefixes, forks, early stops
        t0 = time.perf_counter()
        rows = run_ablations(model, tokenizer, problems, spec, chunk_size=args.chunk_size)
        sync()
        engine_s = time.perf_counter() - t0
    peak_after = matmul_peak_gflops(dtype=dtype, device=args.device)

    t0 = time.perf_counter()
    naive = naive_rows(model, tokenizer, problems.head(naive_n), spec)
    sync()
    naive_s = time.perf_counter() - t0

    engine_answers = {(r["problem_id"], r["variant"]): r["answer_text"] for r in rows.iter_rows(named=True)}
    mismatches = [(pid, var) for pid, var, text in naive if engine_answers[(pid, var)] != text]
    assert not mismatches, f"engine and naive loop disagree on {len(mismatches)} rows, e.g. {mismatches[:3]}"

    engine_pps = problems.height / engine_s
    naive_pps = naive_n / naive_s
    baseline = rows.filter(pl.col("scheme") == "baseline")
    result = {
        "benchmark": "step-importance ablations: batched engine vs one-problem-one-ablation token loop",
        "model": {**model_info, "n_params": model.n_params(), "hidden_size": model.hidden_size,
                  "n_layers": len(model.decoder_layers), "dtype": args.dtype},
        "device": args.device,
        "torch_threads": args.threads,
        "variants_per_problem": n_variants,
        "max_new_tokens": max_new,
        "chunk_size": args.chunk_size,
        "engine": {"n_problems": problems.height, "wall_s": round(engine_s, 3),
                   "problems_per_s": round(engine_pps, 3), "problems_per_hour": round(engine_pps * 3600),
                   "rows_per_s": round(rows.height / engine_s, 1), "with_metrics": spec.with_metrics},
        "naive": {"n_problems": naive_n, "wall_s": round(naive_s, 3), "problems_per_s": round(naive_pps, 4),
                  "problems_per_hour": round(naive_pps * 3600)},
        "speedup": round(engine_pps / naive_pps, 2),
        "compute": {
            "engine_linear_gflop": round(flops["flops"] / 1e9, 2),
            "engine_linear_calls": flops["calls"],
            "engine_gflops_per_s": round(flops["flops"] / engine_s / 1e9, 2),
            # the machine's own limit, measured before and after the engine (a shared box drifts)
            "matmul_peak_gflops_per_s": round(max(peak_before, peak_after), 2),
            "matmul_peak_before_after": [round(peak_before, 2), round(peak_after, 2)],
            "share_of_matmul_peak": round(flops["flops"] / engine_s / 1e9 / max(peak_before, peak_after), 3),
            "note": "nn.Linear work only (bench/_flops.py): attention products are ~1% at the 1B shape",
        },
        "answers_identical": True,
        "rows_compared": len(naive),
        "baseline_accuracy": round(float(baseline["correct"].mean()), 4),
        "mean_answer_tokens": round(float(rows["n_answer_tokens"].mean()), 2),
        "machine": machine_info(),
        "loadavg_1m_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],  # a shared box
        "torch": torch.__version__,
    }
    if args.device.startswith("cuda"):
        result["gpu"] = torch.cuda.get_device_name(0)
        result["gpu_peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
