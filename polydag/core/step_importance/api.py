"""The entry points the Dagster layer calls (plain arguments in, plain values out).

- :func:`train_default` trains the offline default model and returns its :class:`CodiModelInfo`.
- :func:`register_checkpoint` validates a real CODI checkpoint (strict key check by loading it).
- :func:`load_model` turns a ``CodiModelInfo`` (or its row as a dict) back into (model, tokenizer).
- :func:`run_step_importance` runs the ablation sweep for some problems with that model.

A ``CodiModelInfo`` row is all that downstream steps need to reload the model, so it is what
the ``codi_model`` asset stores.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Mapping, Sequence

import polars as pl

from polydag.core.step_importance.config import (
    RESEARCHERS_LAYER,
    CodiModelConfig,
    CodiTrainConfig,
    StepImportanceConfig,
    researchers_layer,
)

DEFAULT_KIND, CHECKPOINT_KIND = "default", "checkpoint"


@dataclass
class CodiModelInfo:
    kind: str                     # "default" (trained here) or "checkpoint" (a CODI checkpoint)
    path: str                     # checkpoint directory
    base_model_path: str          # config (and tokenizer) directory of the base model
    lora_r: int
    lora_alpha: int
    target_modules: str           # comma-separated
    prj_dim: int
    num_latent: int
    sha256: str                   # of the weights file
    n_params: int
    train_wall_s: float | None = None
    train_steps: int | None = None
    heldout_accuracy: float | None = None
    n_heldout: int | None = None
    chance_accuracy: float | None = None
    train_accuracy: float | None = None
    latent_thoughts: str | None = None   # "used", or "constant" (every fed thought one fixed vector)


def train_default(
    problems: pl.DataFrame,
    out_dir: str | Path,
    cfg: CodiTrainConfig | None = None,
    *,
    logger: logging.Logger | None = None,
) -> CodiModelInfo:
    """Train the small default CODI model on ``problems`` and save it to ``out_dir``."""
    from polydag.core.step_importance.train import BASE_DIR, train_default_model

    info = train_default_model(problems, out_dir, cfg or CodiTrainConfig(), logger=logger)
    s = info.settings
    return CodiModelInfo(
        kind=DEFAULT_KIND, path=str(info.path), base_model_path=str(Path(info.path) / BASE_DIR),
        lora_r=s["lora_r"], lora_alpha=s["lora_alpha"], target_modules=",".join(s["target_modules"]),
        prj_dim=s["prj_dim"], num_latent=s["num_latent"], sha256=info.sha256, n_params=info.n_params,
        train_wall_s=round(info.wall_s, 2), train_steps=info.steps_done,
        heldout_accuracy=info.heldout_accuracy, n_heldout=info.n_heldout,
        chance_accuracy=info.chance_accuracy, train_accuracy=info.train_accuracy,
        latent_thoughts=info.latent_thoughts,
    )


def register_checkpoint(cfg: CodiModelConfig) -> CodiModelInfo:
    """Load the CODI checkpoint of ``cfg`` once (failing on any missing/unexpected key) and
    describe it."""
    from polydag.core.ops.hashing import file_sha256
    from polydag.core.step_importance.model import _weights_file, load_codi_checkpoint, thoughts_are_constant

    if not cfg.checkpoint_dir:
        raise ValueError("register_checkpoint needs checkpoint_dir")
    if not cfg.base_model_path:
        raise ValueError("a CODI checkpoint needs base_model_path (the local base model directory, "
                         "e.g. Llama-3.2-1B-Instruct, for its config and tokenizer)")
    model = load_codi_checkpoint(cfg.checkpoint_dir, cfg.base_model_path, lora_r=cfg.lora_r,
                                 lora_alpha=cfg.lora_alpha, target_modules=cfg.target_modules,
                                 prj_dim=cfg.prj_dim, num_latent=cfg.num_latent)
    n_params = model.n_params()
    # read from the weights: a control trained elsewhere but whose projection still varies feeds
    # varying thoughts here, and is then described as "used"
    latent_thoughts = "constant" if thoughts_are_constant(model) else "used"
    del model
    weights = _weights_file(Path(cfg.checkpoint_dir))
    return CodiModelInfo(
        kind=CHECKPOINT_KIND, path=str(cfg.checkpoint_dir), base_model_path=str(cfg.base_model_path),
        lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=",".join(cfg.target_modules),
        prj_dim=cfg.prj_dim, num_latent=cfg.num_latent, sha256=file_sha256(weights), n_params=n_params,
        latent_thoughts=latent_thoughts,
    )


def _as_info(info: CodiModelInfo | Mapping) -> CodiModelInfo:
    if isinstance(info, CodiModelInfo):
        return info
    names = {f.name for f in fields(CodiModelInfo)}
    required = [n for n in ("kind", "path", "base_model_path", "lora_r", "lora_alpha", "target_modules",
                            "prj_dim", "num_latent", "sha256", "n_params") if info.get(n) is None]
    if required:
        raise ValueError(f"model description lacks {required} (has {sorted(info)})")
    return CodiModelInfo(**{k: v for k, v in info.items() if k in names})


def load_model(info: CodiModelInfo | Mapping, *, device: str = "cpu", dtype=None):
    """(model, tokenizer) for a model described by :class:`CodiModelInfo` (or its dict row)."""
    import torch

    from polydag.core.step_importance.model import load_codi_checkpoint
    from polydag.core.step_importance.tiny_tokenizer import load_tokenizer

    info = _as_info(info)
    model = load_codi_checkpoint(
        info.path, info.base_model_path, lora_r=int(info.lora_r), lora_alpha=int(info.lora_alpha),
        target_modules=[t for t in str(info.target_modules).split(",") if t], prj_dim=int(info.prj_dim),
        num_latent=int(info.num_latent), dtype=dtype or torch.float32, device=device,
    )
    return model, load_tokenizer(info.base_model_path)


def torch_dtype(name: str, device: str):
    """The torch dtype of a ``StepImportanceConfig.dtype`` value on ``device`` (auto:
    bfloat16 on CUDA, float32 on CPU, where bfloat16 matmuls are slow)."""
    import torch

    from polydag.core.polychromic.base_model import default_dtype

    return default_dtype(device) if name == "auto" else getattr(torch, name)


def run_step_importance(
    model_info: CodiModelInfo | Mapping,
    problems: pl.DataFrame,
    cfg: StepImportanceConfig | None = None,
    *,
    all_problems: pl.DataFrame | None = None,
    cpu_threads: int | None = 1,
    logger: logging.Logger | None = None,
) -> pl.DataFrame:
    """Ablation rows for ``problems`` (see :func:`polydag.core.step_importance.ablation.run_ablations`).

    ``all_problems`` (the full problem table) is the pool for resample partners and mean
    thoughts, so results do not depend on which problems a run covers. With
    ``cfg.compat_researchers`` the researchers' protocol runs too; its rows have ``protocol``
    = "researchers" and their own baseline and null rows. On CPU the sweep runs with
    ``cpu_threads`` torch threads (None: torch's setting); with the small default model one
    thread was 3x faster than two on shared cores.
    """
    import torch

    from polydag.core.polychromic.base_model import resolve_device
    from polydag.core.step_importance.ablation import run_ablations
    from polydag.core.step_importance.chunking import device_chunk_cap, free_device_memory

    cfg = cfg or StepImportanceConfig()
    log = logger or logging.getLogger(__name__)
    device = resolve_device(cfg.device)
    dtype = torch_dtype(cfg.dtype, device)
    model, tokenizer = load_model(model_info, device=device, dtype=dtype)
    log.info("step importance on %s in %s", device, str(dtype).replace("torch.", ""))
    pool = all_problems if all_problems is not None else problems
    n_layers = len(model.decoder_layers)
    specs = cfg.ablation_specs(n_layers)
    if cfg.compat_researchers and researchers_layer(n_layers) != RESEARCHERS_LAYER:
        log.info("researchers' protocol: the model has %d layers, zeroing layer %d instead of %d",
                 n_layers, researchers_layer(n_layers), RESEARCHERS_LAYER)
    checked = reference_sample(problems, cfg)
    log.info("runtime reference gate: %d of %d problems re-answered by the one-row loop", len(checked),
             problems.height)
    frames = []
    previous_threads = torch.get_num_threads()
    if cpu_threads and device == "cpu":
        torch.set_num_threads(cpu_threads)
    try:
        with torch.inference_mode():
            for spec in specs:
                chunk = cfg.chunk_size or auto_chunk_size(model, tokenizer, problems, spec, dtype,
                                                          free_device_memory(device), cap=device_chunk_cap(device))
                if not cfg.chunk_size:
                    log.info("chunk size %d problems (sized to the device's free memory)", chunk)
                frames.append(run_ablations(model, tokenizer, problems, spec, chunk_size=chunk,
                                            logger=log, reference_problems=pool, reference_problem_ids=checked))
    finally:
        torch.set_num_threads(previous_threads)
    return pl.concat(frames)


def auto_chunk_size(model, tokenizer, problems: pl.DataFrame, spec, dtype, free: int, *,
                    cap: int) -> int:
    """``chunk_size = 0``: as many problems as fit half of ``free`` bytes of device memory, at
    most ``cap`` (:mod:`polydag.core.step_importance.chunking`)."""
    from polydag.core.step_importance.chunking import chunk_memory, chunk_size_for_memory
    from polydag.core.step_importance.inference import encode_gold_reply, encode_question

    config = model.causal_lm.config
    n_heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // n_heads)
    memory = chunk_memory(
        n_layers=int(config.num_hidden_layers), n_kv_heads=int(getattr(config, "num_key_value_heads", n_heads)),
        head_dim=head_dim, hidden_size=int(config.hidden_size), vocab_size=int(model.vocab_size),
        dtype_bytes=dtype.itemsize,
        question_tokens=max(len(encode_question(tokenizer, q)) for q in problems["question"].to_list()) + 1,
        num_latent=int(model.num_latent), max_new_tokens=spec.max_new_tokens,
        gold_tokens=max(len(encode_gold_reply(tokenizer, a)) for a in problems["answer"].to_list()),
        with_metrics=spec.with_metrics)
    return chunk_size_for_memory(free, memory, len(spec.variants(spec.protocol(model))), n_problems=problems.height,
                                 cap=cap)


def reference_sample(problems: pl.DataFrame, cfg: StepImportanceConfig) -> list[str]:
    """The problems of a run that the one-row reference loop re-answers (and that a
    reduced-precision run re-runs in float32): :func:`audit.seeded_sample` with the config's
    sizes and seed."""
    from polydag.core.step_importance.audit import seeded_sample

    from polydag.core.step_importance.chunking import REFERENCE_BLOCK

    # per chunk of the configured size; an auto-sized run samples per 32 problems, so the gate's
    # coverage does not depend on how much memory a GPU happens to have free
    return seeded_sample(problems["problem_id"].to_list(), chunk_size=cfg.chunk_size or REFERENCE_BLOCK,
                         per_chunk=cfg.reference_per_chunk, all_below=cfg.reference_all_below, seed=cfg.seed)


def float32_agreement(
    model_info: CodiModelInfo | Mapping,
    rows: pl.DataFrame,
    problems: pl.DataFrame,
    cfg: StepImportanceConfig,
    *,
    all_problems: pl.DataFrame | None = None,
    cpu_threads: int | None = 1,
    logger: logging.Logger | None = None,
) -> dict:
    """How often a reduced-precision run's answers differ from float32 ones, measured by
    re-running the reference sample of its problems (:func:`reference_sample`) in float32.
    A float32 run returns only its dtype (nothing to compare)."""
    from dataclasses import replace

    from polydag.core.polychromic.base_model import resolve_device
    from polydag.core.step_importance.audit import answers_differing

    dtype = str(torch_dtype(cfg.dtype, resolve_device(cfg.device))).replace("torch.", "")
    if dtype == "float32":
        return {"dtype": dtype}
    sample = reference_sample(problems, cfg)
    reference = run_step_importance(model_info, select_problems(problems, sample), replace(cfg, dtype="float32"),
                                    all_problems=all_problems if all_problems is not None else problems,
                                    cpu_threads=cpu_threads, logger=logger)
    return {"dtype": dtype, "vs_float32": answers_differing(rows, reference)}


def select_problems(problems: pl.DataFrame, problem_ids: Sequence[str]) -> pl.DataFrame:
    """The rows of ``problem_ids``; an error naming the ids that are not in ``problems``."""
    selected = problems.filter(pl.col("problem_id").is_in(list(problem_ids)))
    unknown = sorted(set(problem_ids) - set(selected["problem_id"].to_list()))
    if unknown:
        raise ValueError(
            f"{len(unknown)} problem partition(s) are not in the problems table "
            f"(e.g. {unknown[:3]}); re-materialize `problems` or delete those partitions"
        )
    return selected


def info_as_row(info: CodiModelInfo) -> dict:
    return asdict(info)
