"""How a (prompt, reply) pair becomes tokens: the one format training and sampling share.

Training and sampling must agree on how a prompt is framed, or the adapter learns one format
and is evaluated on another. Both go through :func:`encode_prompt` / :func:`encode_reply`
with the same :class:`PromptFormat` (the adapter's training config carries it, and
``generations`` reads it back from there).

Two kinds:

- ``plain``: ``"Tweet: {prompt}\\nReply:"`` then ``" " + reply`` and EOS, with the tokenizer's
  own special prefix (the built-in default's format);
- ``chat``: the model's own chat template (``tokenizer.apply_chat_template``), as the
  researchers' trainer did with Qwen3: one user message, the instruction text with the tweet
  in it, the generation prompt, ``template_kwargs`` such as ``enable_thinking=False``; the
  reply is the assistant turn's content and its end-of-turn marker. Prompt tokens are masked
  out of the labels (``PairCollator``), so only the reply is learned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

PROMPT_TEMPLATE = "Tweet: {prompt}\nReply:"
RESEARCHERS_INSTRUCTION = "Generate an engaging Twitter reply to this tweet:\n\n{prompt}\n\nReply:"
PROMPT_FORMATS = ("plain", "chat")
# ChatML, the family of Qwen3's template, with its enable_thinking switch: the built-in
# tokenizer gets it, so the chat code path runs on the offline default too.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
CHATML_SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>")


def format_prompt(prompt: str, template: str = PROMPT_TEMPLATE) -> str:
    return template.format(prompt=prompt.strip())


def format_reply(reply: str) -> str:
    """The continuation the model is trained to produce after ``format_prompt``."""
    return " " + reply.strip()


@dataclass(frozen=True)
class PromptFormat:
    kind: str = "plain"
    instruction: str = RESEARCHERS_INSTRUCTION  # chat only: the user message, {prompt} = the tweet
    template_kwargs: dict = field(default_factory=dict)  # chat only: e.g. {"enable_thinking": False}
    system: str | None = None  # chat only: an optional system message

    def __post_init__(self) -> None:
        if self.kind not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {self.kind!r}")
        if self.kind == "chat" and "{prompt}" not in self.instruction:
            raise ValueError(f"prompt_instruction must contain '{{prompt}}' (where the tweet goes), got "
                             f"{self.instruction!r}")

    def messages(self, prompt: str, reply: str | None = None) -> list[dict]:
        out = [{"role": "system", "content": self.system}] if self.system else []
        out.append({"role": "user", "content": self.instruction.format(prompt=prompt.strip())})
        if reply is not None:
            out.append({"role": "assistant", "content": reply.strip()})
        return out


PLAIN = PromptFormat()


def _chat_text(tokenizer, fmt: PromptFormat, prompt: str, reply: str | None) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"prompt_format='chat' needs a tokenizer with a chat template; "
                         f"{type(tokenizer).__name__} has none (use prompt_format='plain')")
    return tokenizer.apply_chat_template(fmt.messages(prompt, reply), tokenize=False,
                                         add_generation_prompt=reply is None, **fmt.template_kwargs)


def frame_prompt(tokenizer, prompt: str, fmt: PromptFormat = PLAIN) -> str:
    """The prompt's text as the model sees it: the plain template, or the rendered chat turn
    (with the generation prompt). Tokenize it with ``add_special_tokens=fmt.kind == "plain"``:
    a chat template writes its own special tokens."""
    if fmt.kind == "plain":
        return format_prompt(prompt)
    return _chat_text(tokenizer, fmt, prompt, None)


def encode_prompt(tokenizer, prompt: str, fmt: PromptFormat = PLAIN) -> list[int]:
    """Token ids of the framed prompt, ready for the reply to follow."""
    text = frame_prompt(tokenizer, prompt, fmt)
    return list(tokenizer(text, add_special_tokens=fmt.kind == "plain")["input_ids"])


def stored_prompt_format(train_config: Mapping | None) -> PromptFormat:
    """The format an adapter was trained with, from its stored training config (a
    ``lora_checkpoints.train_config`` mapping); rows written before formats existed are plain."""
    values = dict(train_config or {})
    return PromptFormat(values.get("prompt_format", "plain"),
                        values.get("prompt_instruction", RESEARCHERS_INSTRUCTION),
                        dict(values.get("chat_template_kwargs") or {}),
                        values.get("system_prompt"))


def end_of_turn(tokenizer, fmt: PromptFormat) -> str:
    """What the chat template writes after an assistant message's content (e.g. ``<|im_end|>``)."""
    marker = "\x00polydag-reply\x00"
    full = _chat_text(tokenizer, fmt, "x", marker)
    return full[full.index(marker) + len(marker):].rstrip()


def encode_reply(tokenizer, reply: str, fmt: PromptFormat = PLAIN) -> list[int]:
    """Token ids of the reply the model should produce after :func:`encode_prompt`, with the
    token that ends it (EOS, or the chat template's end-of-turn)."""
    if fmt.kind == "plain":
        ids = list(tokenizer(format_reply(reply), add_special_tokens=False)["input_ids"])
        return ids + [tokenizer.eos_token_id]
    return list(tokenizer(reply.strip() + end_of_turn(tokenizer, fmt), add_special_tokens=False)["input_ids"])
