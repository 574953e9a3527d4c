"""The continuous-thought model: a LoRA-wrapped causal LM plus CODI's projection.

Layout, names and special ids follow CODI (zhenyi4/codi, ``src/model.py``) exactly, so that
``state_dict()`` of :class:`ContinuousThoughtModel` has the keys of a CODI checkpoint:

- ``codi.base_model.model.*``: the peft-wrapped causal LM. LoRA-targeted linears appear as
  ``…<proj>.base_layer.weight``, ``…<proj>.lora_A.default.weight`` and
  ``…<proj>.lora_B.default.weight``.
- ``prj.1.{weight,bias}`` (Linear d -> prj_dim), ``prj.3.{weight,bias}`` (Linear prj_dim -> d)
  and ``prj.ln.{weight,bias}``: CODI builds ``nn.Sequential(Dropout, Linear, GELU, Linear)``
  and then ``add_module("ln", LayerNorm(d))``, so the LayerNorm's key is ``ln``, not ``4``.
- The input embeddings are resized from the original vocabulary V to V + 3; pad, bot and eot
  are V, V + 1 and V + 2.

Unlike CODI's loader (``load_state_dict(strict=False)``, which silently keeps random weights
for any key it does not find), :func:`load_codi_checkpoint` fails on any missing, unexpected
or mis-shaped key and lists them. The only tolerated gap is a tied ``lm_head.weight`` that a
safetensors writer dropped because it shares memory with the input embeddings.

All weights come from the checkpoint (the strict check guarantees every parameter is
covered); the base model directory provides only ``config.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from polydag.core.ops.hashing import refuse_nonfinite
from polydag.core.step_importance.config import LLAMA_TARGET_MODULES

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
CODI_PREFIX = "codi."

_log = logging.getLogger(__name__)


class CodiCheckpointError(ValueError):
    """A CODI checkpoint that does not match the model it should load into."""


def make_projection(hidden_size: int, prj_dim: int, dropout: float = 0.0) -> nn.Sequential:
    """CODI's projection: Dropout, Linear(d, prj_dim), GELU, Linear(prj_dim, d), then ``ln``."""
    prj = nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(hidden_size, prj_dim),
        nn.GELU(),
        nn.Linear(prj_dim, hidden_size),
    )
    prj.add_module("ln", nn.LayerNorm(hidden_size))
    return prj


class ContinuousThoughtModel(nn.Module):
    """A CODI model: ``codi`` (peft LoRA causal LM) and ``prj`` (the thought projection).

    ``vocab_size`` is the resized vocabulary (original V + 3), as ``codi.config.vocab_size``
    is in CODI; ``pad_token_id``, ``bot_id`` and ``eot_id`` are V, V + 1 and V + 2.
    """

    def __init__(self, codi: nn.Module, prj: nn.Sequential, *, num_latent: int = 6):
        super().__init__()
        self.codi = codi
        self.prj = prj
        self.num_latent = int(num_latent)
        vocab = int(self.causal_lm.get_input_embeddings().num_embeddings)
        self.vocab_size = vocab
        self.pad_token_id = vocab - 3
        self.bot_id = vocab - 2
        self.eot_id = vocab - 1

    # The submodules below are views into ``codi``; they are properties, not attributes, so
    # they add no duplicate keys to the state dict.
    @property
    def causal_lm(self) -> nn.Module:
        """The causal LM inside the peft wrapper (LoRA layers are injected in place)."""
        return self.codi.get_base_model() if hasattr(self.codi, "get_base_model") else self.codi

    @property
    def body(self) -> nn.Module:
        """The decoder stack without the LM head (``LlamaModel`` for LLaMA)."""
        return self.causal_lm.base_model

    @property
    def decoder_layers(self) -> nn.ModuleList:
        body = self.body
        for name in ("layers", "h"):
            if hasattr(body, name):
                return getattr(body, name)
        raise AttributeError(f"cannot find the decoder layers of {type(body).__name__}")

    @property
    def hidden_size(self) -> int:
        return int(self.causal_lm.config.hidden_size)

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.causal_lm.get_input_embeddings()(token_ids)

    def project(self, last_hidden: torch.Tensor) -> torch.Tensor:
        """The next thought: ``prj(last hidden state)``."""
        return self.prj(last_hidden)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def constant_thought(hidden_size: int, seed: int) -> torch.Tensor:
    """The fixed thought of a control model: a seeded vector with zero mean and unit variance
    over its dimensions, the statistics of what the projection's LayerNorm emits at
    initialisation, so it has the scale of a thought. Drawn from its own generator: the
    global random stream (the rest of training) is the same as the default model's."""
    generator = torch.Generator().manual_seed(1_000_003 + int(seed))
    value = torch.randn(hidden_size, generator=generator)
    return (value - value.mean()) / value.std(unbiased=False)


