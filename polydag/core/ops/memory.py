"""Will a LoRA training run of a named shape fit in a GPU? Arithmetic, no torch, no model.

:func:`estimate_training_memory` adds up the tensors alive at the peak of one polychromic
training step (``transformers.Trainer`` with polydag's ``training_step``, in its order of
work, see below) for a shape of
:mod:`polydag.core.ops.shapes`, a weight dtype, the LoRA and the batch settings. Every number is
in bytes; ``B`` is the byte size of the compute dtype (fp32 4, bf16/fp16 2; 4-bit computes in
bf16), ``V`` the vocabulary, ``L`` the layers, ``h`` hidden, ``i`` intermediate, ``q = heads ×
head_dim``, ``kv = kv_heads × head_dim``.

- **weights**: parameters × 4 / 2 / 2 for fp32 / bf16 / fp16. NF4 with double quantization
  (bitsandbytes, block 64): the decoder projections take 0.5 byte + 1/64 (8-bit absmax) +
  4/(64·256) (the fp32 second-level absmax) ≈ 0.516 byte per parameter; embeddings, the LM head
  and norms stay in bf16.
- **LoRA state**: r·(in + out) per targeted projection and layer, in fp32 (peft upcasts
  adapters of bf16/fp16 bases), × 16 bytes: parameter, gradient, AdamW's two moments.
- **activations** (tensors autograd saves for backward), per token and layer, summed from what
  Qwen3/LLaMA layers save when only LoRA weights train (a frozen projection saves nothing; the
  formula was checked against the saved tensors of real layers, see the tests):
  ``8h`` (the two RMSNorms keep their input in fp32) + ``4(q + kv)`` (Qwen3's q/k norms) +
  ``B(2q + 2q)`` (SDPA keeps q, k, v and its output; k and v are repeated to all heads when a
  padding mask is passed) + ``3B·i`` (SwiGLU keeps the gate, its SiLU and the up projection) +
  per LoRA-targeted projection its input (in fp32 when B ≠ 4, one copy per projection: peft
  casts it; shared by q/k/v and by gate/up otherwise, since it is the same tensor), plus, in
  train mode with LoRA dropout, the dropped copy and its 1-byte mask per projection, plus 4r for
  the LoRA A output; and ``4h`` per token for the final norm.
  With gradient checkpointing a layer keeps only its input (``B·h`` per token) and one layer's
  activations exist again while it is recomputed: ``tokens × (L·B·h + per_layer + 4h)``.
  Attention scores (s² per head) are not counted: SDPA's flash/memory-efficient kernels don't
  store them, and at the short lengths of the CPU check they are negligible.
- **logits**: ``E = rows × length × V`` elements. A forward keeps ``4E`` (the fp32 log-softmax
  that cross-entropy or the sample log-probs save) and briefly holds ``12E`` (the fp32 logits,
  the shifted copy and the log-softmax), also during their backward. Large for Qwen3's 151,936
  rows: 1.2 GB of transient for 8 × 256 tokens.
- **KV cache** of the diversity samples: ``P·N × (prompt + max_new_tokens) × L × 2 × kv × B``
  (P = max_examples_for_diversity prompts, N = n_generations samples each), plus the sampler's
  per-step work on the last position's logits, ``P·N × V × 32`` (fp32 logits, top-p's sort
  values and int64 indices, probabilities).

Peak of one diversity step, in the order of work of
:meth:`polydag.core.polychromic.hf_trainer.PolychromicTrainer.training_step`: the quality
forward builds its graph (activations + the kept log-softmax), which stays alive while the
samples are drawn (no grad) and while their log-probs are computed with grad, because the two
gradients are taken apart for the audit (``autograd.grad(quality)``, then
``autograd.grad(term)``). So the peak is weights + LoRA state + quality graph + the largest of:
the quality logits transient; sampling (KV cache + sampler work); the diversity graph being
built (activations + its logits transient); and the quality backward while the diversity
graph waits (its activations + kept log-softmax, plus the quality logits transient). A
cross-entropy step (and λ = 0, which samples but forms no gradient) has no diversity graph.
The Trainer's gradient accumulation and processes change the number of micro-batches or
devices, not the memory of one micro-batch on one device.

What it leaves out: the CUDA context and kernels' workspace (added as a fixed
``cuda_context_gib`` by :func:`fits`), allocator fragmentation (a ``fragmentation`` share), the
optimizer's momentary copies. Loading: on a GPU the weights are loaded once, in their dtype;
on the CPU a bf16 file loaded as fp32 keeps its mapped pages resident while converting, which
``checkpoint_dtype`` adds as the phase "loading" (measured: a Qwen3-0.6B-shape load peaked at
3.48 GiB of RSS, 2.37 GiB after it). The CPU check against a measured
Qwen3-0.6B-shape training is in ``polydag_tests/ops/test_qwen3_shape.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

from polydag.core.ops import shapes

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "nf4": 2}  # compute dtype (4-bit computes in bf16)
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "4bit": "nf4", "int4": "nf4"}
NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit codes, 8-bit absmax, fp32 second-level absmax
LORA_BYTES_PER_PARAM = 16  # fp32 parameter + gradient + AdamW exp_avg + exp_avg_sq
SAMPLER_BYTES_PER_LOGIT = 32  # per vocabulary entry and sampled row, at one decoding step
LOGITS_TRANSIENT = 12  # bytes per logit element while a forward/backward holds them (fp32 ×3)
LOGITS_KEPT = 4  # the fp32 log-softmax kept for backward


def canonical_dtype(dtype: str) -> str:
    name = DTYPE_ALIASES.get(str(dtype).replace("torch.", ""), str(dtype).replace("torch.", ""))
    if name not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16, float16 or nf4 (4-bit)")
    return name


def weight_bytes(shape: dict | str, dtype: str) -> int:
    counts = shapes.param_counts(shape)
    dtype = canonical_dtype(dtype)
    if dtype == "nf4":
        return int(counts["layer_linear"] * NF4_BYTES_PER_PARAM
                   + 2 * (counts["embedding"] + counts["lm_head"] + counts["norms"]))
    return counts["total"] * DTYPE_BYTES[dtype]


def layer_activation_bytes_per_token(shape: dict | str, dtype: str, target_modules: Sequence[str], lora_r: int,
                                     *, lora_dropout: float = 0.0, train_mode: bool = True) -> int:
    """Bytes autograd keeps per token in one decoder layer (see the module docstring)."""
    s = shapes.shape_config(shape) if isinstance(shape, str) else shape
    b = DTYPE_BYTES[canonical_dtype(dtype)]
    h, i = s["hidden_size"], s["intermediate_size"]
    d = shapes.head_dim(s)
    q, kv = s["num_attention_heads"] * d, s["num_key_value_heads"] * d
    total = 2 * 4 * h  # the RMSNorms' fp32 inputs
    if s["model_type"] == "qwen3":
        total += 4 * (q + kv)  # q_norm and k_norm inputs, fp32
    total += b * (q + 2 * q + q)  # SDPA: q, repeated k and v, output
    total += 3 * b * i  # SwiGLU: gate output, its SiLU, up output
    proj = shapes.projection_shapes(s)
    targets = [m for m in proj if m in set(target_modules)]
    dropout = train_mode and lora_dropout > 0
    shared_inputs = {"q_proj": "x1", "k_proj": "x1", "v_proj": "x1", "o_proj": "attn", "gate_proj": "x2",
                     "up_proj": "x2", "down_proj": "act"}
    seen: set[str] = set()
    for m in targets:
        n_in = proj[m][0]
        if dropout:
            total += 4 * n_in + n_in  # the dropped copy (fp32 after peft's cast) and its bool mask
        elif b != 4:
            total += 4 * n_in  # peft's fp32 copy of the input, one per projection
        elif shared_inputs[m] not in seen:
            total += 4 * n_in  # the input itself (same tensor for q/k/v, for gate/up)
        seen.add(shared_inputs[m])
        total += 4 * lora_r  # the LoRA A output
    return total


def activation_bytes(shape: dict | str, dtype: str, tokens: int, target_modules: Sequence[str], lora_r: int, *,
                     gradient_checkpointing: bool = False, lora_dropout: float = 0.0,
                     train_mode: bool = True) -> int:
    """Saved activations of a forward over ``tokens`` tokens (all rows × length)."""
    s = shapes.shape_config(shape) if isinstance(shape, str) else shape
    b = DTYPE_BYTES[canonical_dtype(dtype)]
    per_layer = layer_activation_bytes_per_token(s, dtype, target_modules, lora_r, lora_dropout=lora_dropout,
                                                 train_mode=train_mode)
    final_norm = 4 * s["hidden_size"]
    if gradient_checkpointing:
        return tokens * (s["num_hidden_layers"] * b * s["hidden_size"] + per_layer + final_norm)
    return tokens * (s["num_hidden_layers"] * per_layer + final_norm)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of each part, the peak, and the settings they were computed for."""

    shape: str
    dtype: str
    settings: dict
    parts: dict  # name -> bytes
    peak_bytes: int
    peak_phase: str  # which phase of the step sets the peak
    phases: dict = field(default_factory=dict)  # phase -> bytes

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB

    def describe(self) -> str:
        order = ("weights", "checkpoint_pages", "lora_state", "train_activations", "train_logits_kept", "train_logits_transient",
                 "diversity_activations", "diversity_logits_transient", "kv_cache", "sampler_work")
        parts = ", ".join(f"{k.replace('_', ' ')} {self.parts[k] / GIB:.2f}" for k in order if self.parts.get(k))
        return f"peak ≈ {self.peak_gib:.1f} GiB ({self.peak_phase}); GiB: {parts}"

    def as_dict(self) -> dict:
        return {**asdict(self), "peak_gib": self.peak_gib}


