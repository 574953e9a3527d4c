"""Run polydag's real Definitions against a temporary data dir and Dagster instance."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
from dagster import AssetKey, DagsterInstance
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from polydag.definitions import build_defs

REPO = Path(__file__).resolve().parents[2]

TINY_BASE = {"vocab_size": 300, "hidden_size": 32, "intermediate_size": 64, "num_layers": 1,
             "num_heads": 2, "num_kv_heads": 1, "max_length": 64, "pretrain_steps": 100,
             "batch_size": 8, "learning_rate": 1e-2, "device": "cpu"}
# (pinned: the default's rate suits 1800 steps; with fewer than ~100 steps here the tiny base's
# samples are random tokens that share no n-gram, all equally far apart, so every diversity
# advantage is 0 and a λ > 0 adapter rightly fails its diversity-gradient gate)
TINY_LORA = {"max_steps": 6, "per_device_train_batch_size": 4, "n_generations": 3,
             "max_examples_for_diversity": 2, "compute_diversity_every_n_steps": 2,
             "max_new_tokens": 8, "device": "cpu"}


def write_reply_pairs(path: Path, n_prompts: int = 40) -> Path:
    """The first ``n_prompts`` prompts of the shipped dataset, with all their replies."""
    rows, prompts = [], []
    for line in (REPO / "data" / "reply_pairs.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["prompt"] not in prompts:
            if len(prompts) == n_prompts:
                continue
            prompts.append(row["prompt"])
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def add_sweep(instance: DagsterInstance, lambda_keys, seed_keys=("0",)) -> None:
    """Register λ and seed partitions; the λ × seed keys then read ``"<λ>|<seed>"``."""
    instance.add_dynamic_partitions("lambda", list(lambda_keys))
    new_seeds = [s for s in seed_keys if not instance.has_dynamic_partition("seed", s)]
    if new_seeds:
        instance.add_dynamic_partitions("seed", new_seeds)


class Pipeline:
    def __init__(self, data_dir: Path, instance: DagsterInstance):
        self.data_dir = Path(data_dir)
        self.instance = instance
        self.defs = build_defs(self.data_dir)
        self.job = self.defs.resolve_implicit_global_asset_job_def()

    def run(self, assets, run_config=None, partition_range=None, partition_key=None,
            raise_on_error=True):
        tags = {}
        if partition_range:
            tags = {ASSET_PARTITION_RANGE_START_TAG: partition_range[0],
                    ASSET_PARTITION_RANGE_END_TAG: partition_range[1]}
        return self.job.execute_in_process(
            instance=self.instance,
            asset_selection=[AssetKey(a) for a in assets],
            run_config={"ops": {k: {"config": v} for k, v in (run_config or {}).items()}},
            tags=tags,
            partition_key=partition_key,
            raise_on_error=raise_on_error,
        )

    def sql(self, query, params=None):
        con = duckdb.connect(str(self.data_dir / "polydag.duckdb"), read_only=True)
        try:
            return con.execute(query, params or []).pl()
        finally:
            con.close()

    def table_exists(self, name: str) -> bool:
        db = self.data_dir / "polydag.duckdb"
        if not db.exists():
            return False
        con = duckdb.connect(str(db), read_only=True)
        try:
            return bool(con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                [name]).fetchone()[0])
        finally:
            con.close()