def cut_thoughts(model: ContinuousThoughtModel, constant: torch.Tensor) -> ContinuousThoughtModel:
    """Make every thought of ``model`` the vector ``constant``, whatever the hidden state: the
    negative control's model, which cannot carry information through its latent thoughts.

    The projection ends with a LayerNorm, ``weight * normalize(x) + bias``; with weight 0 its
    output is ``bias`` for every input. Setting weight 0 and bias ``constant`` and freezing the
    whole projection (no gradient can reach its Linear layers then either) cuts the channel in
    the weights themselves, not behind a flag: the checkpoint keeps CODI's key layout, so the
    same strict loader, the same ablation engine and CODI's own code all feed the constant,
    in training and at inference alike. A non-zero constant keeps ``zero`` ablations a real
    change of input on the control (with a zero constant they would be no-ops), so its
    curve measures what an ablation disturbs in a model whose thoughts carry nothing.

    The latent positions themselves stay (their keys and values are still computed from the
    question and the constant input, like pause tokens), so ``layer:L`` ablations of the
    control measure that computation rather than nothing."""
    ln = model.prj.ln
    with torch.no_grad():
        ln.weight.zero_()
        ln.bias.copy_(constant.to(dtype=ln.bias.dtype, device=ln.bias.device))
    for param in model.prj.parameters():
        param.requires_grad_(False)
    return model


def thoughts_are_constant(model: ContinuousThoughtModel) -> bool:
    """Whether the model's projection emits one vector for every input (its LayerNorm weight is
    all zero, as :func:`cut_thoughts` leaves it)."""
    return bool(torch.count_nonzero(model.prj.ln.weight.detach()) == 0)


@dataclass
class CodiArchitecture:
    """What, besides the base model's config, defines a CODI model's parameters."""

    lora_r: int = 128
    lora_alpha: int = 32
    target_modules: Sequence[str] = LLAMA_TARGET_MODULES
    prj_dim: int = 2048
    num_latent: int = 6
    lora_dropout: float = 0.1  # CODI's value; inactive in eval mode


def assemble_codi_model(causal_lm: nn.Module, arch: CodiArchitecture) -> ContinuousThoughtModel:
    """Resize embeddings to V + 3, wrap with LoRA and add the projection, in CODI's order."""
    from peft import LoraConfig, TaskType, get_peft_model

    original_vocab = int(causal_lm.get_input_embeddings().num_embeddings)
    causal_lm.resize_token_embeddings(original_vocab + 3, mean_resizing=False)
    lora = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        inference_mode=False,
        r=int(arch.lora_r),
        lora_alpha=int(arch.lora_alpha),
        lora_dropout=float(arch.lora_dropout),
        target_modules=list(arch.target_modules),
        init_lora_weights=True,
    )
    codi = get_peft_model(causal_lm, lora)
    prj = make_projection(int(causal_lm.config.hidden_size), int(arch.prj_dim))
    return ContinuousThoughtModel(codi, prj, num_latent=arch.num_latent)


