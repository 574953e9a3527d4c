"""Every setting of the step-importance workflow, declared once with its help text.

- :class:`ProblemsConfig`: which GSM8K-format file.
- :class:`CodiModelConfig`: a user's CODI checkpoint and the loader settings it needs.
- :class:`CodiTrainConfig`: the offline default CODI model and its training run.
- :class:`StepImportanceConfig`: what a sweep runs (schemes, modes, sites, the researchers'
  protocol) and how (chunk size, device, decoding length).
- :class:`StepSummaryConfig`: which positions the summary pools as early and late.
- :class:`AblationSpec`: the engine's variant set for one protocol, built from a
  :class:`StepImportanceConfig` (:meth:`StepImportanceConfig.ablation_specs`).

Sites are parsed in one place, :func:`layer_of_site`. Nothing here imports torch, so the
Dagster code location can derive its run configs at import time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from polydag.core.ops.spec import Checks, setting

LLAMA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SCHEMES = ("prefix", "single")
MODES = ("zero", "mean", "global_mean", "gaussian", "resample")
DEFAULT_MODES = ("zero",)
DEFAULT_SITES = ("input",)
DEFAULT_MAX_NEW_TOKENS = 256  # CODI's gen_kwargs["max_new_tokens"]
DTYPES = ("auto", "float32", "bfloat16", "float16")
LATENT_THOUGHTS = ("used", "constant")
RESEARCHERS_FED_THOUGHTS = 5
RESEARCHERS_LAYER = 8
_LAYER_SITE_RE = re.compile(r"^layer:(\d+)$")


def layer_of_site(site: str) -> int | None:
    """``"layer:8"`` -> 8, ``"input"`` -> None; anything else is an error."""
    if site == "input":
        return None
    match = _LAYER_SITE_RE.match(site) if isinstance(site, str) else None
    if not match:
        raise ValueError(f"unknown ablation site {site!r}; use 'input' or 'layer:L' (e.g. 'layer:8')")
    return int(match.group(1))


@dataclass
class ProblemsConfig:
    """Where the GSM8K-style problems come from."""

    path: str = setting("", help="GSM8K-format JSONL, or a JSON list of {question, answer, reasoning_steps}. "
                        "Empty: the synthetic set shipped in data/gsm8k_synthetic.jsonl.")


@dataclass
class CodiModelConfig:
    """A user's CODI checkpoint (zhenyi4/codi layout) and what its loader needs."""

    checkpoint_dir: str | None = setting(None, help="A CODI checkpoint directory (model.safetensors or "
                                         "pytorch_model.bin in CODI's key layout). Empty: train the small "
                                         "offline default here.")
    base_model_path: str | None = setting(None, help="Local base model of the CODI checkpoint (e.g. "
                                          "LLaMA-3.2-1B-Instruct): its config.json and tokenizer.")
    lora_r: int = setting(128, help="LoRA rank the checkpoint was trained with (CODI-LLaMA-1B: 128).")
    lora_alpha: int = setting(32, help="LoRA alpha the checkpoint was trained with (CODI-LLaMA-1B: 32).")
    target_modules: tuple[str, ...] = setting(LLAMA_TARGET_MODULES, help="Modules that carry LoRA in the "
                                              "checkpoint (CODI-LLaMA: all seven projections).")
    prj_dim: int = setting(2048, help="Hidden width of CODI's thought projection (CODI-LLaMA-1B: 2048).")
    num_latent: int = setting(6, help="Latent thoughts per answer (CODI: 6).")

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        checks = Checks(self)
        for name in ("lora_r", "lora_alpha", "prj_dim", "num_latent"):
            checks.integer(name, low=1)
        checks.done()


