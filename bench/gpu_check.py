"""The real Qwen3-8B shape on a CUDA GPU: LoRA training speed and peak memory against the estimate.

For each variant (bf16; 4-bit NF4 too when bitsandbytes is installed) it builds a random-weight
model from Qwen3-8B's own config (``polydag.core.ops.shapes``, no download; built on the GPU and
saved once as a local bf16 model directory), trains a LoRA through the real training path
(``train_lora_adapter``, gradient checkpointing on, λ = 1 so diversity steps sample and form
their gradient) for ``--steps`` steps, and records:

- steps/s over the steps after the first (the first pays for kernel selection and warm-up);
- the peak of ``torch.cuda.max_memory_allocated`` (what polydag's training reports) against
  ``polydag.core.ops.memory.estimate_for_config`` of the same config, with the error in %.

Writes bench/results/gpu_check.json. Without CUDA it exits at once with status 2 and says so
(the CPU check of the estimate is ``polydag_tests/ops/test_qwen3_shape.py``).

    python bench/gpu_check.py [--steps 6] [--batch-size 4] [--max-length 128] [--variants bf16,nf4]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "gpu_check.json"
SHAPE = "qwen3-8b"


def _pairs(n: int) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in (ROOT / "data" / "reply_pairs.jsonl").read_text().splitlines()[:n]]
    return [(r["prompt"], r["reply"]) for r in rows]


def run_variant(base_dir: Path, variant: str, args) -> dict:
    import torch

    from polydag.core.ops.memory import GIB, estimate_for_config
    from polydag.core.polychromic.config import PolychromicTrainConfig
    from polydag.core.polychromic.trainer import train_lora_adapter

    cfg = PolychromicTrainConfig(
        diversity_weight=1.0, max_steps=args.steps, per_device_train_batch_size=args.batch_size,
        max_length=args.max_length, gradient_checkpointing=True, compute_diversity_every_n_steps=2,
        n_generations=4, max_examples_for_diversity=2, max_new_tokens=32, save_steps=0, device="cuda",
        load_in_4bit=variant == "nf4", bnb_4bit_use_double_quant=True, learning_rate=1e-4,
        progress_every_s=30.0,
    )
    rows: list[dict] = []
    torch.cuda.empty_cache()
    with tempfile.TemporaryDirectory(prefix="gpu-check-adapter-") as out:
        result = train_lora_adapter(base_dir, _pairs(max(64, args.batch_size * args.steps)), cfg,
                                    Path(out) / "adapter", log_fn=rows.append)
    times = [r["wall_time"] for r in rows]
    steps_per_s = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else None
    est = estimate_for_config(SHAPE, cfg)
    measured = result.peak_memory_bytes
    return {
        "variant": variant, "steps": result.steps, "n_diversity_steps": result.n_diversity_steps,
        "steps_per_s": steps_per_s, "step_wall_times_s": times, "train_wall_s": result.wall_s,
        "peak_memory_gib": measured / GIB, "estimate_gib": est.peak_gib, "estimate_phase": est.peak_phase,
        "estimate_error_pct": 100 * (est.peak_bytes / measured - 1), "estimate": est.as_dict(),
        "mean_diversity_grad_share": result.mean_diversity_grad_share,
        "config": {"per_device_train_batch_size": cfg.per_device_train_batch_size, "max_length": cfg.max_length,
                   "gradient_checkpointing": True, "n_generations": cfg.n_generations,
                   "max_examples_for_diversity": cfg.max_examples_for_diversity,
                   "max_new_tokens": cfg.max_new_tokens, "lora_r": cfg.lora_r,
                   "target_modules": list(cfg.target_modules)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--variants", default="bf16,nf4", help="comma-separated: bf16, nf4 (nf4 needs bitsandbytes)")
    parser.add_argument("--work-dir", default=None, help="where the random model is saved (default: a temp dir; "
                        "needs about 17 GB of disk)")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False); this check needs a GPU. "
              "On the CPU, run polydag_tests/ops/test_qwen3_shape.py instead.", file=sys.stderr)
        return 2
    from polydag.core.ops import shapes

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    skipped = {}
    if "nf4" in variants and importlib.util.find_spec("bitsandbytes") is None:
        variants.remove("nf4")
        skipped["nf4"] = "bitsandbytes is not installed"
    report = {"shape": SHAPE, "device": torch.cuda.get_device_name(0),
              "gpu_total_gib": torch.cuda.get_device_properties(0).total_memory / 2**30,
              "torch": torch.__version__, "variants": [], "skipped": skipped}
    with tempfile.TemporaryDirectory(prefix="gpu-check-", dir=args.work_dir) as tmp:
        start = time.perf_counter()
        base_dir = shapes.save_random_model(SHAPE, Path(tmp) / "qwen3-8b", dtype="bfloat16", device="cuda",
                                            init="pool")
        report["build_and_save_s"] = time.perf_counter() - start
        torch.cuda.empty_cache()
        for variant in variants:
            try:
                entry = run_variant(base_dir, variant, args)
            except Exception as exc:  # one variant failing (e.g. OOM) still reports the others
                entry = {"variant": variant, "error": f"{type(exc).__name__}: {exc}"[:2000]}
            report["variants"].append(entry)
            print(json.dumps({k: v for k, v in entry.items() if k not in ("estimate", "step_wall_times_s")}))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(f"wrote {RESULTS}")
    return 0 if all("error" not in v for v in report["variants"]) else 1


if __name__ == "__main__":
    sys.exit(main())