@dataclass
class TinyCodiConfig:
    """The small LLaMA-architecture CODI model used offline and in tests."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    tie_word_embeddings: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    target_modules: Sequence[str] = LLAMA_TARGET_MODULES
    prj_dim: int = 64
    num_latent: int = 6
    lora_dropout: float = 0.0
    seed: int = 0
    initializer_range: float = 0.02
    attn_implementation: str = "sdpa"

    def architecture(self) -> CodiArchitecture:
        return CodiArchitecture(self.lora_r, self.lora_alpha, tuple(self.target_modules),
                                self.prj_dim, self.num_latent, self.lora_dropout)

    def llama_config(self, vocab_size: int, *, bos_token_id: int | None, eos_token_id: int | None):
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            max_position_embeddings=self.max_position_embeddings,
            tie_word_embeddings=self.tie_word_embeddings,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=None,
            initializer_range=self.initializer_range,
            attn_implementation=self.attn_implementation,
        )


def build_tiny_codi_model(tokenizer_or_vocab, cfg: TinyCodiConfig | None = None) -> ContinuousThoughtModel:
    """A randomly initialised small LLaMA + LoRA + prj (seeded by ``cfg.seed``), in eval mode.

    ``tokenizer_or_vocab`` is a tokenizer (its ``len`` is the original vocabulary) or an int.
    """
    from transformers import LlamaForCausalLM

    cfg = cfg or TinyCodiConfig()
    if isinstance(tokenizer_or_vocab, int):
        vocab, bos, eos = tokenizer_or_vocab, None, None
    else:
        vocab = len(tokenizer_or_vocab)
        bos, eos = tokenizer_or_vocab.bos_token_id, tokenizer_or_vocab.eos_token_id
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        causal_lm = LlamaForCausalLM(cfg.llama_config(vocab, bos_token_id=bos, eos_token_id=eos))
        model = assemble_codi_model(causal_lm, cfg.architecture())
    return model.float().eval()


# --------------------------------------------------------------------------- checkpoints


def _weights_file(ckpt_dir: Path) -> Path:
    if not ckpt_dir.exists():
        raise FileNotFoundError(f"CODI checkpoint directory not found: {ckpt_dir}")
    if not ckpt_dir.is_dir():
        raise NotADirectoryError(f"CODI checkpoint path is not a directory: {ckpt_dir}")
    for name in WEIGHT_FILES:
        if (ckpt_dir / name).is_file():
            return ckpt_dir / name
    present = sorted(p.name for p in ckpt_dir.iterdir())[:20]
    raise FileNotFoundError(
        f"CODI checkpoint {ckpt_dir} has neither {' nor '.join(WEIGHT_FILES)} (found: {present})"
    )


def read_codi_state_dict(ckpt_dir: str | Path) -> dict[str, torch.Tensor]:
    """The raw tensors of a CODI checkpoint (safetensors, else ``torch.load(weights_only)``)."""
    path = _weights_file(Path(ckpt_dir))
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise CodiCheckpointError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


def _format_keys(keys: Sequence[str], limit: int = 25) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", … ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict_keys(model: ContinuousThoughtModel, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CodiCheckpointError` listing every missing, unexpected or mis-shaped key."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    if getattr(model.causal_lm.config, "tie_word_embeddings", False):
        # A tied LM head may be dropped by writers that de-duplicate shared tensors.
        missing = [k for k in missing if not k.endswith("lm_head.weight")]
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k} (checkpoint {tuple(state[k].shape)}, model {expected[k]})"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_format_keys(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_format_keys(unexpected)}")
    if mismatched:
        problems.append(
            f"{len(mismatched)} shape mismatch(es) (check lora_r, prj_dim and the base model): "
            f"{_format_keys(mismatched)}"
        )
    if problems:
        raise CodiCheckpointError(f"{source} does not match the CODI model: " + "; ".join(problems))


def _build_base_from_config(base_model_path: Path, dtype) -> nn.Module:
    """The base causal LM from ``config.json`` with its parameters on the meta device (no
    storage, no random initialisation: every weight comes from the checkpoint). Buffers stay
    real, because the rotary embedding's ``inv_freq`` is computed at construction and is not
    in a checkpoint."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    if not base_model_path.exists():
        raise FileNotFoundError(f"base model path not found: {base_model_path}")
    if not (base_model_path / "config.json").is_file():
        raise FileNotFoundError(f"base model path {base_model_path} has no config.json")
    config = AutoConfig.from_pretrained(str(base_model_path), local_files_only=True)
    with init_empty_weights(include_buffers=False):
        return AutoModelForCausalLM.from_config(config, dtype=dtype)


