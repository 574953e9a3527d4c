"""Deterministic GSM8K-format word problems with 1-6 steps (standard library only).

Each problem follows one person's stock of one kind of item through 1-6 operations (buy or
find more, give away or lose some, now and then double or triple, and in about one problem in
eight a final "each is worth N cents" multiplication whose total is usually >= 1,000 and is
then written with commas after ``####``, as GSM8K does). The solution has one line per step
with a GSM8K calculator annotation ``<<expr=result>>``, then ``#### N``.

The arithmetic is deliberately small (amounts of 1-5, running totals of at most 30) so that the
tiny offline CODI model can learn a share of the problems in a few CPU minutes. ``generate``
cycles the number of steps through 1..6 (every difficulty bucket equally populated) unless
``step_weights`` asks for another mix (the default model's training problems lean towards
short problems, which a few hundred optimizer steps can exploit).

``data/make_gsm8k_synthetic.py`` writes the shipped set with this module.
"""

from __future__ import annotations

import random
from typing import Sequence

NAMES = [
    ("Tom", "he", "his"), ("Anna", "she", "her"), ("Ben", "he", "his"), ("Mia", "she", "her"),
    ("Leo", "he", "his"), ("Zoe", "she", "her"), ("Sam", "he", "his"), ("Lily", "she", "her"),
    ("Max", "he", "his"), ("Emma", "she", "her"), ("Jack", "he", "his"), ("Nora", "she", "her"),
]
ITEMS = ["apples", "marbles", "stickers", "cookies", "pencils", "books", "stamps", "shells",
         "cards", "coins"]

MAX_TOTAL = 30          # running totals stay small
MAX_OPERAND = 5         # amounts added or removed per step
START = (2, 12)         # initial stock
MUL_PROBABILITY = 0.1   # a step doubles or triples the stock (only while it is at most 10)
CENT_VALUES = (125, 150, 200, 250)   # the final "worth" step that yields answers >= 1,000


def _with_commas(n: int) -> str:
    return f"{n:,}"


def _step(rng: random.Random, total: int, name: str, pronoun: str, item: str):
    """One operation on the running total: (question sentence, solution line, new total)."""
    if total <= MAX_TOTAL // 3 and rng.random() < MUL_PROBABILITY:
        op = "mul"
    else:
        op = rng.choice(["add", "sub"])
    if op == "sub" and total < 2:
        op = "add"
    if op == "add":
        k = rng.randint(1, MAX_OPERAND)
        new = total + k
        if new > MAX_TOTAL:
            op = "sub"
    if op == "add":
        sentence = rng.choice([
            f"{pronoun.capitalize()} buys {k} more {item}.",
            f"{pronoun.capitalize()} finds {k} more {item}.",
            f"A friend gives {name} {k} more {item}.",
        ])
        line = f"After that {name} has {total} + {k} = <<{total}+{k}={new}>>{new} {item}."
        return sentence, line, new
    if op == "sub":
        k = rng.randint(1, min(MAX_OPERAND, total))
        new = total - k
        sentence = rng.choice([
            f"{pronoun.capitalize()} gives {k} {item} to a friend.",
            f"{pronoun.capitalize()} loses {k} {item}.",
            f"{pronoun.capitalize()} sells {k} {item}.",
        ])
        line = f"After that {name} has {total} - {k} = <<{total}-{k}={new}>>{new} {item}."
        return sentence, line, new
    k = 2 if total * 3 > MAX_TOTAL or rng.random() < 0.5 else 3
    new = total * k
    word = {2: "doubles", 3: "triples"}[k]
    sentence = f"Then the number of {item} {name} has {word}."
    line = f"After that {name} has {total} * {k} = <<{total}*{k}={new}>>{new} {item}."
    return sentence, line, new


def make_problem(rng: random.Random, n_steps: int) -> dict:
    name, pronoun, possessive = rng.choice(NAMES)
    item = rng.choice(ITEMS)
    total = rng.randint(*START)
    sentences = [f"{name} has {total} {item}."]
    lines = []
    # About one in eight problems with 2+ steps end with a "worth in cents" step (a large answer).
    worth_step = n_steps >= 2 and rng.random() < 0.12
    for _ in range(n_steps - 1 if worth_step else n_steps):
        sentence, line, total = _step(rng, total, name, pronoun, item)
        sentences.append(sentence)
        lines.append(line)
    if worth_step and total > 0:
        cents = rng.choice(CENT_VALUES)
        value = total * cents
        sentences.append(f"Each of the {item} is worth {cents} cents.")
        question_end = f"How many cents are all of {possessive} {item} worth?"
        lines.append(f"They are worth {total} * {cents} = <<{total}*{cents}={value}>>{value} cents.")
        answer = value
    else:
        if worth_step:  # the stock ran out before the worth step: one more ordinary step
            sentence, line, total = _step(rng, total, name, pronoun, item)
            sentences.append(sentence)
            lines.append(line)
        question_end = f"How many {item} does {name} have now?"
        answer = total
    question = " ".join(sentences + [question_end])
    solution = "\n".join(lines) + f"\n#### {_with_commas(answer)}"
    return {"question": question, "answer": solution}


def generate(n: int, seed: int, step_weights: Sequence[float] | None = None,
             exclude: set[str] | None = None) -> list[dict]:
    """``n`` problems with unique questions (none of them in ``exclude``)."""
    rng = random.Random(seed)
    seen: set[str] = set(exclude or ())
    problems: list[dict] = []
    while len(problems) < n:
        if step_weights is None:
            n_steps = 1 + len(problems) % 6      # uniform over 1..6
        else:
            n_steps = rng.choices(range(1, len(step_weights) + 1), weights=step_weights)[0]
        problem = make_problem(rng, n_steps)
        if problem["question"] in seen:      # stable ids need unique questions
            continue
        seen.add(problem["question"])
        problems.append(problem)
    return problems
