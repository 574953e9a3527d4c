"""The ground-truth verifier of the default data, on hand-made replies and on the shipped gold."""

import polars as pl
import pytest

from polydag.core.evaluation.verifier import ground_truth_problem, verify_replies, verify_reply
from polydag.core.polychromic.reply_grammar import INTENTS, REPLY_TEMPLATES, TOPICS, fill, parse_reply
from polydag.core.polychromic.reply_pairs import load_reply_pairs

from polydag_tests.unit.test_reply_pairs import SHIPPED

# a "Need recommendations"-style prompt about dogs: advice admitted, hype not
DOGS, ADMITS = "dogs", ("agree", "ask", "advise", "story", "disagree")


def _codes(result):
    return [reason.split(":")[0] for reason in result.reasons]


def test_an_on_topic_reply_of_an_admitted_intent_passes():
    result = verify_reply("Pro tip: a snuffle mat makes walking the dog at sunrise so much easier", DOGS, ADMITS)
    assert result.passed and result.reasons == ()
    assert (result.well_formed, result.intent, result.topic) == (True, "advise", "dogs")


def test_an_off_topic_reply_fails_with_its_topic_named():
    # the failure the issue shows: a well-formed advice template filled with coding words
    result = verify_reply("Pro tip: rubber duck debugging makes pair programming with a friend so much easier",
                          DOGS, ADMITS)
    assert not result.passed and _codes(result) == ["off_topic"]
    assert (result.well_formed, result.intent, result.topic) == (True, "advise", "coding")
    assert "'coding'" in result.reasons[0] and "'dogs'" in result.reasons[0]


@pytest.mark.parametrize("text", [
    "lol idk my dog is cute",  # free text
    "Pro tip: a snuffle mat makes walking the dog at",  # a truncated template
    "Pro tip: a snuffle mat makes walking the cat at sunrise so much easier",  # a word in no vocabulary
    "Totally agree, my dog never gets old 🐶 🐶 🐶",  # trailing junk after a template
])
def test_malformed_replies_fail(text):
    result = verify_reply(text, DOGS, ADMITS)
    assert not result.passed and _codes(result) == ["malformed"]
    assert (result.well_formed, result.intent, result.topic) == (False, None, None)


def test_empty_and_whitespace_replies_fail_as_empty():
    for text in ("", "   \n "):
        result = verify_reply(text, DOGS, ADMITS)
        assert not result.passed and _codes(result) == ["empty"]


def test_slots_from_two_topics_have_an_intent_but_no_topic():
    # "a snuffle mat" is dogs, "debugging at 2am" is coding
    result = verify_reply("Pro tip: a snuffle mat makes debugging at 2am so much easier", DOGS, ADMITS)
    assert not result.passed and _codes(result) == ["mixed_topics"]
    assert (result.well_formed, result.intent, result.topic) == (False, "advise", None)


def test_an_on_topic_reply_of_an_intent_the_prompt_does_not_admit_fails():
    result = verify_reply("Yes! my dog supremacy 🐶🐶", DOGS, ADMITS)
    assert (result.well_formed, result.intent, result.topic) == (True, "hype", "dogs")
    assert not result.passed and _codes(result) == ["intent_not_admitted"]
    off_and_not_admitted = verify_reply("Yes! espresso supremacy ☕☕", DOGS, ADMITS)
    assert _codes(off_and_not_admitted) == ["off_topic", "intent_not_admitted"]


def test_a_repeated_slot_must_repeat_its_value():
    assert parse_reply("Yes! my dog supremacy 🐶🐶").well_formed
    assert not parse_reply("Yes! my dog supremacy 🐶🦴").well_formed


def test_whitespace_and_the_first_letters_case_do_not_matter():
    assert verify_reply("  pro tip:  a snuffle mat makes walking the dog at sunrise\nso much easier ", DOGS,
                        ADMITS).passed


def test_every_template_filled_from_every_topic_parses_back_to_its_intent_and_topic():
    for topic, vocab in TOPICS.items():
        slots = {"thing": vocab["things"][0], "doing": vocab["doing"][-1], "alt": vocab["alt"][1],
                 "tag": vocab["tags"][0], "emoji": vocab["emoji"][0], "emoji2": vocab["emoji"][1]}
        for intent in INTENTS:
            for template in REPLY_TEMPLATES[intent]:
                parsed = parse_reply(fill(template, slots))
                assert (parsed.well_formed, parsed.intent, parsed.topic) == (True, intent, topic), template


def test_every_shipped_gold_reply_passes_with_its_own_intent_and_topic():
    frame, _ = load_reply_pairs(SHIPPED)
    results = verify_replies(frame["reply"].to_list(), frame["topic"].to_list(), frame["admitted_intents"].to_list())
    assert all(r.passed for r in results)
    assert [r.intent for r in results] == frame["intent"].to_list()
    assert [r.topic for r in results] == frame["topic"].to_list()


def test_gold_replies_fail_against_another_prompts_topic():
    frame, _ = load_reply_pairs(SHIPPED)
    sample = frame.head(200)
    shifted = sample["topic"].shift(1, fill_value=sample["topic"][-1]).to_list()
    results = verify_replies(sample["reply"].to_list(), shifted, sample["admitted_intents"].to_list())
    for result, topic, own in zip(results, shifted, sample["topic"].to_list()):
        assert result.passed == (topic == own)


def test_the_shipped_intents_are_skewed():
    frame, _ = load_reply_pairs(SHIPPED)
    shares = frame["intent"].value_counts(normalize=True).sort("proportion", descending=True)
    ranked = shares["intent"].to_list()
    assert set(ranked) == set(INTENTS)
    # a few intents dominate: the top two carry about half the replies, the rarest under 5%
    assert shares["proportion"].head(2).sum() > 0.45 and shares["proportion"][-1] < 0.05
    assert ranked[:2] == ["agree", "joke"]


def test_ground_truth_problems_are_named():
    assert ground_truth_problem(DOGS, ADMITS) is None
    assert ground_truth_problem(None, ADMITS) == "no topic"
    assert ground_truth_problem(DOGS, None) == "no admitted_intents"
    assert ground_truth_problem(DOGS, []) == "no admitted_intents"
    assert "not one of the default grammar's topics" in ground_truth_problem("knitting", ADMITS)
    assert "['sulk']" in ground_truth_problem(DOGS, ["agree", "sulk"])


def test_lengths_must_match():
    with pytest.raises(ValueError, match="2 replies, 1 topics"):
        verify_replies(["a", "b"], [DOGS], [ADMITS, ADMITS])