def load_codi_checkpoint(
    ckpt_dir: str | Path,
    base_model_path: str | Path,
    *,
    lora_r: int,
    lora_alpha: int,
    target_modules: Sequence[str],
    prj_dim: int,
    num_latent: int = 6,
    dtype=torch.float32,
    device: str = "cpu",
) -> ContinuousThoughtModel:
    """Load a CODI checkpoint strictly; returns the model in eval mode on ``device`` in ``dtype``.

    ``base_model_path`` is a local Hugging Face model directory; only its ``config.json`` is
    read (every weight, base layers included, comes from the checkpoint). The model is built
    on the meta device and the checkpoint's tensors, cast to ``dtype`` on ``device``, become
    its parameters (``assign=True``), so no full-size random model is ever initialised and
    memory peaks at about one copy of the weights.
    """
    from accelerate import init_empty_weights

    ckpt_dir = Path(ckpt_dir)
    weights = _weights_file(ckpt_dir)
    causal_lm = _build_base_from_config(Path(base_model_path), dtype)
    with init_empty_weights(include_buffers=False):
        model = assemble_codi_model(
            causal_lm,
            CodiArchitecture(lora_r=lora_r, lora_alpha=lora_alpha, target_modules=tuple(target_modules),
                             prj_dim=prj_dim, num_latent=num_latent),
        )
    state = read_codi_state_dict(ckpt_dir)
    check_state_dict_keys(model, state, str(weights))
    refuse_nonfinite(state.items(), str(weights), CodiCheckpointError)
    for key in list(state):   # one tensor at a time, so the full-precision copy is never doubled
        state[key] = state[key].to(device=device, dtype=dtype)
    # strict=False only for the tolerated tied head; every other key was checked above.
    model.load_state_dict(state, strict=False, assign=True)
    del state
    if getattr(model.causal_lm.config, "tie_word_embeddings", False):
        model.causal_lm.tie_weights()  # as CODI's test.py does after loading
    left = [name for name, p in model.named_parameters() if p.is_meta]
    if left:
        raise CodiCheckpointError(f"{weights} left {len(left)} parameter(s) without weights: {_format_keys(left)}")
    _log.info("loaded CODI checkpoint %s (%.1fM params, %s on %s)", weights, model.n_params() / 1e6,
              str(dtype).replace("torch.", ""), device)
    return model.to(device=device).eval()


def save_codi_checkpoint(model: ContinuousThoughtModel, out_dir: str | Path, *, fmt: str = "safetensors") -> Path:
    """Write ``model.state_dict()`` in CODI's key layout (``model.safetensors`` or, with
    ``fmt="bin"``, ``pytorch_model.bin`` as CODI's LLaMA runs saved). Returns the file."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Clone so tensors that share memory (tied embeddings) are saved as separate entries.
    state = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = out_dir / "model.safetensors"
        save_file(state, str(path))
    elif fmt == "bin":
        path = out_dir / "pytorch_model.bin"
        torch.save(state, str(path))
    else:
        raise ValueError(f"unknown checkpoint format {fmt!r}; use 'safetensors' or 'bin'")
    return path


@dataclass
class CodiModelSettings:
    """The loader settings saved next to a checkpoint written by polydag (``codi_settings.json``)."""

    lora_r: int
    lora_alpha: int
    target_modules: list[str]
    prj_dim: int
    num_latent: int
    extra: dict = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> "CodiModelSettings":
        if not path.is_file():
            raise FileNotFoundError(f"missing CODI settings file: {path}")
        return cls(**json.loads(path.read_text()))
