"""The ground-truth verifier of the default dataset: is a reply a valid reply to its prompt?

Quality here means *a well-formed reply of a known intent, on the prompt's topic*, judged
against the grammar the shipped data was drawn from
(:mod:`polydag.core.polychromic.reply_grammar`), not against an embedding proxy:

- :func:`polydag.core.polychromic.reply_grammar.parse_reply` gives a text's
  (well_formed, intent, topic): a reply template of one intent whose slots are all filled from
  one topic's vocabulary.
- :func:`verify_replies` compares that with the prompt's ground truth (its ``topic`` and
  ``admitted_intents`` columns). A reply passes when it is well formed, its topic is the
  prompt's topic, and its intent is one the prompt admits.

A well-formed, on-topic reply of an intent the prompt does not admit **fails** quality
(``intent_not_admitted``): the prompt template decides which kinds of reply make sense
(cheering an "Unpopular opinion" tweet, hyping a request for recommendations), the gold data
never contains them, and letting them pass would make pass@k count replies that coverage
(distinct admitted intents) does not. Every reason starts with a stable code, like the
relevance checker's (:mod:`polydag.core.evaluation.quality`):

- ``empty``: no text at all.
- ``malformed``: no reply template matches (free text, a truncated reply, a template with a
  word that is in no topic's vocabulary).
- ``mixed_topics``: a template matches but its slots come from more than one topic.
- ``off_topic``: well formed, but about another topic than the prompt's.
- ``intent_not_admitted``: well formed and on topic, of an intent the prompt does not admit.

There are no thresholds: the verifier is exact, and it was fixed before any λ > 0 sample was
looked at.
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from typing import Sequence

from polydag.core.polychromic.reply_grammar import INTENTS, TOPICS, parse_reply

CHECKER_NAME = "ground_truth"


@dataclass(frozen=True)
class GroundTruthResult:
    passed: bool
    reasons: tuple[str, ...]
    well_formed: bool
    intent: str | None  # the reply's intent under the grammar (None when no template matches)
    topic: str | None  # the reply's topic (None unless well formed)


def verify_reply(reply: str, topic: str, admitted_intents: Sequence[str]) -> GroundTruthResult:
    """Judge one reply against its prompt's ``topic`` and ``admitted_intents``."""
    parsed = parse_reply(reply)
    reasons: list[str] = []
    if parsed.problem == "empty":
        reasons.append("empty: the reply has no text")
    elif parsed.problem == "no_template":
        reasons.append("malformed: no reply template of the grammar matches")
    elif parsed.problem == "mixed_topics":
        reasons.append(f"mixed_topics: a {parsed.intent} template whose slots come from more than one topic")
    else:
        if parsed.topic != topic:
            reasons.append(f"off_topic: reply topic {parsed.topic!r} is not the prompt's topic {topic!r}")
        if parsed.intent not in admitted_intents:
            reasons.append(f"intent_not_admitted: intent {parsed.intent!r} is not among the prompt's "
                           f"admitted intents ({', '.join(admitted_intents)})")
    return GroundTruthResult(not reasons, tuple(reasons), parsed.well_formed, parsed.intent, parsed.topic)


def verify_replies(replies: Sequence[str], topics: Sequence[str],
                   admitted_intents: Sequence[Sequence[str]]) -> list[GroundTruthResult]:
    """:func:`verify_reply` for each ``replies[i]`` with its prompt's ``topics[i]`` and
    ``admitted_intents[i]``."""
    if not len(replies) == len(topics) == len(admitted_intents):
        raise ValueError(f"got {len(replies)} replies, {len(topics)} topics and {len(admitted_intents)} "
                         "admitted-intent lists")
    return [verify_reply(r, t, a) for r, t, a in zip(replies, topics, admitted_intents)]


def ground_truth_problem(topic: object, admitted_intents: object) -> str | None:
    """Why a prompt's ground truth cannot be verified against the default grammar (None if it can)."""
    if topic is None:
        return "no topic"
    if admitted_intents is None or len(admitted_intents) == 0:
        return "no admitted_intents"
    if topic not in TOPICS:
        return f"topic {topic!r} is not one of the default grammar's topics"
    unknown = sorted(set(admitted_intents) - set(INTENTS))
    if unknown:
        return f"admitted intents {unknown} are not the default grammar's intents"
    return None


def verifier_identity() -> str:
    """What a generations cache key hashes for this verifier: the grammar and the source of the
    parser and of this module, so a changed rule never reuses samples judged by the old one."""
    from polydag.core.polychromic import reply_grammar

    payload = "\n".join([reply_grammar.grammar_sha256(), inspect.getsource(reply_grammar),
                          inspect.getsource(verify_reply), inspect.getsource(ground_truth_problem)])
    return hashlib.sha256(payload.encode()).hexdigest()
