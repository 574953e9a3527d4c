"""The text format shared by training and generation.

Training and sampling must agree on how a prompt is framed, or the adapter learns one format
and is evaluated on another. Both go through these two functions.
"""

from __future__ import annotations

PROMPT_TEMPLATE = "Tweet: {prompt}\nReply:"


def format_prompt(prompt: str, template: str = PROMPT_TEMPLATE) -> str:
    return template.format(prompt=prompt.strip())


def format_reply(reply: str) -> str:
    """The continuation the model is trained to produce after ``format_prompt``."""
    return " " + reply.strip()
