"""How often reduced-precision answers differ from float32 ones on the default model.

Runs the default sweep (prefix + single, zero, input; the researchers' protocol too) over the
first ``--n-problems`` problems once in float32 and once in each reduced dtype, through
:func:`polydag.core.step_importance.api.run_step_importance`, and compares the rows with
:func:`polydag.core.step_importance.audit.answers_differing`. Writes bench/results/precision.json.

    python bench/bench_precision.py [--n-problems 64] [--dtypes bfloat16 float16]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _synthetic import machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "precision.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None, help="default: data/artifacts/codi_model/default")
    parser.add_argument("--n-problems", type=int, default=64)
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)

    import torch

    from polydag.core.ops.paths import artifacts_dir
    from polydag.core.step_importance import api
    from polydag.core.step_importance.audit import answers_differing
    from polydag.core.step_importance.config import StepImportanceConfig
    from polydag.core.step_importance.model import CodiModelSettings
    from polydag.core.step_importance.problems import load_problems
    from polydag.core.step_importance.train import BASE_DIR, SETTINGS_FILE

    model_dir = Path(args.model_dir or artifacts_dir() / "codi_model" / "default")
    settings = CodiModelSettings.load(model_dir / SETTINGS_FILE)
    info = api.CodiModelInfo(kind="default", path=str(model_dir), base_model_path=str(model_dir / BASE_DIR),
                             lora_r=settings.lora_r, lora_alpha=settings.lora_alpha,
                             target_modules=",".join(settings.target_modules), prj_dim=settings.prj_dim,
                             num_latent=settings.num_latent, sha256="-", n_params=0)
    row = api.info_as_row(info)
    everything = load_problems(ROOT / "data" / "gsm8k_synthetic.jsonl")
    problems = everything.head(args.n_problems)
    runs, walls = {}, {}
    for dtype in ["float32", *args.dtypes]:
        cfg = StepImportanceConfig(device=args.device, dtype=dtype, compat_researchers=True)
        t0 = time.perf_counter()
        runs[dtype] = api.run_step_importance(row, problems, cfg, all_problems=everything)
        walls[dtype] = round(time.perf_counter() - t0, 2)
    result = {
        "benchmark": "reduced-precision answers vs float32 on the default model (default sweep + researchers')",
        "model_dir": str(model_dir),
        "device": args.device,
        "n_problems": problems.height,
        "rows_per_dtype": runs["float32"].height,
        "wall_s": walls,
        "vs_float32": {dtype: answers_differing(runs["float32"], runs[dtype]) for dtype in args.dtypes},
        "baseline_accuracy": {d: round(float(r.filter(r["scheme"] == "baseline")["correct"].mean()), 4)
                              for d, r in runs.items()},
        "machine": machine_info(),
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