def estimate_training_memory(
    shape: str = "qwen3-8b",
    *,
    dtype: str = "bfloat16",
    lora_r: int = 16,
    target_modules: Sequence[str] = shapes.ATTENTION_PROJECTIONS,
    lora_dropout: float = 0.05,
    batch_size: int = 16,
    max_length: int = 96,
    gradient_checkpointing: bool = False,
    n_generations: int = 4,
    max_examples_for_diversity: int = 4,
    prompt_length: int | None = None,
    max_new_tokens: int = 32,
    diversity: bool = True,
    diversity_gradient: bool = True,
    checkpoint_dtype: str | None = None,
    overrides: dict | None = None,
) -> MemoryEstimate:
    """Peak memory of one training step (see the module docstring for every formula).

    ``batch_size × max_length`` is the quality micro-batch (sequences are padded to the longest
    of the batch; ``max_length`` is the worst case). The diversity samples are
    ``max_examples_for_diversity × n_generations`` rows of ``prompt_length + max_new_tokens``
    tokens (``prompt_length`` defaults to ``max_length``; samples are counted at full length).
    ``diversity=False`` estimates a cross-entropy-only step; ``diversity_gradient=False`` one
    that samples but forms no gradient (λ = 0). ``checkpoint_dtype``: on the CPU, the dtype of
    the safetensors file the weights are converted from when it differs from ``dtype`` (the
    file's memory-mapped pages stay resident while the weights convert: phase "loading"); None
    on a GPU, where the file maps into host memory, not the device's. ``overrides`` change
    shape values.
    """
    name = shapes.canonical_name(shape)
    s = shapes.shape_config(name, **(overrides or {}))
    dtype = canonical_dtype(dtype)
    b = DTYPE_BYTES[dtype]
    vocab, layers = s["vocab_size"], s["num_hidden_layers"]
    kv = s["num_key_value_heads"] * shapes.head_dim(s)
    prompt_length = max_length if prompt_length is None else prompt_length
    targets = tuple(target_modules)

    parts = {
        "weights": weight_bytes(s, dtype),
        "lora_state": shapes.lora_param_count(s, lora_r, targets) * LORA_BYTES_PER_PARAM,
    }
    train_tokens = batch_size * max_length
    parts["train_activations"] = activation_bytes(s, dtype, train_tokens, targets, lora_r,
                                                  gradient_checkpointing=gradient_checkpointing,
                                                  lora_dropout=lora_dropout, train_mode=True)
    parts["train_logits_kept"] = LOGITS_KEPT * train_tokens * vocab
    parts["train_logits_transient"] = LOGITS_TRANSIENT * train_tokens * vocab
    fixed = parts["weights"] + parts["lora_state"]
    quality_graph = parts["train_activations"] + parts["train_logits_kept"]
    phases = {"quality forward/backward": fixed + parts["train_activations"] + parts["train_logits_transient"]}
    if checkpoint_dtype is not None and canonical_dtype(checkpoint_dtype) != dtype:
        parts["checkpoint_pages"] = weight_bytes(s, checkpoint_dtype)
        phases["loading"] = parts["weights"] + parts["checkpoint_pages"]
    if diversity:
        rows = max_examples_for_diversity * n_generations
        sample_len = prompt_length + max_new_tokens
        parts["kv_cache"] = rows * sample_len * layers * 2 * kv * b
        parts["sampler_work"] = rows * vocab * SAMPLER_BYTES_PER_LOGIT
        div_tokens = rows * sample_len
        # log-probs of the samples run in eval mode (no LoRA dropout)
        parts["diversity_activations"] = activation_bytes(s, dtype, div_tokens, targets, lora_r,
                                                          gradient_checkpointing=gradient_checkpointing,
                                                          lora_dropout=lora_dropout, train_mode=False)
        parts["diversity_logits_transient"] = LOGITS_TRANSIENT * div_tokens * vocab
        phases["sampling"] = fixed + quality_graph + parts["kv_cache"] + parts["sampler_work"]
        if diversity_gradient:
            diversity_graph = parts["diversity_activations"] + LOGITS_KEPT * div_tokens * vocab
            phases["diversity log-probs"] = (fixed + quality_graph + parts["diversity_activations"]
                                             + parts["diversity_logits_transient"])
            # g_quality = autograd.grad(quality) runs while the diversity graph waits for its own
            phases["quality backward"] = (fixed + quality_graph + diversity_graph
                                          + parts["train_logits_transient"])
    peak_phase = max(phases, key=phases.get)
    settings = dict(lora_r=lora_r, target_modules=list(targets), lora_dropout=lora_dropout, batch_size=batch_size,
                    max_length=max_length, gradient_checkpointing=gradient_checkpointing,
                    n_generations=n_generations, max_examples_for_diversity=max_examples_for_diversity,
                    prompt_length=prompt_length, max_new_tokens=max_new_tokens, diversity=diversity,
                    diversity_gradient=diversity_gradient, checkpoint_dtype=checkpoint_dtype,
                    overrides=dict(overrides or {}))
    return MemoryEstimate(shape=name, dtype=dtype, settings=settings, parts=parts,
                          peak_bytes=int(phases[peak_phase]), peak_phase=peak_phase, phases=phases)


