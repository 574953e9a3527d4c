"""Which built-in base makes λ = 0 answer on the tweet's topic? Measured against the ground truth.

For each candidate ``BaseModelConfig`` (overrides of the defaults given as JSON), this builds
the base on the shipped data's training split exactly as the ``base_model`` asset does, trains
the λ = 0 adapter with the default ``PolychromicTrainConfig`` (as ``lora_checkpoints`` does,
diversity sampling at λ = 0 included), samples the test prompts with the default
``GenerationConfig`` (as ``generations`` does) and judges every sample with the ground-truth
verifier. It records, per candidate: pretraining, LoRA and sampling seconds, the share of
samples on the prompt's topic, well formed and passing, the intent distribution of the samples
against the gold replies', and how concentrated each prompt's intents are (top intent share,
coverage of the admitted intents) next to what 10 draws from the gold distribution give.

Nothing here looks at λ > 0. Writes (merges by label) bench/results/default_base.json.

    python bench/bench_default_base.py --label current '{}'
    python bench/bench_default_base.py --label wide '{"hidden_size": 192, "pretrain_steps": 400}'
    python bench/bench_default_base.py --base-only --label screen '{"pretrain_loss": "reply"}'
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _synthetic import machine_info  # noqa: E402

RESULTS = REPO / "bench" / "results" / "default_base.json"


def _intent_shares(intents) -> dict[str, float]:
    from polydag.core.polychromic.reply_grammar import INTENTS

    counts = Counter(i for i in intents if i is not None)
    total = sum(counts.values()) or 1
    return {i: round(counts[i] / total, 4) for i in INTENTS}


def _gold_coverage(train, n_draws: int) -> float:
    """Expected coverage of the admitted intents by n draws from each test-like prompt's gold
    intent distribution (the training split's intent frequencies per admitted-intent set)."""
    import polars as pl

    by_set = (train.with_columns(key=pl.col("admitted_intents").list.join(","))
              .group_by("key", "intent").len())
    out = []
    for key in by_set["key"].unique().to_list():
        counts = dict(by_set.filter(pl.col("key") == key).select("intent", "len").iter_rows())
        admitted = key.split(",")
        total = sum(counts.values())
        out.append(sum(1 - (1 - counts.get(i, 0) / total) ** n_draws for i in admitted) / len(admitted))
    return sum(out) / len(out)


def judge(prompts, texts: list[list[str]]) -> dict:
    from polydag.core.evaluation.verifier import verify_replies

    n = len(texts[0])
    topics = [t for t in prompts["topic"].to_list() for _ in range(n)]
    admitted = [a for a in prompts["admitted_intents"].to_list() for _ in range(n)]
    flat = [t for row in texts for t in row]
    results = verify_replies(flat, topics, admitted)
    per_prompt = [results[i * n:(i + 1) * n] for i in range(len(texts))]
    top_share, coverage = [], []
    for rows, adm in zip(per_prompt, prompts["admitted_intents"].to_list()):
        intents = [r.intent for r in rows if r.well_formed]
        top_share.append(Counter(intents).most_common(1)[0][1] / n if intents else 0.0)
        coverage.append(len({r.intent for r in rows if r.passed}) / len(adm))
    codes = Counter(reason.split(":")[0] for r in results for reason in r.reasons)
    return {
        "on_topic": round(sum(r.well_formed and r.topic == t for r, t in zip(results, topics)) / len(flat), 4),
        "well_formed": round(sum(r.well_formed for r in results) / len(flat), 4),
        "passed": round(sum(r.passed for r in results) / len(flat), 4),
        "reasons": dict(codes.most_common()),
        "sample_intents": _intent_shares(r.intent for r in results if r.well_formed),
        "mean_top_intent_share": round(sum(top_share) / len(top_share), 4),
        "mean_coverage": round(sum(coverage) / len(coverage), 4),
        "distinct_texts_per_prompt": round(sum(len(set(row)) for row in texts) / len(texts), 2),
        "examples": [f"{p} -> {row[0]}" for p, row in zip(prompts["prompt"].to_list()[:4], texts[:4])],
    }


def measure(overrides: dict, *, logger, base_only: bool = False, data: Path = REPO / "data" / "reply_pairs.jsonl") -> dict:
    import torch

    from polydag.core.evaluation.config import GenerationConfig
    from polydag.core.evaluation.generation import evaluation_prompts, generate_samples, load_model_with_adapter
    from polydag.core.ops.cpu_threads import configure_torch_threads
    from polydag.core.polychromic.base_model import build_default_base_model, load_model_and_tokenizer
    from polydag.core.polychromic.config import BaseModelConfig, PolychromicTrainConfig, ReplyPairsConfig
    from polydag.core.polychromic.prompting import frame_prompt
    from polydag.core.polychromic.reply_pairs import load_and_split
    from polydag.core.polychromic.trainer import train_lora_adapter

    threads = configure_torch_threads()
    pairs, _ = load_and_split(data, ReplyPairsConfig())
    train = pairs.filter(pairs["split"] == "train")
    train_pairs = list(zip(train["prompt"].to_list(), train["reply"].to_list()))
    prompts = evaluation_prompts(pairs)
    base_cfg = BaseModelConfig(**overrides)
    train_cfg = PolychromicTrainConfig()
    gen_cfg = GenerationConfig()
    out = {"overrides": overrides, "base_config": asdict(base_cfg), "torch_threads": threads,
           "data": str(data.relative_to(REPO)) if data.is_relative_to(REPO) else str(data),
           "n_train_pairs": len(train_pairs), "n_train_prompts": train["prompt"].n_unique()}
    with tempfile.TemporaryDirectory(prefix="bench-default-base-") as tmp:
        info = build_default_base_model(train_pairs, Path(tmp) / "base", base_cfg, logger=logger)
        out.update(n_params=info.n_params, pretrain_s=round(info.wall_s, 1),
                   pretrain_final_loss=round(info.pretrain_final_loss, 4))
        model, tokenizer = load_model_and_tokenizer(info.path, device="cpu")
        lengths = [len(tokenizer(" " + r, add_special_tokens=False)["input_ids"]) + 1 for r in train["reply"]]
        out["gold_reply_tokens_max"] = max(lengths)
        out["gold_replies_over_max_new_tokens"] = sum(n > gen_cfg.max_new_tokens for n in lengths)
        framed = [frame_prompt(tokenizer, p) for p in prompts["prompt"].to_list()]
        start = time.perf_counter()
        out["base"] = judge(prompts, generate_samples(model, tokenizer, framed, gen_cfg, logger=logger))
        out["base"]["sample_s"] = round(time.perf_counter() - start, 1)
        del model
        if base_only:  # a quicker screen: the base's own samples (λ = 0 trains on top of it)
            out["lambda_0"] = None
            return out | {"gold_intents_train": _intent_shares(train["intent"].to_list()),
                          "gold_coverage_10_draws": round(_gold_coverage(train, gen_cfg.n_samples), 4)}
        start = time.perf_counter()
        result = train_lora_adapter(info.path, train_pairs, train_cfg, Path(tmp) / "lora", logger=logger)
        out["lora_s"] = round(time.perf_counter() - start, 1)
        out["lora_final_quality_loss"] = round(result.final_quality_loss, 4)
        model, tokenizer = load_model_with_adapter(info.path, result.adapter_dir, device="cpu",
                                                   dtype=torch.float32)
        start = time.perf_counter()
        texts = generate_samples(model, tokenizer, framed, gen_cfg, logger=logger)
        out["lambda_0"] = judge(prompts, texts)
        out["lambda_0"]["sample_s"] = round(time.perf_counter() - start, 1)
    out["gold_intents_train"] = _intent_shares(train["intent"].to_list())
    out["gold_coverage_10_draws"] = round(_gold_coverage(train, gen_cfg.n_samples), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", help="JSON object of BaseModelConfig fields to change")
    parser.add_argument("--label", required=True)
    parser.add_argument("--base-only", action="store_true", help="skip the λ = 0 adapter: judge the base's samples only")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "reply_pairs.jsonl",
                        help="reply-pair JSONL with ground truth (default: the shipped data)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logger = logging.getLogger("bench_default_base")
    load_start = os.getloadavg()  # the machine is shared: the seconds below depend on it
    row = measure(json.loads(args.overrides), logger=logger, base_only=args.base_only, data=args.data.resolve())
    row["machine"] = machine_info()
    row["loadavg_1m_start_end"] = [round(load_start[0], 2), round(os.getloadavg()[0], 2)]
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results[args.label] = row
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    keep = {k: row.get(k) for k in ("n_params", "pretrain_s", "pretrain_final_loss", "lora_s")}
    judged = row["lambda_0"] or row["base"]
    print(json.dumps({"label": args.label, **keep, "judged": "base" if row["lambda_0"] is None else "lambda_0",
                      "base_on_topic": row["base"]["on_topic"], **{k: judged[k] for k in (
                          "on_topic", "well_formed", "passed", "mean_top_intent_share", "mean_coverage",
                          "sample_intents", "sample_s")}}, ensure_ascii=False))


if __name__ == "__main__":
    main()