@dataclass
class CodiTrainConfig:
    """Settings of the offline default CODI model and its training run."""

    hidden_size: int = setting(128, help="Width of the small LLaMA.")
    intermediate_size: int = setting(256, help="MLP width of the small LLaMA.")
    num_hidden_layers: int = setting(3, help="Decoder layers.")
    num_attention_heads: int = setting(4, help="Attention heads.")
    num_key_value_heads: int = setting(2, help="Key/value heads (grouped-query attention).")
    lora_r: int = setting(8, help="LoRA rank (the checkpoint keeps CODI's LoRA layout).")
    lora_alpha: int = setting(16, help="LoRA alpha.")
    prj_dim: int = setting(128, help="Hidden width of the thought projection.")
    num_latent: int = setting(6, help="Latent thoughts per answer.")
    latent_thoughts: str = setting("used", help="used: each fed thought is prj(last hidden state), as in "
                                   "CODI. constant: the negative control: every fed thought is one fixed "
                                   "vector, in training and at inference, so nothing about the problem can "
                                   "pass through the thoughts (model.cut_thoughts says how); data, steps and "
                                   "seed are the same.")
    steps: int = setting(800, help="Optimizer steps; on a busy machine time_budget_s ends the run earlier.")
    n_train_problems: int = setting(8000, help="Generated training problems (never equal to a question of "
                                    "the problems table).")
    step_weights: tuple[float, ...] = setting((0.30, 0.25, 0.17, 0.12, 0.09, 0.07),
                                              help="Mix of 1..6-step training problems: short problems "
                                              "dominate, which a few hundred optimizer steps can exploit.")
    tie_word_embeddings: bool = setting(False, help="Share input and output embeddings (LLaMA-3.2-1B does); "
                                        "untied learned faster here.")
    number_embeddings: bool = setting(True, help="Start number tokens from a sinusoidal encoding of their "
                                      "value (see train.init_number_embeddings).")
    batch_size: int = setting(32, help="Problems per optimizer step.")
    learning_rate: float = setting(1e-3, help="Peak learning rate. 3e-3 left the model on a plateau "
                                   "(guessing from the answer prior) for hundreds of steps; 1e-3 got past it "
                                   "within ~150.")
    weight_decay: float = setting(0.01, help="AdamW weight decay.")
    warmup_steps: int = setting(30, help="Linear warm-up steps before the cosine decay.")
    grad_clip: float = setting(2.0, help="Clip the gradient norm to this.")
    n_heldout: int = setting(200, help="Problems of the table used to measure held-out accuracy (all of them "
                             "if fewer).")
    seed: int = setting(0, help="Seeds the generated training set, the init and the data order.")
    time_budget_s: float = setting(180.0, help="Hard cap on training wall time. The learning-rate schedule "
                                   "follows whichever of step and time progress is further, so a slow "
                                   "machine still anneals before the cap.")
    progress_every_s: float = setting(5.0, help="Seconds between progress log lines.")
    eval_batch_size: int = setting(64, help="Questions per batch when measuring accuracy.")
    num_threads: int | None = setting(1, help="torch CPU threads during training (empty: leave torch's "
                                      "setting). One thread: on shared cores two ran a step 2x slower.")

    def __post_init__(self) -> None:
        self.step_weights = tuple(self.step_weights)
        checks = Checks(self)
        for name in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "num_key_value_heads", "lora_r", "lora_alpha", "prj_dim", "num_latent", "steps",
                     "n_train_problems", "batch_size", "n_heldout", "eval_batch_size"):
            checks.integer(name, low=1)
        checks.integer("warmup_steps", low=0).integer("seed").integer("num_threads", low=1, optional=True)
        checks.choice("latent_thoughts", LATENT_THOUGHTS)
        checks.number("learning_rate", low=0, low_open=True).number("weight_decay", low=0)
        checks.number("grad_clip", low=0, low_open=True).number("time_budget_s", low=0, low_open=True)
        checks.number("progress_every_s", low=0)
        checks.need(len(self.step_weights) > 0 and all(w >= 0 for w in self.step_weights)
                    and sum(self.step_weights) > 0,
                    f"step_weights must be non-negative with a positive sum, got {self.step_weights!r}")
        checks.done()


@dataclass(frozen=True)
class Protocol:
    """How positions map onto the loop: ``num_fed`` thoughts are fed; position p is loop slot
    ``p + slot_offset`` (slot 0 = bot step) and, for the input site, fed thought p."""

    name: str
    num_fed: int
    slot_offset: int

    @property
    def n_positions(self) -> int:
        return self.num_fed + (1 - self.slot_offset)


def make_protocol(model: Any, compat_researchers: bool = False) -> Protocol:
    """CODI's loop (all ``model.num_latent`` thoughts, position i = fed thought i) or the
    researchers' (bot = position 0, then five fed thoughts)."""
    if compat_researchers:
        return Protocol("researchers", RESEARCHERS_FED_THOUGHTS, 0)
    return Protocol("codi", model.num_latent, 1)


@dataclass(frozen=True)
class Variant:
    variant: str
    scheme: str            # baseline | null | prefix | single
    mode: str              # none | zero | mean | resample
    site: str              # none | input | layer:L
    position: int          # -1 for baseline and null
    ablated: tuple[int, ...]


