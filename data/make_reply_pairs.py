"""Generate ``data/reply_pairs.jsonl``: the default tweet/reply dataset of polydag, with its
ground truth.

Deterministic (seeded ``random.Random``), so the shipped file can be regenerated bit for bit:

    python data/make_reply_pairs.py            # writes data/reply_pairs.jsonl
    python data/make_reply_pairs.py --check    # exits 1 if the shipped file differs

The grammar (topics and their vocabulary, prompt templates with the intents each admits, reply
templates per intent) lives in ``polydag/core/polychromic/reply_grammar.py``, which the
ground-truth verifier parses replies with; this script only draws from it.

How a prompt and its gold replies are drawn:

- A topic (coffee, running, coding, ... 20 of them, 60 distinct prompts each:
  with 30 the built-in base saw too few prompts per topic to tell topics apart in unseen tweets,
  bench/results/default_base.json) and a prompt
  template fill a tweet with that topic's words. The template decides which reply intents the
  tweet admits (five of agree, joke, hype, ask, cheer, advise, story, disagree; e.g. "Need
  recommendations" admits advise/ask/story/agree/disagree, "Quick poll" agree/disagree/ask/
  story/joke).
- Each prompt gets 4-6 distinct gold replies. Each reply's intent is drawn, with replacement,
  from the prompt's admitted intents with Zipf weights ``1 / rank**ZIPF_EXPONENT`` (rank: the
  intent's place in ``reply_grammar.INTENTS``, agreement and jokes first, disagreement last).
  So, as among real replies, a few intents dominate the data (agree 34%, joke 23%,
  disagree 3% of the shipped pairs), and a model trained by cross-entropy learns to over-produce them: the mode
  collapse a diversity objective should undo. With Zipf weights, 10 draws from a prompt's own
  intent distribution cover on average ~78% of its admitted intents.
- The reply template of that intent is filled with the prompt's own topic words (30% of the
  time a sibling word of the same topic), so every gold reply is valid for its prompt: an
  admitted intent, on the prompt's topic. Replies are 4-25 words.

Fields: ``id``, ``prompt``, ``reply``, ``intent`` (the reply's), ``topic`` (the prompt's, which
is every gold reply's too) and ``admitted_intents`` (the prompt's, a list in INTENTS order).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

# the grammar of this checkout, whichever polydag is installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from polydag.core.polychromic.reply_grammar import (  # noqa: E402
    INTENTS,
    PROMPT_TEMPLATES,
    REPLY_TEMPLATES,
    TOPICS,
    fill,
)

SEED = 20251026
PROMPTS_PER_TOPIC = 60
MIN_REPLIES, MAX_REPLIES = 4, 6
ZIPF_EXPONENT = 1.0  # the classic Zipf law: the intent of rank r is drawn with weight 1 / r
SIBLING_WORD_RATE = 0.3  # how often a reply swaps the prompt's thing/doing for another of its topic


def intent_weight(intent: str) -> float:
    return 1.0 / (INTENTS.index(intent) + 1) ** ZIPF_EXPONENT


def _words(text: str) -> int:
    return len(text.split())


def generate(seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    rows: list[dict] = []
    for topic, vocab in TOPICS.items():
        seen_prompts: set[str] = set()
        attempts = 0
        while len(seen_prompts) < PROMPTS_PER_TOPIC:
            attempts += 1
            if attempts > 10_000:
                raise RuntimeError(f"topic {topic!r} cannot make {PROMPTS_PER_TOPIC} distinct prompts")
            emoji, emoji2 = rng.sample(vocab["emoji"], 2)
            slots = {
                "thing": rng.choice(vocab["things"]),
                "doing": rng.choice(vocab["doing"]),
                "alt": rng.choice(vocab["alt"]),
                "tag": rng.choice(vocab["tags"]),
                "emoji": emoji,
                "emoji2": emoji2,
                "n": str(rng.randint(2, 60)),
            }
            template = rng.choice(PROMPT_TEMPLATES)
            prompt = fill(template.text, slots)
            if prompt in seen_prompts:
                continue
            seen_prompts.add(prompt)
            n_replies = rng.randint(MIN_REPLIES, MAX_REPLIES)
            weights = [intent_weight(i) for i in template.admits]
            replies: dict[str, str] = {}  # reply -> intent, in drawing order
            for _ in range(1000):
                if len(replies) == n_replies:
                    break
                (intent,) = rng.choices(template.admits, weights)
                reply_slots = dict(slots)
                if rng.random() < SIBLING_WORD_RATE:
                    reply_slots["thing"] = rng.choice(vocab["things"])
                if rng.random() < SIBLING_WORD_RATE:
                    reply_slots["doing"] = rng.choice(vocab["doing"])
                reply_slots["emoji"], reply_slots["emoji2"] = rng.sample(vocab["emoji"], 2)
                reply_slots["tag"] = rng.choice(vocab["tags"])
                reply = fill(rng.choice(REPLY_TEMPLATES[intent]), reply_slots)
                if reply in replies:
                    continue  # an exact repeat is not another reply
                if not 4 <= _words(reply) <= 25:
                    raise RuntimeError(f"reply outside 4-25 words: {reply!r}")
                replies[reply] = intent
            else:
                raise RuntimeError(f"prompt {prompt!r} cannot get {n_replies} distinct replies")
            for reply, intent in replies.items():
                rows.append({"prompt": prompt, "reply": reply, "intent": intent, "topic": topic,
                             "admitted_intents": list(template.admits)})
    rng.shuffle(rows)
    return [{"id": f"rp-{i:05d}", **row} for i, row in enumerate(rows)]


def render(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("reply_pairs.jsonl"))
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing")
    args = parser.parse_args(argv)
    rows = generate(args.seed)
    text = render(rows)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else None
        if current != text:
            print(f"{args.out} differs from the generator's output (seed {args.seed})", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.write_text(text, encoding="utf-8")
    prompts = len({row["prompt"] for row in rows})
    shares = {i: sum(row["intent"] == i for row in rows) / len(rows) for i in INTENTS}
    print(f"wrote {args.out}: {len(rows)} pairs, {prompts} prompts, {len(text.encode()) / 1e6:.2f} MB; intents "
          + ", ".join(f"{i} {share:.1%}" for i, share in shares.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