def estimate_for_config(shape: str, cfg, *, dtype: str | None = None, prompt_length: int | None = None,
                        checkpoint_dtype: str | None = None, overrides: dict | None = None) -> MemoryEstimate:
    """:func:`estimate_training_memory` with the settings of a ``PolychromicTrainConfig``.

    ``dtype`` defaults to what the training would load: nf4 with ``load_in_4bit``, else bf16
    (the loader's dtype on CUDA; pass ``float32`` for a CPU run). A micro-batch is
    ``per_device_train_batch_size`` pairs: gradient accumulation and more processes add steps
    or devices, not memory per device."""
    if dtype is None:
        dtype = "nf4" if cfg.load_in_4bit else "bfloat16"
    return estimate_training_memory(
        shape, dtype=dtype, lora_r=cfg.lora_r, target_modules=cfg.target_modules, lora_dropout=cfg.lora_dropout,
        batch_size=cfg.per_device_train_batch_size, max_length=cfg.max_length,
        gradient_checkpointing=cfg.gradient_checkpointing,
        n_generations=cfg.n_generations, max_examples_for_diversity=cfg.max_examples_for_diversity,
        prompt_length=prompt_length, max_new_tokens=cfg.max_new_tokens,
        diversity=cfg.diversity_weight != 0 or cfg.sample_diversity_when_zero,
        diversity_gradient=cfg.diversity_weight != 0, checkpoint_dtype=checkpoint_dtype, overrides=overrides,
    )


@dataclass(frozen=True)
class Fit:
    required_bytes: int  # peak × (1 + fragmentation) + CUDA context
    gpu_bytes: int
    fits: bool
    tight: bool  # fits, but with under ``margin`` to spare


def fits(estimate: MemoryEstimate, gpu_gib: float, *, fragmentation: float = 0.10, cuda_context_gib: float = 0.75,
         margin: float = 0.10) -> Fit:
    """Whether the estimate fits ``gpu_gib``: the peak plus a ``fragmentation`` share (the
    caching allocator reserves more than it hands out) plus the CUDA context; ``tight`` when
    less than ``margin`` of the GPU would be left."""
    required = int(estimate.peak_bytes * (1 + fragmentation) + cuda_context_gib * GIB)
    gpu = int(gpu_gib * GIB)
    return Fit(required, gpu, required <= gpu, required <= gpu and required > (1 - margin) * gpu)