@dataclass
class StepImportanceConfig:
    """What a step-importance sweep runs, and how."""

    schemes: tuple[str, ...] = setting(SCHEMES, help="prefix (ablate positions 0..i-1, the researchers' "
                                       "scheme) and/or single (ablate position i only).")
    modes: tuple[str, ...] = setting(DEFAULT_MODES, help="Replacement of an ablated value: zero; mean (the "
                                     "per-step mean: the mean over the problem pool at that position); "
                                     "global_mean (the mean over the pool and all positions); gaussian (noise "
                                     "with the pool's mean and standard deviation at that position, per "
                                     "dimension, seeded per problem); or resample (another problem's value).")
    sites: tuple[str, ...] = setting(DEFAULT_SITES, help="input (the fed thought) and/or layer:L (the output "
                                     "of decoder layer L at that latent step).")
    prefix_sizes: tuple[int, ...] | None = setting(None, help="Prefix variants ablate positions 0..i-1 for "
                                                   "each i here (empty: 1..n_positions).")
    single_positions: tuple[int, ...] | None = setting(None, help="Single-position variants (empty: every "
                                                       "position).")
    compat_researchers: bool = setting(False, help="Also run the researchers' protocol (layer-8 zeroing, bot "
                                       "as step 0, five fed thoughts; without their double-EOT bug).")
    seed: int = setting(0, help="Seed of the resample partner choice.")
    max_new_tokens: int = setting(DEFAULT_MAX_NEW_TOKENS, help="Longest greedy answer in tokens (CODI: 256; "
                                  "rows stop at EOS).")
    with_metrics: bool = setting(True, help="Compute gold_logprob and kl_to_baseline (one extra "
                                 "teacher-forced block per chunk).")
    chunk_size: int = setting(0, help="Problems per batched forward (each with all its variants). 0: as many as "
                              "fit half of the device's free memory (the GPU's on CUDA, the system's available "
                              "memory on a CPU; an upper bound of the caches, logits and gold log-probs per "
                              "problem, core/step_importance/chunking.py), at most 1024 on CUDA and 64 on a CPU.")
    device: str = setting("auto", help="auto (cuda if available), cpu or cuda.")
    dtype: str = setting("auto", help="Weights and compute dtype of the model: float32, bfloat16, float16, "
                         "or auto (bfloat16 on CUDA, float32 on CPU). Reduced-precision answers can differ "
                         "from float32 ones; the run metadata reports how often on a sample.")

    reference_per_chunk: int = setting(2, help="Runtime reference gate: problems per chunk_size problems of a "
                                       "run (seeded sample) whose every variant is re-answered by the independent "
                                       "one-row loop; the gate blocks if any answer differs from the engine's.")
    reference_all_below: int = setting(10, help="Runs with fewer problems than this re-answer all of them "
                                       "with the one-row loop.")

    def __post_init__(self) -> None:
        for name in ("schemes", "modes", "sites"):
            setattr(self, name, tuple(getattr(self, name)))
        for name in ("prefix_sizes", "single_positions"):
            if getattr(self, name) is not None:
                setattr(self, name, tuple(getattr(self, name)))
        checks = Checks(self).integer("max_new_tokens", low=1).integer("chunk_size", low=0).integer("seed")
        checks.choice("dtype", DTYPES).integer("reference_per_chunk", low=1).integer("reference_all_below", low=0)
        for name, allowed in (("schemes", SCHEMES), ("modes", MODES)):
            values = getattr(self, name)
            checks.need(len(values) > 0, f"{name} is empty; give at least one of {allowed}")
            for value in values:
                checks.need(value in allowed, f"unknown ablation {name[:-1]} {value!r}; use one of {allowed}")
        checks.need(len(self.sites) > 0, "sites is empty; give at least one of 'input', 'layer:L'")
        for site in self.sites:
            try:
                layer_of_site(site)
            except ValueError as exc:
                checks.need(False, str(exc))
        checks.done()

    def ablation_specs(self, n_layers: int) -> list["AblationSpec"]:
        """The engine's variant sets: CODI's protocol, plus the researchers' if asked."""
        specs = [AblationSpec(schemes=self.schemes, modes=self.modes, sites=self.sites,
                              prefix_sizes=self.prefix_sizes, single_positions=self.single_positions,
                              seed=self.seed, max_new_tokens=self.max_new_tokens, with_metrics=self.with_metrics)]
        if self.compat_researchers:
            specs.append(AblationSpec.researchers(layer=researchers_layer(n_layers), seed=self.seed,
                                                  max_new_tokens=self.max_new_tokens,
                                                  with_metrics=self.with_metrics))
        return specs


