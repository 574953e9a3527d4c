"""Which quality checker judges the samples (QualityConfig.checker), with and without ground truth."""

import json
import logging

import polars as pl
import pytest

from polydag.core.evaluation.checkers import judge_samples, resolve_checker
from polydag.core.evaluation.config import GenerationConfig, QualityConfig
from polydag.core.evaluation.generation import evaluation_prompts, partition_cache_key
from polydag.core.evaluation.quality import QualityResult
from polydag.core.polychromic.config import ReplyPairsConfig
from polydag.core.polychromic.reply_pairs import load_and_split, load_reply_pairs, split_reply_pairs

from polydag_tests.unit.test_reply_pairs import SHIPPED

ADMITS = ["agree", "ask", "advise", "story", "disagree"]
ON_TOPIC = "Pro tip: a snuffle mat makes walking the dog at sunrise so much easier"
OFF_TOPIC = "Pro tip: rubber duck debugging makes pair programming with a friend so much easier"
MALFORMED = "lol idk my dog is cute"
NO_RELEVANCE = dict(min_relevance=None)  # the relevance rule would need the embedding model


def _prompts(with_truth: bool) -> pl.DataFrame:
    frame = {"prompt_id": ["p0", "p1"], "prompt": ["Need recommendations for my dog #dogs", "Debugging all night"]}
    if with_truth:
        frame |= {"topic": ["dogs", "coding"], "admitted_intents": [ADMITS, ADMITS]}
    return pl.DataFrame(frame)


# a user's checker, named by import path in the tests below
def short_replies_pass(prompts, replies):
    return [len(r) < 30 for r in replies]


def returns_too_few(prompts, replies):
    return [True]


def test_auto_picks_the_verifier_for_prompts_with_ground_truth():
    checker = resolve_checker(QualityConfig(), _prompts(True))
    assert (checker.name, checker.has_ground_truth, checker.needs_embedder) == ("ground_truth", True, False)
    judged = judge_samples(checker, QualityConfig(), ["t0", "t0", "t0"], [ON_TOPIC, OFF_TOPIC, MALFORMED],
                           topics=["dogs"] * 3, admitted_intents=[ADMITS] * 3)
    assert judged.passed == [True, False, False]
    assert judged.reasons[0] == "" and judged.reasons[1].startswith("off_topic:")
    assert judged.reasons[2].startswith("malformed:")
    assert judged.reply_intent == ["advise", "advise", None]
    assert judged.reply_topic == ["dogs", "coding", None]


def test_without_ground_truth_auto_falls_back_to_relevance_and_says_the_labels_are_absent(caplog):
    cfg = QualityConfig(**NO_RELEVANCE)
    with caplog.at_level(logging.INFO):
        checker = resolve_checker(cfg, _prompts(False))
    assert (checker.name, checker.has_ground_truth, checker.needs_embedder) == ("relevance", False, False)
    assert "2 of 2 test prompts have no usable ground truth" in caplog.text and "absent" in caplog.text
    judged = judge_samples(checker, cfg, ["Need recommendations for my dog"] * 2, [ON_TOPIC, "ok"])
    assert judged.passed == [True, False] and judged.reasons[1].startswith("too_short")
    assert judged.reply_intent == [None, None] and judged.reply_topic == [None, None]
    assert resolve_checker(QualityConfig(), _prompts(False)).needs_embedder  # min_relevance is on by default


def test_relevance_on_ground_truth_data_still_labels_the_samples():
    cfg = QualityConfig(checker="relevance", **NO_RELEVANCE)
    checker = resolve_checker(cfg, _prompts(True))
    judged = judge_samples(checker, cfg, ["tweet"] * 2, [OFF_TOPIC, MALFORMED], topics=["dogs"] * 2,
                           admitted_intents=[ADMITS] * 2)
    assert judged.passed == [True, True]  # the rule checker knows nothing of topics
    assert judged.reply_topic == ["coding", None]


def test_the_verifier_refuses_prompts_without_ground_truth():
    with pytest.raises(ValueError, match="2 of 2 do not .*prompt p0: no topic"):
        resolve_checker(QualityConfig(checker="ground_truth"), _prompts(False))
    unknown = _prompts(True).with_columns(topic=pl.Series(["dogs", "knitting"]))
    with pytest.raises(ValueError, match="1 of 2 do not .*prompt p1: topic 'knitting'"):
        resolve_checker(QualityConfig(checker="ground_truth"), unknown)
    assert resolve_checker(QualityConfig(**NO_RELEVANCE), unknown).name == "relevance"


