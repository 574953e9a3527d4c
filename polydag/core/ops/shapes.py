"""Real model shapes without downloads: the configs of the researchers' models, random weights.

What it knows:

- :data:`SHAPES`: the ``config.json`` values of Qwen3-0.6B, Qwen3-8B and LLaMA-3.2-1B(-Instruct)
  as plain dicts, copied from the public Hugging Face configs (``Qwen/Qwen3-0.6B``,
  ``Qwen/Qwen3-8B``, ``meta-llama/Llama-3.2-1B`` and ``meta-llama/Llama-3.2-1B-Instruct``,
  ``config.json`` at their release revisions, April 2025 and September 2024), plus two small
  shapes of the same families for CPU tests (``tiny``, ``tiny-llama``). Special-token ids
  (bos/eos/pad) are left out on purpose: they belong to the real tokenizers, which are not
  available offline; :func:`save_random_model` sets them to its own tokenizer's ids.
- :func:`param_counts`: parameters by role (embedding, head, per-layer projections, norms), by
  arithmetic from a shape dict; no torch. :mod:`polydag.core.ops.memory` builds on it.
- :func:`build_random_model`: a random-weight ``AutoModelForCausalLM`` of a shape, allocated and
  initialised directly in the requested dtype on the requested device (``from_config(dtype=...)``
  under a ``torch.device`` context): an 8B model in bf16 on a GPU never exists as fp32 on the CPU.
- :func:`build_tokenizer`: a byte-level BPE tokenizer trained offline with ``tokenizers`` (the
  approach of :mod:`polydag.core.polychromic.base_model`), with the family's special tokens and a
  chat template: Qwen3-style ChatML with an ``enable_thinking`` switch, or LLaMA-3-style headers.
  It has the real tokenizer's length and special-token ids (Qwen3: 151,669 tokens,
  ``<|im_end|>`` = 151645; LLaMA 3: 128,256, ``<|eot_id|>`` = 128009): merges learnt from the
  given texts, then synthetic merges of printable characters, so every id a random model
  samples decodes to text. The model keeps the shape's vocabulary (Qwen3's 151,936 rows, the
  ones past the tokenizer padding).
- :func:`save_random_model`: both, saved as a local Hugging Face directory (``config.json``,
  ``model.safetensors``, tokenizer files) that ``load_model_and_tokenizer`` loads.

What it doesn't: real weights or the real tokenizers' merges (token ids, texts and lengths
differ from the real models'; shapes, memory and speed are the real ones). Nothing here
imports torch at module import.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

SHAPE_INFO_FILE = "polydag_shape.json"

# Values of each model's public config.json (see the module docstring for the sources).
_QWEN3_COMMON = dict(
    model_type="qwen3", architectures=["Qwen3ForCausalLM"], hidden_act="silu", attention_bias=False,
    attention_dropout=0.0, initializer_range=0.02, rms_norm_eps=1e-6, rope_theta=1000000,
    rope_scaling=None, max_position_embeddings=40960, use_sliding_window=False, sliding_window=None,
    vocab_size=151936, head_dim=128, num_key_value_heads=8, torch_dtype="bfloat16", use_cache=True,
)
_LLAMA32_1B = dict(
    model_type="llama", architectures=["LlamaForCausalLM"], hidden_act="silu", attention_bias=False,
    attention_dropout=0.0, mlp_bias=False, initializer_range=0.02, rms_norm_eps=1e-5,
    hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
    num_key_value_heads=8, head_dim=64, vocab_size=128256, max_position_embeddings=131072,
    rope_theta=500000.0, rope_scaling={"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                       "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    tie_word_embeddings=True, pretraining_tp=1, torch_dtype="bfloat16", use_cache=True,
)

SHAPES: dict[str, dict] = {
    # Qwen/Qwen3-0.6B: 596M parameters (tied embeddings), 28 layers, GQA 16/8 heads of 128
    "qwen3-0.6b": {**_QWEN3_COMMON, "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
                   "num_attention_heads": 16, "max_window_layers": 28, "tie_word_embeddings": True},
    # Qwen/Qwen3-8B: 8.19B parameters (untied head), 36 layers, GQA 32/8 heads of 128
    "qwen3-8b": {**_QWEN3_COMMON, "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
                 "num_attention_heads": 32, "max_window_layers": 36, "tie_word_embeddings": False},
    # meta-llama/Llama-3.2-1B: 1.24B parameters (tied), 16 layers, GQA 32/8 heads of 64, llama3 RoPE
    "llama-3.2-1b": dict(_LLAMA32_1B),
    # meta-llama/Llama-3.2-1B-Instruct: the same shape (its config differs only in eos ids)
    "llama-3.2-1b-instruct": dict(_LLAMA32_1B),
    # small shapes of the same families, for CPU tests of code that takes a shape name
    "tiny": {**_QWEN3_COMMON, "hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 4096,
             "max_window_layers": 2, "max_position_embeddings": 2048, "tie_word_embeddings": True},
    "tiny-llama": {**_LLAMA32_1B, "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 4096,
                   "max_position_embeddings": 2048, "rope_scaling": None},
}

ALIASES = {"qwen3-0.6B": "qwen3-0.6b", "Qwen3-0.6B": "qwen3-0.6b", "Qwen3-8B": "qwen3-8b", "qwen3-8B": "qwen3-8b",
           "llama-1b": "llama-3.2-1b", "1b": "llama-3.2-1b", "Llama-3.2-1B": "llama-3.2-1b",
           "Llama-3.2-1B-Instruct": "llama-3.2-1b-instruct"}

# The modules LoRA targets in polydag's configs and the researchers' (names of Qwen3 and LLaMA alike)
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
ALL_PROJECTIONS = ATTENTION_PROJECTIONS + ("gate_proj", "up_proj", "down_proj")

# ChatML as in Qwen3's tokenizer_config.json, reduced to what polydag uses: system/user/assistant
# turns, add_generation_prompt, and enable_thinking=False adding the empty think block that Qwen3's
# own template adds (tools and reasoning_content of earlier turns are left out).
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)
# LLaMA 3's header format (its template's date and tool preamble left out)
LLAMA3_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


# Special tokens in id order, after the regular (BPE) tokens, as in the real tokenizers: Qwen3's 26
# (<|endoftext|> = 151643, <|im_start|> = 151644, <|im_end|> = 151645, <think> = 151667) and LLaMA 3's
# 256 (<|begin_of_text|> = 128000, <|eot_id|> = 128009, the rest reserved). The second element says
# whether the token is "special" (skipped when decoding); Qwen3's tool and think tags are not.
_QWEN3_SPECIALS = tuple((t, True) for t in (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")) + (("<tool_call>", False), ("</tool_call>", False)) + \
    tuple((t, True) for t in ("<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
                              "<|repo_name|>", "<|file_sep|>")) + \
    (("<tool_response>", False), ("</tool_response>", False), ("<think>", False), ("</think>", False))
_LLAMA3_NAMED = {0: "<|begin_of_text|>", 1: "<|end_of_text|>", 4: "<|finetune_right_pad_id|>",
                 6: "<|start_header_id|>", 7: "<|end_header_id|>", 8: "<|eom_id|>", 9: "<|eot_id|>",
                 10: "<|python_tag|>"}


def _llama3_specials() -> tuple[tuple[str, bool], ...]:
    out, reserved = [], 0
    for k in range(256):
        if k in _LLAMA3_NAMED:
            out.append((_LLAMA3_NAMED[k], True))
        else:
            out.append((f"<|reserved_special_token_{reserved}|>", True))
            reserved += 1
    return tuple(out)


@dataclass(frozen=True)
class _Specials:
    tokens: tuple[tuple[str, bool], ...]
    pad: str
    eos: str
    bos: str | None  # added in front of every encoding (LLaMA) or not at all (Qwen)
    chat_template: str


_SPECIALS = {
    "qwen3": _Specials(_QWEN3_SPECIALS, pad="<|endoftext|>", eos="<|im_end|>", bos=None,
                       chat_template=QWEN3_CHAT_TEMPLATE),
    "llama": _Specials(_llama3_specials(), pad="<|finetune_right_pad_id|>", eos="<|eot_id|>",
                       bos="<|begin_of_text|>", chat_template=LLAMA3_CHAT_TEMPLATE),
}

# len(tokenizer) of the real tokenizers (regular tokens + the specials above); a tiny shape's
# tokenizer fills its whole vocabulary.
TOKENIZER_SIZES = {"qwen3-0.6b": 151669, "qwen3-8b": 151669, "llama-3.2-1b": 128256,
                   "llama-3.2-1b-instruct": 128256}

# A few lines of text so a tokenizer can be built without data; pass real texts when there are any.
_DEFAULT_CORPUS = (
    "Who else is running before work this weekend? Proud of you, keep going!",
    "Okay I need to talk about cold brew. Totally agree, it never gets old.",
    "Unpopular opinion: thin crust is overrated. Hard disagree, I'd pick a margherita any day.",
    "The answer is: 42. Janet has 16 eggs and eats 3 for breakfast every morning.",
    "Question: how many apples are left if you give away 5 of 12? Let's think step by step.",
    "Tweet: just finished my first marathon\nReply: congratulations, that is huge",
)


def canonical_name(name: str) -> str:
    """The key of :data:`SHAPES` for ``name`` (case and a few aliases tolerated)."""
    if name in SHAPES:
        return name
    key = ALIASES.get(name, name.lower())
    if key not in SHAPES:
        raise KeyError(f"unknown shape {name!r}; known: {', '.join(SHAPES)}")
    return key


def shape_config(name: str, **overrides) -> dict:
    """A copy of the shape's config.json values, with ``overrides`` applied (e.g. fewer layers)."""
    values = copy.deepcopy(SHAPES[canonical_name(name)])
    values.update(overrides)
    return values


