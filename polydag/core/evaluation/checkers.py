"""Which quality checker judges a λ partition's samples, and judging them.

``QualityConfig.checker`` names one of:

- ``"ground_truth"``: :mod:`polydag.core.evaluation.verifier`, the exact verifier of the default
  grammar. It needs every test prompt to carry a ``topic`` and ``admitted_intents`` of that
  grammar; otherwise it is an error naming the prompts that lack them.
- ``"relevance"``: :func:`polydag.core.evaluation.quality.check_replies`, the rule checker with
  the embedding-relevance rule (user data without ground truth).
- ``"auto"`` (default): ``ground_truth`` when the prompts carry that ground truth (the shipped
  data), else ``relevance``.
- ``"package.module:function"``: a function of the user's, called once per partition as
  ``function(prompts: list[str], replies: list[str])`` (one prompt per reply) and returning one
  :class:`~polydag.core.evaluation.quality.QualityResult` or ``bool`` per reply (a ``False``
  gets the reason ``rejected: <path>``). The path is imported when the config is validated, so a
  bad one is a config error naming what is wrong.

Whatever judges quality, the samples also get the verifier's labels (``reply_intent``,
``reply_topic``) whenever the prompts carry the default grammar's ground truth, and null labels
otherwise (then the ground-truth metrics are absent).

:attr:`ResolvedChecker.identity` goes into the generations cache key: the verifier's identity
hashes the grammar, the parser and the verifier's rules, and a function's hashes its source, so
a changed checker never reuses samples judged by the old one.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import polars as pl

from polydag.core.evaluation.quality import QualityResult

BUILTIN_CHECKERS = ("auto", "relevance", "ground_truth")
_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")

_log = logging.getLogger(__name__)


def load_checker_function(path: str) -> Callable:
    """The function named by ``"package.module:function"``; ``ValueError`` saying what is wrong."""
    if not isinstance(path, str) or not _IMPORT_PATH.match(path):
        raise ValueError(f"checker must be one of {BUILTIN_CHECKERS} or an import path "
                         f"'package.module:function', got {path!r}")
    module_name, function_name = path.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module raises while importing
        raise ValueError(f"checker {path!r}: cannot import module {module_name!r} "
                         f"({type(exc).__name__}: {exc})") from exc
    function = getattr(module, function_name, None)
    if function is None:
        raise ValueError(f"checker {path!r}: module {module_name!r} has no attribute {function_name!r}")
    if not callable(function):
        raise ValueError(f"checker {path!r}: {function_name!r} is a {type(function).__name__}, not a function")
    return function


def checker_problem(value: object) -> str | None:
    """What is wrong with a ``QualityConfig.checker`` value (None when it is fine)."""
    if value in BUILTIN_CHECKERS:
        return None
    try:
        load_checker_function(value)  # type: ignore[arg-type]
    except ValueError as exc:
        return str(exc)
    return None


def ground_truth_gaps(prompts: pl.DataFrame) -> list[tuple[str, str]]:
    """(prompt_id, problem) for each prompt whose ground truth the verifier cannot use."""
    from polydag.core.evaluation.verifier import ground_truth_problem

    topics = prompts["topic"].to_list() if "topic" in prompts.columns else [None] * prompts.height
    admitted = (prompts["admitted_intents"].to_list() if "admitted_intents" in prompts.columns
                else [None] * prompts.height)
    gaps = []
    for pid, topic, intents in zip(prompts["prompt_id"].to_list(), topics, admitted):
        problem = ground_truth_problem(topic, intents)
        if problem is not None:
            gaps.append((str(pid), problem))
    return gaps


@dataclass(frozen=True)
class ResolvedChecker:
    name: str  # "ground_truth" | "relevance" | the import path
    identity: str  # what the generations cache key hashes
    has_ground_truth: bool  # the prompts carry the default grammar's ground truth: label the samples
    needs_embedder: bool
    function: Callable | None = field(default=None, compare=False)


def resolve_checker(cfg, prompts: pl.DataFrame, *, logger: logging.Logger | None = None) -> ResolvedChecker:
    """The checker ``cfg.checker`` (a :class:`~polydag.core.evaluation.config.QualityConfig`)
    selects for ``prompts`` (the evaluation prompts frame)."""
    from polydag.core.evaluation.verifier import verifier_identity

    logger = logger or _log
    gaps = ground_truth_gaps(prompts) if prompts.height else [("-", "no prompts")]
    has_truth = not gaps
    name = cfg.checker
    if name == "auto":
        name = "ground_truth" if has_truth else "relevance"
        why = ("every test prompt carries a topic and admitted intents of the default grammar" if has_truth
               else f"{len(gaps)} of {prompts.height} test prompts have no usable ground truth "
                    f"(e.g. {gaps[0][0]}: {gaps[0][1]}); ground-truth labels and metrics are absent")
        logger.info("quality checker auto -> %s: %s", name, why)
    if name == "ground_truth":
        if not has_truth:
            raise ValueError(
                f"QualityConfig.checker='ground_truth' needs every test prompt to carry a topic and "
                f"admitted_intents of the default grammar; {len(gaps)} of {prompts.height} do not (e.g. prompt "
                f"{gaps[0][0]}: {gaps[0][1]}). Use checker='relevance' or 'auto' for such data.")
        return ResolvedChecker(name, f"ground_truth:{verifier_identity()}", True, False)
    if name == "relevance":
        return ResolvedChecker(name, "relevance", has_truth, cfg.min_relevance is not None)
    function = load_checker_function(name)
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):  # built-ins and functions made at run time have no source file
        source = ""
    identity = f"function:{name}:{hashlib.sha256(source.encode()).hexdigest()}"
    return ResolvedChecker(name, identity, has_truth, False, function)


@dataclass
class Judgement:
    """One entry per sample."""

    passed: list[bool]
    reasons: list[str]  # ';'-joined reasons, empty when passed
    reply_intent: list[str | None]
    reply_topic: list[str | None]


def judge_samples(checker: ResolvedChecker, cfg, prompts: Sequence[str], replies: Sequence[str], *,
                  topics: Sequence[str | None] | None = None,
                  admitted_intents: Sequence[Sequence[str] | None] | None = None,
                  embedder=None) -> Judgement:
    """Judge ``replies[i]`` against ``prompts[i]`` (with that prompt's ground truth, when the
    checker has it) and label each reply with the verifier's intent and topic."""
    from polydag.core.evaluation.quality import check_replies
    from polydag.core.evaluation.verifier import verify_replies

    n = len(replies)
    if len(prompts) != n:
        raise ValueError(f"got {len(prompts)} prompts but {n} replies")
    verified = None
    if checker.has_ground_truth:
        if topics is None or admitted_intents is None or len(topics) != n or len(admitted_intents) != n:
            raise ValueError("a checker with ground truth needs one topic and admitted-intent list per reply")
        verified = verify_replies(replies, topics, admitted_intents)
    if checker.name == "ground_truth":
        results = [QualityResult(v.passed, v.reasons) for v in verified]
    elif checker.name == "relevance":
        results = check_replies(prompts, replies, cfg, embedder=embedder)
    else:
        results = _call_function(checker, list(prompts), list(replies))
    labels = verified or [None] * n
    return Judgement(
        passed=[r.passed for r in results],
        reasons=[";".join(r.reasons) for r in results],
        reply_intent=[v.intent if v else None for v in labels],
        reply_topic=[v.topic if v else None for v in labels],
    )


def _call_function(checker: ResolvedChecker, prompts: list[str], replies: list[str]) -> list[QualityResult]:
    out = checker.function(prompts, replies)
    out = list(out) if out is not None else None
    if out is None or len(out) != len(replies):
        raise ValueError(f"checker {checker.name!r} returned {'nothing' if out is None else len(out)} results "
                         f"for {len(replies)} replies (it must return one per reply)")
    results = []
    for i, item in enumerate(out):
        if isinstance(item, QualityResult):
            results.append(item)
        elif isinstance(item, (bool, np.bool_)):
            results.append(QualityResult(bool(item), () if item else (f"rejected: {checker.name}",)))
        else:
            raise ValueError(f"checker {checker.name!r} returned {type(item).__name__} {item!r:.60} for reply {i}; "
                             "it must return a QualityResult or a bool per reply")
    return results
