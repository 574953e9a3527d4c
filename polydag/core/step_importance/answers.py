"""CODI's answer text and answer extraction (no torch: shared by training, inference, summary).

CODI trains the student to say ``The answer is: N`` after the thoughts (train.py builds
``f"The answer is: {answer}"``), and test.py scores a generation by removing commas, taking
the last match of ``-?\\d+\\.?\\d*`` and comparing it as a float with the gold number.
"""

from __future__ import annotations

import re

from polydag.core.step_importance.problems import normalize_number

ANSWER_PREFIX = "The answer is: "
_NUMBER_RE = re.compile(r"-?\d+\.?\d*")


def format_answer_reply(answer: str) -> str:
    """The text the model is trained to produce after the end-of-thought token."""
    return f"{ANSWER_PREFIX}{answer}"


def extract_answer_number(text: str) -> str | None:
    """CODI's extraction: last number in ``text`` after removing commas, normalized as text
    ("7.0" -> "7"); None when the text has no number (CODI's ``float('inf')``)."""
    matches = _NUMBER_RE.findall(text.replace(",", ""))
    if not matches:
        return None
    return normalize_number(matches[-1])


def answers_equal(predicted: str | None, gold: str) -> bool:
    """CODI compares ``float(pred) == float(gold)``; None (no number) is never correct."""
    return predicted is not None and float(predicted) == float(gold)