@dataclass
class StepSummaryConfig:
    """How the step-importance summary pools positions."""

    early_positions: tuple[int, ...] = setting((0, 1, 2), help="Thought positions pooled as 'early' in the "
                                               "early-vs-late view (CODI's six thoughts: 0-2).")
    late_positions: tuple[int, ...] = setting((3, 4, 5), help="Thought positions pooled as 'late' (CODI: 3-5; "
                                              "Cywinski et al. find 2-step intermediates in latents 3 and 5).")

    def __post_init__(self) -> None:
        self.early_positions = tuple(self.early_positions)
        self.late_positions = tuple(self.late_positions)
        checks = Checks(self)
        for name in ("early_positions", "late_positions"):
            values = getattr(self, name)
            checks.need(len(values) > 0 and all(isinstance(v, int) and v >= 0 for v in values),
                        f"must be a non-empty list of positions >= 0, got {values!r}", field=name)
        overlap = sorted(set(self.early_positions) & set(self.late_positions))
        checks.need(not overlap, f"must not share positions with late_positions (both have {overlap})",
                    field="early_positions")
        checks.done()


def researchers_layer(n_layers: int) -> int:
    """The researchers zeroed layer 8 of LLaMA-3.2-1B's 16; smaller models use their middle layer."""
    return RESEARCHERS_LAYER if n_layers > RESEARCHERS_LAYER else n_layers // 2



@dataclass(frozen=True)
class AblationSpec:
    """Which ablation variants the engine runs for one protocol (the baseline and the null
    control always run). Defaults are :class:`StepImportanceConfig`'s."""

    schemes: tuple[str, ...] = SCHEMES
    modes: tuple[str, ...] = DEFAULT_MODES
    sites: tuple[str, ...] = DEFAULT_SITES
    prefix_sizes: tuple[int, ...] | None = None
    single_positions: tuple[int, ...] | None = None
    compat_researchers: bool = False
    """The researchers' protocol: bot = position 0, five fed thoughts, layer sites only."""
    seed: int = 0
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    with_metrics: bool = True

    def __post_init__(self):
        for name in ("schemes", "modes", "sites"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for scheme in self.schemes:
            if scheme not in SCHEMES:
                raise ValueError(f"unknown ablation scheme {scheme!r}; use one of {SCHEMES}")
        for mode in self.modes:
            if mode not in MODES:
                raise ValueError(f"unknown ablation mode {mode!r}; use one of {MODES}")
        for site in self.sites:
            layer_of_site(site)  # raises on a malformed site
        if self.compat_researchers and any(site == "input" for site in self.sites):
            raise ValueError("the researchers' protocol ablates layer outputs (e.g. 'layer:8'), not the 'input' site")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")

    @classmethod
    def researchers(cls, layer: int = RESEARCHERS_LAYER, **overrides) -> "AblationSpec":
        """Their protocol: prefix zeroing of layer ``layer`` output, sizes 1..5, bot = 0."""
        settings = dict(schemes=("prefix",), modes=("zero",), sites=(f"layer:{layer}",),
                        prefix_sizes=(1, 2, 3, 4, 5), compat_researchers=True)
        settings.update(overrides)
        return cls(**settings)

    def protocol(self, model: Any) -> Protocol:
        return make_protocol(model, self.compat_researchers)

    def variants(self, protocol: Protocol) -> list[Variant]:
        n = protocol.n_positions
        tag = "researchers/" if protocol.name == "researchers" else ""
        out = [Variant(f"{tag}baseline", "baseline", "none", "none", -1, ()),
               Variant(f"{tag}null", "null", "none", "none", -1, ())]
        sizes = self.prefix_sizes if self.prefix_sizes is not None else tuple(range(1, n + 1))
        singles = self.single_positions if self.single_positions is not None else tuple(range(n))
        for size in sizes:
            if not 1 <= size <= n:
                raise ValueError(f"prefix size {size} out of range 1..{n} for the {protocol.name} protocol")
        for pos in singles:
            if not 0 <= pos < n:
                raise ValueError(f"single position {pos} out of range 0..{n - 1} for the {protocol.name} protocol")
        for scheme in self.schemes:
            for mode in self.modes:
                for site in self.sites:
                    if scheme == "prefix":
                        for size in sizes:
                            out.append(Variant(f"{tag}prefix-{mode}-{site}-p{size - 1}", "prefix", mode, site,
                                               size - 1, tuple(range(size))))
                    else:
                        for pos in singles:
                            out.append(Variant(f"{tag}single-{mode}-{site}-p{pos}", "single", mode, site,
                                               pos, (pos,)))
        return out