def family(shape: dict | str) -> str:
    """"qwen3" or "llama"."""
    values = shape_config(shape) if isinstance(shape, str) else shape
    return values["model_type"]


def head_dim(shape: dict) -> int:
    return int(shape.get("head_dim") or shape["hidden_size"] // shape["num_attention_heads"])


def projection_shapes(shape: dict | str) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of each linear projection of one decoder layer."""
    s = shape_config(shape) if isinstance(shape, str) else shape
    h, i, d = s["hidden_size"], s["intermediate_size"], head_dim(s)
    q, kv = s["num_attention_heads"] * d, s["num_key_value_heads"] * d
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def param_counts(shape: dict | str) -> dict[str, int]:
    """Parameters by role: ``embedding``, ``lm_head`` (0 when tied), ``layer_linear`` (all decoder
    projections), ``norms`` (RMSNorm weights, incl. Qwen3's q/k norms) and ``total``."""
    s = shape_config(shape) if isinstance(shape, str) else shape
    h, layers = s["hidden_size"], s["num_hidden_layers"]
    embedding = s["vocab_size"] * h
    lm_head = 0 if s.get("tie_word_embeddings", False) else embedding
    linear = layers * sum(a * b for a, b in projection_shapes(s).values())
    if s.get("attention_bias"):
        p = projection_shapes(s)
        linear += layers * sum(p[m][1] for m in ATTENTION_PROJECTIONS[:3])
    norms = layers * 2 * h + h + (layers * 2 * head_dim(s) if s["model_type"] == "qwen3" else 0)
    return {"embedding": embedding, "lm_head": lm_head, "layer_linear": linear, "norms": norms,
            "total": embedding + lm_head + linear + norms}


def lora_param_count(shape: dict | str, r: int, target_modules: Sequence[str] = ATTENTION_PROJECTIONS) -> int:
    """LoRA parameters (A: r × in, B: out × r) over all layers for the named projections."""
    s = shape_config(shape) if isinstance(shape, str) else shape
    proj = projection_shapes(s)
    unknown = [m for m in target_modules if m not in proj]
    if unknown:
        raise ValueError(f"target_modules {unknown} are not projections of a {s['model_type']} layer ({list(proj)})")
    return s["num_hidden_layers"] * sum(r * (proj[m][0] + proj[m][1]) for m in target_modules)


# -- with transformers -----------------------------------------------------------------------------

def hf_config(shape: dict | str, **token_ids):
    """The ``transformers`` config object (Qwen3Config or LlamaConfig) of a shape."""
    from transformers import LlamaConfig, Qwen3Config

    s = shape_config(shape) if isinstance(shape, str) else copy.deepcopy(shape)
    cls = {"qwen3": Qwen3Config, "llama": LlamaConfig}[s["model_type"]]
    skip = {"model_type", "architectures", "torch_dtype"}
    config = cls(**{k: v for k, v in s.items() if k not in skip}, **token_ids)
    config.architectures = list(s["architectures"])
    return config


def _torch_dtype(dtype):
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(names)}")
    return names[dtype]


INITS = ("normal", "pool")
_POOL_SIZE = 1 << 24  # values in the "pool" init's random block (64 MiB in fp32)


def build_random_model(shape: dict | str, *, dtype="bfloat16", device="cpu", seed: int = 0, init: str = "normal",
                       **token_ids):
    """A random-weight causal LM of ``shape``, created directly in ``dtype`` on ``device``.

    ``from_config(config, dtype=...)`` makes ``dtype`` the default while the modules are built,
    and the ``torch.device`` context allocates them on ``device``, so weights are allocated and
    initialised once, where and as they will be used.

    ``init``: ``normal`` is transformers' own initialisation (every weight drawn from
    normal(0, initializer_range), norms one). ``pool`` draws one block of 2^24 such values and
    copies it, from a random offset per tensor, into every weight (norms one): the same marginal
    distribution, correlated across tensors, and about 10× faster on a CPU (a 0.6B model took
    49 s with ``normal`` on 2 contended cores). It is meant for checks of shape, memory and
    speed, where the values of random weights do not matter. ``token_ids``: pad/bos/eos ids for
    the config (see :func:`save_random_model`).
    """
    import torch
    from transformers import AutoModelForCausalLM

    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    config = hf_config(shape, **token_ids)
    torch.manual_seed(seed)
    if init == "normal":
        with torch.device(device):
            return AutoModelForCausalLM.from_config(config, dtype=_torch_dtype(dtype))
    from transformers.initialization import no_init_weights

    with torch.device(device), no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=_torch_dtype(dtype))
    model.tie_weights()  # no_init_weights also skips the tying of a tied head
    generator = torch.Generator(device=device).manual_seed(seed)
    pool = torch.empty(_POOL_SIZE, dtype=_torch_dtype(dtype), device=device).normal_(
        0.0, config.initializer_range, generator=generator)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim == 1:
                param.fill_(1.0)  # RMSNorm weights (these shapes have no biases)
                continue
            flat, done = param.view(-1), 0
            while done < flat.numel():
                start = int(torch.randint(0, _POOL_SIZE, (1,), generator=generator, device=device))
                n = min(flat.numel() - done, _POOL_SIZE - start)
                flat[done:done + n].copy_(pool[start:start + n])
                done += n
    return model


