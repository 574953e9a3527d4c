"""One training on several processes (DDP), launched with torchrun, as one Dagster run.

``train_distributed`` writes a spec file and runs
``python -m torch.distributed.run --standalone --nproc_per_node N -m polydag.core.polychromic.distributed SPEC``
(``launch`` lets the Dagster layer run that command through dagster-pipes, so the child's logs
and its result stream into the run). Every rank trains its share of each batch under the
Trainer's DDP (gloo on CPU, NCCL on GPUs); rank 0 alone writes the training_log rows and the
adapter, once, and reports the result (a dagster-pipes custom message when launched through
pipes, and a JSON file either way).

Multi-node training is the same command with torchrun's rendezvous options instead of
``--standalone`` (see the README).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

from polydag.core.polychromic.config import PolychromicTrainConfig
from polydag.core.polychromic.lambdas import SweepKey


def torchrun_command(n_processes: int, spec_path: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_processes}",
            "-m", "polydag.core.polychromic.distributed", str(spec_path)]


def _run_streaming(command: list[str], env: dict, logger: logging.Logger) -> None:
    """The default launcher: the child's output goes line by line to ``logger``."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        logger.info("[torchrun] %s", line.rstrip())
    if proc.wait() != 0:
        raise RuntimeError(f"torchrun exited with status {proc.returncode}: {' '.join(command)}")


def train_distributed(
    base_model_dir: str,
    train_pairs: Sequence[tuple[str, str]],
    cfg: PolychromicTrainConfig,
    out_dir: Path,
    *,
    work_dir: Path,
    eval_pairs: Sequence[tuple[str, str]] | None,
    db_path: str | Path,
    run_id: str,
    unit: SweepKey,
    train_id: str,
    logger: logging.Logger,
    launch: Callable[[list[str], dict], None] | None = None,
):
    """:func:`polydag.core.polychromic.trainer.train_lora_adapter` on ``cfg.num_processes``
    processes; returns rank 0's ``TrainResult``."""
    from polydag.core.polychromic.trainer import TrainResult

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    spec_path, result_path = work_dir / "distributed_spec.json", work_dir / "distributed_result.json"
    result_path.unlink(missing_ok=True)
    spec_path.write_text(json.dumps({
        "base_model_dir": str(base_model_dir), "train_pairs": [list(p) for p in train_pairs],
        "eval_pairs": [list(p) for p in eval_pairs] if eval_pairs else None, "cfg": asdict(cfg),
        "out_dir": str(out_dir), "work_dir": str(work_dir), "db_path": str(db_path), "run_id": run_id,
        "lambda_key": unit.lambda_key, "seed_key": unit.seed_key, "train_id": train_id, "result_path": str(result_path),
    }))
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    command = torchrun_command(cfg.num_processes, spec_path)
    logger.info("launching %d processes: %s", cfg.num_processes, " ".join(command))
    (launch or (lambda cmd, e: _run_streaming(cmd, e, logger)))(command, env)
    if not result_path.is_file():
        raise RuntimeError(f"the distributed training of {unit.label} ended without a result ({result_path})")
    return TrainResult(**json.loads(result_path.read_text()))


def main(spec_path: str) -> None:
    """One rank of a distributed training (what torchrun starts)."""
    from polydag.core.polychromic.trainer import train_lora_adapter
    from polydag.core.storage.training_log import TrainingLogWriter

    spec = json.loads(Path(spec_path).read_text())
    rank = int(os.environ.get("RANK", "0"))
    logger = logging.getLogger(f"polydag.rank{rank}")
    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
    pipes = None
    if rank == 0 and os.environ.get("DAGSTER_PIPES_CONTEXT"):
        from dagster_pipes import open_dagster_pipes

        pipes = open_dagster_pipes()
        logger = pipes.log
    try:
        writer = None
        if rank == 0:
            writer = TrainingLogWriter(spec["db_path"], run_id=spec["run_id"], lambda_key=spec["lambda_key"],
                                       seed_key=spec.get("seed_key", "0"), diversity_weight=spec["cfg"]["diversity_weight"], train_id=spec["train_id"])
        cfg = PolychromicTrainConfig.from_dict(spec["cfg"])
        result = train_lora_adapter(
            spec["base_model_dir"], [tuple(p) for p in spec["train_pairs"]], cfg, spec["out_dir"], log_fn=writer,
            logger=logger, work_dir=spec["work_dir"],
            eval_pairs=[tuple(p) for p in spec["eval_pairs"]] if spec["eval_pairs"] else None,
            on_resume=writer.resume_from if writer else None,
        )
        if rank == 0:
            writer.flush()
            payload = asdict(result)
            tmp = Path(spec["result_path"]).with_suffix(".tmp")
            tmp.write_text(json.dumps(payload))
            tmp.replace(spec["result_path"])
            if pipes is not None:
                pipes.report_custom_message(payload)
    finally:
        if pipes is not None:
            pipes.close()


if __name__ == "__main__":
    main(sys.argv[1])
