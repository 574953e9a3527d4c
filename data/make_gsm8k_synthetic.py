"""Write ``data/gsm8k_synthetic.jsonl``: the shipped synthetic GSM8K-format problem set.

The problems come from :mod:`polydag.core.step_importance.synthetic_gsm8k` (standard library only; see its
docstring for what they look like). The output depends only on ``--seed`` and ``--n``:

    python data/make_gsm8k_synthetic.py            # rewrites data/gsm8k_synthetic.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # works from a fresh clone

from polydag.core.step_importance.synthetic_gsm8k import generate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1800)
    parser.add_argument("--seed", type=int, default=20251026)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("gsm8k_synthetic.jsonl"))
    args = parser.parse_args()
    problems = generate(args.n, args.seed)
    with args.out.open("w", encoding="utf-8") as fh:
        for problem in problems:
            fh.write(json.dumps(problem, ensure_ascii=False) + "\n")
    print(f"wrote {len(problems)} problems to {args.out}")


if __name__ == "__main__":
    main()