def _printable_symbols() -> list[str]:
    """Byte-level symbols of the printable ASCII bytes, letters first ('Ġ' is the space byte)."""
    order = ["Ġ"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    order += [chr(c) for c in range(ord("0"), ord("9") + 1)]
    return order + [chr(c) for c in range(33, 127) if chr(c) not in order]


def _fill_merges(vocab: dict[str, int], merges: list, n_regular: int) -> None:
    """Extend a trained BPE (in place) with synthetic merges of printable symbols (2-grams, then
    3-grams) until it has ``n_regular`` tokens: a small corpus cannot yield 151k real merges,
    and a sampled id must decode to text, as every id below the specials does in the real
    tokenizers. The synthetic merges rank after the trained ones."""
    symbols = _printable_symbols()
    level = list(symbols)
    while len(vocab) < n_regular:
        grown = []
        for left in level:
            for right in symbols:
                token = left + right
                grown.append(token)
                if token not in vocab:
                    vocab[token] = len(vocab)
                    merges.append([left, right])
                    if len(vocab) == n_regular:
                        return
        level = grown


def build_tokenizer(shape_family: str = "qwen3", texts: Sequence[str] = (), *, size: int = 4096,
                    model_max_length: int = 2048):
    """A byte-level BPE ``PreTrainedTokenizerFast`` of ``size`` tokens (``len(tokenizer)``) with
    ``shape_family``'s special tokens and chat template.

    The regular tokens (ids ``0 .. size - n_specials - 1``) are the 256 byte symbols, the merges
    BPE learns from ``texts`` (default: a few built-in lines; the approach of
    :mod:`polydag.core.polychromic.base_model`), then synthetic merges of printable characters
    up to the size; the specials follow in the real tokenizers' order, so at the real sizes they
    have the real ids (Qwen3: ``<|endoftext|>`` 151643 pad, ``<|im_end|>`` 151645 EOS, no BOS
    added, ChatML with an ``enable_thinking`` switch; LLaMA 3: ``<|begin_of_text|>`` 128000
    added in front, ``<|eot_id|>`` 128009 EOS).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = _SPECIALS[shape_family]
    n_regular = size - len(specials.tokens)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if n_regular < len(alphabet):
        raise ValueError(f"a {shape_family} tokenizer needs at least {len(alphabet) + len(specials.tokens)} "
                         f"tokens, got size={size}")
    trained = Tokenizer(models.BPE())
    trained.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trained.train_from_iterator(list(texts) or list(_DEFAULT_CORPUS), trainers.BpeTrainer(
        vocab_size=n_regular, initial_alphabet=alphabet, show_progress=False))
    bpe = json.loads(trained.to_str())["model"]
    vocab, merges = dict(bpe["vocab"]), [list(m) for m in bpe["merges"]]
    _fill_merges(vocab, merges, n_regular)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    for text, special in specials.tokens:  # one at a time: ids follow the list order
        tok.add_tokens([AddedToken(text, special=special, normalized=False)])
    if specials.bos:
        bos = specials.bos
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=specials.pad, eos_token=specials.eos, bos_token=specials.bos,
        model_max_length=model_max_length, clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = specials.chat_template
    assert len(tokenizer) == size, (len(tokenizer), size)
    return tokenizer


def save_random_model(shape: dict | str, out_dir: str | Path, *, dtype="bfloat16", device="cpu", seed: int = 0,
                      texts: Sequence[str] = (), tokenizer_size: int | None = None,
                      overrides: dict | None = None, init: str = "normal") -> Path:
    """Build a random-weight model of ``shape`` and a tokenizer, save both to ``out_dir``
    (atomically) as a local Hugging Face model directory; return ``out_dir``.

    The tokenizer has the real tokenizer's length (:data:`TOKENIZER_SIZES`; a tiny shape's: its
    vocab_size) unless ``tokenizer_size`` says otherwise; the model keeps the shape's
    ``vocab_size`` (the rows past the tokenizer are padding, as in Qwen3), and its config's
    pad/bos/eos ids are the tokenizer's. ``dtype`` is also the dtype of the saved safetensors
    (``load_model_and_tokenizer`` casts to its own dtype when loading). ``overrides`` change
    config values (e.g. ``num_hidden_layers``) for cheaper variants; ``init`` is
    :func:`build_random_model`'s; ``polydag_shape.json`` records the shape name, the overrides
    and the init.
    """
    from polydag.core.ops.atomic_dir import atomic_output_dir

    name = shape if isinstance(shape, str) else None
    values = shape_config(shape, **(overrides or {})) if isinstance(shape, str) else {**shape, **(overrides or {})}
    shape_family = family(values)
    if tokenizer_size is None:
        tokenizer_size = min(TOKENIZER_SIZES.get(name or "", values["vocab_size"]), values["vocab_size"])
    tokenizer = build_tokenizer(shape_family, texts, size=tokenizer_size)
    if len(tokenizer) > values["vocab_size"]:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens, more than the shape's vocab_size "
                         f"{values['vocab_size']}")
    ids = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
               bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.pad_token_id)
    model = build_random_model(values, dtype=dtype, device=device, seed=seed, init=init, **ids)
    model.generation_config.pad_token_id = ids["pad_token_id"]
    model.generation_config.eos_token_id = ids["eos_token_id"]
    model.generation_config.bos_token_id = ids["bos_token_id"]
    info = {"shape": name, "overrides": overrides or {}, "family": shape_family, "dtype": str(dtype),
            "seed": seed, "init": init, "tokenizer_tokens": len(tokenizer), "model_vocab_size": values["vocab_size"],
            "n_params": sum(p.numel() for p in model.parameters()), "weights": "random (not trained)"}
    with atomic_output_dir(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / SHAPE_INFO_FILE).write_text(json.dumps(info, indent=2))
    del model
    return Path(out_dir)