def test_a_checker_function_by_import_path():
    path = f"{__name__}:short_replies_pass"
    cfg = QualityConfig(checker=path, **NO_RELEVANCE)
    checker = resolve_checker(cfg, _prompts(False))
    assert checker.name == path and checker.identity.startswith(f"function:{path}:")
    judged = judge_samples(checker, cfg, ["a", "b"], ["short one", "a reply that is clearly longer than that"])
    assert judged.passed == [True, False] and judged.reasons == ["", f"rejected: {path}"]

    bad = resolve_checker(QualityConfig(checker=f"{__name__}:returns_too_few"), _prompts(False))
    with pytest.raises(ValueError, match="returned 1 results for 2 replies"):
        judge_samples(bad, cfg, ["a", "b"], ["x", "y"])


def test_a_checker_function_may_return_quality_results(monkeypatch):
    monkeypatch.setattr(__import__(__name__, fromlist=["x"]), "short_replies_pass",
                        lambda prompts, replies: [QualityResult(False, ("mine: no",))] * len(replies))
    cfg = QualityConfig(checker=f"{__name__}:short_replies_pass", **NO_RELEVANCE)
    judged = judge_samples(resolve_checker(cfg, _prompts(False)), cfg, ["a"], ["x"])
    assert judged.passed == [False] and judged.reasons == ["mine: no"]


@pytest.mark.parametrize("value, message", [
    ("embedding", "must be one of ('auto', 'relevance', 'ground_truth') or an import path"),
    ("polydag_no_such_module:f", "cannot import module 'polydag_no_such_module'"),
    ("polydag.core.evaluation.verifier:no_such_function", "has no attribute 'no_such_function'"),
    ("polydag.core.evaluation.verifier:CHECKER_NAME", "is a str, not a function"),
])
def test_a_bad_checker_is_a_config_error_naming_the_field(value, message):
    with pytest.raises(ValueError, match="checker") as info:
        QualityConfig(checker=value)
    assert message in str(info.value)


def test_the_checker_identity_is_part_of_the_cache_key():
    checkpoint = {"adapter_sha256": "a" * 64, "base_model_sha256": "b" * 64, "train_config": "{}"}
    prompts, gen = _prompts(True), GenerationConfig()
    keys = {partition_cache_key(checkpoint, prompts, gen, QualityConfig(), device="cpu", dtype="float32",
                                checker_identity=identity) for identity in ("ground_truth:1", "ground_truth:2")}
    assert len(keys) == 2


def test_the_shipped_data_keeps_its_ground_truth_through_the_split():
    pairs, _ = load_and_split(SHIPPED, ReplyPairsConfig())
    assert {"intent", "topic", "admitted_intents"} <= set(pairs.columns)
    assert pairs["intent"].null_count() == pairs["topic"].null_count() == 0
    prompts = evaluation_prompts(pairs)
    assert prompts.columns == ["prompt_id", "prompt", "topic", "admitted_intents"] and prompts.height == 50
    assert resolve_checker(QualityConfig(), prompts).name == "ground_truth"


def test_user_data_without_ground_truth_columns_loads_and_evaluates_with_relevance(tmp_path):
    path = tmp_path / "user.jsonl"
    rows = [{"prompt": f"tweet {i // 4}", "reply": f"reply {i} to it"} for i in range(40)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    frame, skipped = load_reply_pairs(path)
    assert skipped == 0 and frame.columns == ["id", "prompt", "reply"]
    prompts = evaluation_prompts(split_reply_pairs(frame, test_fraction=0.3))
    assert prompts.columns == ["prompt_id", "prompt"]
    assert resolve_checker(QualityConfig(**NO_RELEVANCE), prompts).has_ground_truth is False


def test_ground_truth_from_csv_lists_and_disagreement_within_a_prompt(tmp_path):
    from polydag.core.polychromic.reply_pairs import DatasetError

    path = tmp_path / "gt.csv"
    pl.DataFrame({"prompt": ["p", "p", "q"], "reply": ["a", "b", "c"], "intent": ["agree", "", "joke"],
                  "topic": ["dogs", "dogs", "cats"],
                  "admitted_intents": ["agree;joke", "agree, joke", "joke|cheer"]}).write_csv(path)
    frame, _ = load_reply_pairs(path)
    assert frame["intent"].to_list() == ["agree", None, "joke"]
    assert frame["admitted_intents"].to_list() == [["agree", "joke"], ["agree", "joke"], ["joke", "cheer"]]
    pl.DataFrame({"prompt": ["p", "p"], "reply": ["a", "b"], "topic": ["dogs", "cats"]}).write_csv(path)
    with pytest.raises(DatasetError, match="'cats' disagrees with 'dogs'"):
        load_reply_pairs(path)
