"""The grammar of the default dataset: topics, prompt templates, reply templates, and a parser.

One place holds the vocabulary and the templates that ``data/make_reply_pairs.py`` draws the
shipped ``data/reply_pairs.jsonl`` from and that the ground-truth verifier
(:mod:`polydag.core.evaluation.verifier`) parses replies against, so the two can never drift.

- :data:`TOPICS`: 20 topics, each with slot vocabularies (``things``, ``doing``, ``alt``,
  ``tags``, ``emoji``). No string belongs to two topics (checked at import), so a slot value
  names its topic.
- :data:`INTENTS`: the eight reply intents, in the order of how common they are among real
  replies (the generator's Zipf ranks).
- :data:`PROMPT_TEMPLATES`: tweet templates, each with the intents a reply to it may have
  (:attr:`PromptTemplate.admits`). A "Need recommendations" tweet admits advice, questions,
  stories, agreement and disagreement but not hype; a "Quick poll" admits agreement,
  disagreement, questions, stories and jokes but not cheering. Every template admits five of
  the eight intents.
- :data:`REPLY_TEMPLATES`: four templates per intent with slots ``{thing}``, ``{doing}``,
  ``{alt}``, ``{tag}``, ``{emoji}``, ``{emoji2}`` filled from one topic.
- :func:`parse_reply`: a text's (well_formed, intent, topic) under this grammar. A text is
  well formed when it is a reply template (whitespace collapsed, first letter either case)
  whose slots are all filled from ONE topic's vocabulary. A template with slots from several
  topics has an intent but no topic (``mixed_topics``).

What it doesn't know: which intents a *prompt* admits (that travels with the data, as the
``admitted_intents`` column), or how often each intent is drawn (the generator's weights).
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from dataclasses import dataclass
from functools import lru_cache

# Ranked by how common each kind of reply is on social media (agreement and jokes dominate,
# disagreement is rare); data/make_reply_pairs.py gives rank r the weight 1 / r**s.
INTENTS = ("agree", "joke", "hype", "ask", "cheer", "advise", "story", "disagree")

# One entry per topic. ``things`` read naturally after "about"/"is"; ``doing`` are gerund
# phrases ("I love {doing}"); ``alt`` is something related to suggest instead.
TOPICS: dict[str, dict[str, list[str]]] = {
    "coffee": {
        "things": ["cold brew", "oat milk latte", "espresso", "the new cafe downtown", "decaf", "pour over coffee", "my french press", "iced americano"],
        "doing": ["brewing coffee at home", "trying every latte in town", "cutting back on caffeine", "grinding my own beans", "drinking coffee after 5pm"],
        "alt": ["a cortado", "cold brew concentrate", "a light roast from Ethiopia", "matcha for a week", "the aeropress"],
        "tags": ["#coffee", "#caffeine", "#coffeelover"],
        "emoji": ["☕", "😴", "🤎"],
    },
    "running": {
        "things": ["my first half marathon", "morning runs", "the new trail shoes", "interval training", "the park loop", "long Sunday runs", "my running playlist"],
        "doing": ["running before work", "training for a 10k", "running in the rain", "chasing a new personal best", "doing hill repeats"],
        "alt": ["a slow recovery jog", "a rest day", "strides after easy runs", "a trail run", "foam rolling"],
        "tags": ["#running", "#runnerslife", "#marathontraining"],
        "emoji": ["🏃", "👟", "💪"],
    },
    "coding": {
        "things": ["this one bug", "my side project", "Python type hints", "code review", "the new framework", "tabs versus spaces", "legacy code"],
        "doing": ["debugging at 2am", "learning Rust", "refactoring old code", "writing unit tests", "pair programming with a friend"],
        "alt": ["rubber duck debugging", "writing the test first", "a short walk away from the screen", "reading the docs again", "git bisect"],
        "tags": ["#coding", "#programming", "#devlife"],
        "emoji": ["💻", "🐛", "🤓"],
    },
    "cats": {
        "things": ["my cat", "the new kitten", "cat naps", "the scratching post", "cat videos", "my cat's judging stare", "the cardboard box"],
        "doing": ["adopting a second cat", "working with a cat on my keyboard", "buying cat toys nobody uses", "waking up to a cat on my face", "training my cat to high five"],
        "alt": ["a window perch", "a laser pointer session", "an empty box", "catnip", "a puzzle feeder"],
        "tags": ["#cats", "#catsoftwitter", "#caturday"],
        "emoji": ["🐱", "😹", "🐾"],
    },
    "dogs": {
        "things": ["my dog", "the new puppy", "dog park drama", "my dog's zoomies", "the squeaky toy", "puppy training class", "long dog walks"],
        "doing": ["walking the dog at sunrise", "teaching my puppy to sit", "bathing a muddy dog", "fostering rescue dogs", "hiking with my dog"],
        "alt": ["a sniff walk", "a snuffle mat", "a frozen kong", "a puppy playdate", "clicker training"],
        "tags": ["#dogs", "#dogsoftwitter", "#puppylove"],
        "emoji": ["🐶", "🦴", "🐕"],
    },
    "football": {
        "things": ["last night's match", "our new striker", "the referee", "penalty shootouts", "the transfer window", "our defence", "the derby"],
        "doing": ["watching the match at the pub", "playing five a side on Tuesdays", "checking transfer rumours all day", "coaching the kids team", "rewatching the highlights"],
        "alt": ["a calmer seat away from the ultras", "the full replay", "the women's league", "a fantasy football team", "the lower leagues"],
        "tags": ["#football", "#matchday", "#COYS"],
        "emoji": ["⚽", "🥅", "😤"],
    },
    "music": {
        "things": ["the new album", "this song", "vinyl records", "live concerts", "my guitar", "the festival lineup", "my road trip playlist"],
        "doing": ["learning guitar", "going to concerts alone", "making playlists for every mood", "singing in the car", "listening to jazz while working"],
        "alt": ["the live version", "the acoustic session", "their first album", "a small venue show", "a lofi playlist"],
        "tags": ["#music", "#nowplaying", "#newmusic"],
        "emoji": ["🎶", "🎸", "🎧"],
    },
    "movies": {
        "things": ["the new sci-fi movie", "that plot twist", "movie theater popcorn", "the sequel", "subtitles", "the director's cut", "three hour movies"],
        "doing": ["watching old horror movies", "going to the cinema alone", "rewatching my comfort movie", "binge watching the trilogy", "reading the book before the movie"],
        "alt": ["the original", "a late night screening", "the documentary about it", "the director's earlier work", "a double feature"],
        "tags": ["#movies", "#movienight", "#cinema"],
        "emoji": ["🎬", "🍿", "😱"],
    },
    "cooking": {
        "things": ["homemade pasta", "my sourdough starter", "meal prep", "the cast iron pan", "spicy ramen", "this new recipe", "garlic"],
        "doing": ["cooking dinner from scratch", "baking bread every weekend", "trying to eat more vegetables", "making soup for the week", "learning to cook curry"],
        "alt": ["a pinch of salt in the water", "roasting the vegetables first", "more garlic", "a dutch oven", "fresh herbs"],
        "tags": ["#cooking", "#homecooking", "#foodie"],
        "emoji": ["🍝", "🧄", "🔥"],
    },
    "gardening": {
        "things": ["my tomato plants", "the vegetable patch", "houseplants", "my compost pile", "the basil", "this year's harvest", "my balcony garden"],
        "doing": ["growing tomatoes from seed", "repotting every plant I own", "pulling weeds all morning", "starting a herb garden", "saving seeds for next year"],
        "alt": ["mulching the beds", "watering in the morning", "companion planting", "a raised bed", "a bit of fish fertiliser"],
        "tags": ["#gardening", "#plantparent", "#growyourown"],
        "emoji": ["🌱", "🍅", "🌻"],
    },
    "travel": {
        "things": ["my trip to Japan", "airport security", "hostels", "the night train", "travel insurance", "packing light", "window seats"],
        "doing": ["traveling solo", "planning a road trip", "backpacking through Europe", "learning phrases before a trip", "booking flights at midnight"],
        "alt": ["a carry on only trip", "the slow train", "a city in the off season", "a local food tour", "a long weekend nearby"],
        "tags": ["#travel", "#wanderlust", "#traveltuesday"],
        "emoji": ["✈️", "🌍", "🧳"],
    },
    "studying": {
        "things": ["finals week", "my thesis", "group projects", "the library", "flashcards", "the statistics exam", "online lectures"],
        "doing": ["studying all night", "writing my thesis", "cramming for finals", "making flashcards for everything", "studying with lofi beats"],
        "alt": ["the pomodoro method", "a study group", "sleeping before the exam", "practice tests", "explaining it to a friend"],
        "tags": ["#studytwt", "#finals", "#gradschool"],
        "emoji": ["📚", "😩", "✏️"],
    },
    "gaming": {
        "things": ["the new RPG", "this boss fight", "ranked mode", "the latest patch", "retro consoles", "co-op games", "open world games"],
        "doing": ["gaming until sunrise", "speedrunning my favourite game", "playing co-op with my sister", "grinding for loot", "replaying childhood games"],
        "alt": ["a cozy farming game", "a short indie game", "the hard difficulty", "a break before the next attempt", "local co-op"],
        "tags": ["#gaming", "#gamer", "#indiegames"],
        "emoji": ["🎮", "👾", "🕹️"],
    },
    "books": {
        "things": ["this fantasy series", "my to read pile", "audiobooks", "the library sale", "the book club pick", "poetry", "the ending of this novel"],
        "doing": ["reading before bed", "finishing a book a week", "rereading my favourite series", "reading on the train", "annotating my books"],
        "alt": ["the audiobook version", "a short story collection", "the author's debut", "a classic you skipped in school", "a graphic novel"],
        "tags": ["#books", "#booktwt", "#amreading"],
        # 🔖 rather than 📚, which is studying's: no string may name two topics
        "emoji": ["📖", "🔖", "🤯"],
    },
    "space": {
        "things": ["the rocket launch", "the meteor shower", "the new telescope images", "Mars missions", "the full moon", "black holes", "the northern lights"],
        "doing": ["stargazing in the countryside", "watching launches live", "reading about black holes", "photographing the moon", "building a backyard telescope"],
        "alt": ["a dark sky park", "a stargazing app", "binoculars", "the planetarium", "a late night launch stream"],
        "tags": ["#space", "#astronomy", "#stargazing"],
        "emoji": ["🚀", "🌌", "🔭"],
    },
    "cycling": {
        "things": ["my new road bike", "bike lanes", "the hill climb", "commuting by bike", "gravel rides", "flat tyres", "the cycling club"],
        "doing": ["biking to work", "riding a century", "fixing my own bike", "cycling in the city", "training for a sportive"],
        "alt": ["tubeless tyres", "a slower group ride", "a proper bike fit", "a gravel route", "lower gears"],
        "tags": ["#cycling", "#bikecommute", "#roadcycling"],
        "emoji": ["🚴", "🚲", "🌄"],
    },
    "weather": {
        "things": ["this rain", "the heatwave", "the first snow", "foggy mornings", "the storm tonight", "autumn weather", "the wind"],
        "doing": ["walking in the rain", "working through a heatwave", "waiting for spring", "building a snowman", "watching the storm from the window"],
        "alt": ["a good rain jacket", "a cold shower", "hot chocolate", "a cozy blanket", "a walk before the clouds roll in"],
        "tags": ["#weather", "#rainyday", "#heatwave"],
        "emoji": ["🌧️", "☀️", "❄️"],
    },
    "pizza": {
        "things": ["pineapple on pizza", "deep dish pizza", "homemade pizza dough", "the pizza place downtown", "cold pizza for breakfast", "thin crust", "extra cheese"],
        "doing": ["making pizza from scratch", "ordering pizza every Friday", "trying every pizzeria in town", "stretching dough by hand", "eating pizza at midnight"],
        "alt": ["a wood fired oven", "a margherita", "hot honey on top", "a pizza stone", "a long cold ferment for the dough"],
        # #pizzalover rather than #foodie, which is cooking's: no string may name two topics
        "tags": ["#pizza", "#pizzalover", "#pizzanight"],
        "emoji": ["🍕", "🧀", "🤤"],
    },
    "photography": {
        "things": ["my new camera", "film photography", "golden hour", "street photography", "this sunset photo", "my old lens", "photo editing"],
        "doing": ["shooting film again", "taking photos every day", "learning manual mode", "editing photos all night", "photographing strangers"],
        "alt": ["a fifty millimetre lens", "shooting in black and white", "a photo walk", "a cheap film camera", "underexposing a little"],
        "tags": ["#photography", "#filmisnotdead", "#photooftheday"],
        "emoji": ["📷", "🌅", "🎞️"],
    },
    "work": {
        "things": ["Monday meetings", "working from home", "my inbox", "the office coffee", "the four day week", "my standing desk", "video calls"],
        "doing": ["working from home", "answering emails at midnight", "starting a new job", "asking for a raise", "taking a real lunch break"],
        "alt": ["blocking focus time", "a proper lunch away from the desk", "turning off notifications", "a walking meeting", "a clear end to the workday"],
        "tags": ["#mondaymotivation", "#wfh", "#worklife"],
        "emoji": ["💼", "🙃", "📅"],
    },
}

# Which vocabulary fills which template slot.
SLOT_VOCABULARY = {"thing": "things", "doing": "doing", "alt": "alt", "tag": "tags", "emoji": "emoji",
                   "emoji2": "emoji"}


@dataclass(frozen=True)
class PromptTemplate:
    text: str  # slots as in the reply templates, plus {n} (a number)
    admits: tuple[str, ...]  # the intents a reply to such a tweet may have (INTENTS order)


def _admits(*intents: str) -> tuple[str, ...]:
    return tuple(i for i in INTENTS if i in intents)


PROMPT_TEMPLATES: tuple[PromptTemplate, ...] = (
    PromptTemplate("Just finished {doing} and honestly I feel amazing {emoji}",
                   _admits("cheer", "hype", "ask", "story", "joke")),
    PromptTemplate("Is it just me or is {thing} getting worse lately? {tag}",
                   _admits("agree", "disagree", "advise", "story", "joke")),
    PromptTemplate("Hot take: {thing} is the best thing ever and I will not be taking questions {emoji}",
                   _admits("agree", "disagree", "joke", "hype", "story")),
    PromptTemplate("Need recommendations. Anyone tried {alt}? {tag}",
                   _admits("advise", "ask", "story", "agree", "disagree")),
    PromptTemplate("Day {n} of {doing}. Still going strong {emoji} {tag}",
                   _admits("cheer", "hype", "ask", "story", "joke")),
    PromptTemplate("Who else is {doing} this weekend? {tag}",
                   _admits("agree", "story", "hype", "ask", "joke")),
    PromptTemplate("Can't stop thinking about {thing}. Send help {emoji}",
                   _admits("joke", "agree", "story", "advise", "cheer")),
    PromptTemplate("Unpopular opinion: {thing} is overrated {tag}",
                   _admits("agree", "disagree", "joke", "story", "ask")),
    PromptTemplate("Early morning thoughts: {doing} hits different {emoji}",
                   _admits("agree", "hype", "story", "ask", "cheer")),
    PromptTemplate("Tried {alt} for the first time today. Not sure how I feel {emoji}",
                   _admits("advise", "ask", "story", "cheer", "disagree")),
    PromptTemplate("Okay I need to talk about {thing} {emoji} {emoji2}",
                   _admits("agree", "ask", "joke", "hype", "story")),
    PromptTemplate("Week {n} of {doing} and I have questions {tag}",
                   _admits("advise", "ask", "story", "cheer", "joke")),
    PromptTemplate("Nobody warned me that {doing} would be this hard {emoji}",
                   _admits("cheer", "advise", "story", "agree", "joke")),
    PromptTemplate("{thing} appreciation post {emoji} {tag}",
                   _admits("agree", "hype", "cheer", "joke", "story")),
    PromptTemplate("Quick poll: {thing}, yes or no? {tag}",
                   _admits("agree", "disagree", "ask", "story", "joke")),
)

# Reply intents: each intent's templates differ in kind from the other intents', not just in
# wording.
REPLY_TEMPLATES: dict[str, list[str]] = {
    "agree": [
        "Totally agree, {thing} never gets old {emoji}",
        "Same, {thing} is a whole mood for me",
        "This is so true. {thing} has been on my mind all week",
        "Couldn't have said it better, {thing} deserves more love {emoji}",
    ],
    "ask": [
        "Wait, how long have you been {doing}? I need details",
        "Ooh, what got you into {doing}?",
        "Genuine question: is {thing} worth it for a beginner?",
        "How do you find the time for {doing}? Asking for me",
    ],
    "advise": [
        "Try {alt} next time, it changed everything for me",
        "Pro tip: {alt} makes {doing} so much easier",
        "If you like {thing} you should check out {alt} {emoji}",
        "Honestly {alt} is the move. Thank me later {tag}",
    ],
    "joke": [
        "My bank account is crying just reading about {thing} {emoji}",
        "Me pretending I'm not also {doing} right now {emoji2}",
        "{thing} really said main character energy huh",
        "Plot twist: {thing} was the friends we made along the way",
    ],
    "cheer": [
        "Proud of you, keep going with {doing}! {emoji}",
        "You've got this! {doing} is hard but so worth it {tag}",
        "Love this for you. More {thing} content please {emoji}",
        "Small wins count. Enjoy {thing}, you earned it",
    ],
    "disagree": [
        "Respectfully, {thing} is way better than people think",
        "Hard disagree, I'd pick {alt} any day",
        "Not sure about that, {thing} has never worked for me {emoji2}",
        "I see the point but {alt} wins for me every time",
    ],
    "story": [
        "Same here, I spent all of last weekend {doing} and regret nothing",
        "This reminds me of the time I tried {alt} and loved it {emoji}",
        "I started {doing} last year and it honestly changed my routine",
        "Been there. {thing} taught me patience more than anything else",
    ],
    "hype": [
        "This is the energy we need today {emoji} {tag}",
        "Yes! {thing} supremacy {emoji}{emoji}",
        "Okay now I want to go {doing} too {emoji2}",
        "Saving this tweet for when I need motivation {tag}",
    ],
}


def fill(template: str, slots: dict[str, str]) -> str:
    """A template with its slots filled: whitespace collapsed, the first letter upper-cased."""
    text = " ".join(template.format(**slots).split())
    return text[0].upper() + text[1:]


def _topic_of_value() -> dict[tuple[str, str], str]:
    """(vocabulary, value) -> topic; raises when a string belongs to two topics."""
    owner: dict[str, str] = {}
    out: dict[tuple[str, str], str] = {}
    for topic, vocab in TOPICS.items():
        for field, values in vocab.items():
            for value in values:
                if owner.get(value, topic) != topic:
                    raise ValueError(f"{value!r} belongs to topics {owner[value]!r} and {topic!r}; the "
                                     "verifier needs every vocabulary string to name one topic")
                owner[value] = topic
                out[(field, value)] = topic
    return out


TOPIC_OF_VALUE = _topic_of_value()
for _template in PROMPT_TEMPLATES:
    if not _template.admits or set(_template.admits) - set(INTENTS):
        raise ValueError(f"prompt template {_template.text!r} admits unknown intents {_template.admits}")
if set(REPLY_TEMPLATES) != set(INTENTS):
    raise ValueError(f"REPLY_TEMPLATES intents {sorted(REPLY_TEMPLATES)} differ from INTENTS {sorted(INTENTS)}")


@dataclass(frozen=True)
class ParsedReply:
    well_formed: bool  # a reply template with every slot from one topic's vocabulary
    intent: str | None  # the matched template's intent (also set for mixed_topics)
    topic: str | None  # the one topic of the slot values; None unless well formed
    problem: str | None = None  # why not well formed: "empty", "no_template" or "mixed_topics"


def _compile(template: str) -> re.Pattern:
    """A regex matching exactly the fills of ``template``; a slot repeated in it must repeat
    its value (``{emoji}{emoji}``)."""
    parts: list[str] = []
    seen: set[str] = set()
    for literal, slot, _spec, _conv in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if slot is None:
            continue
        if slot in seen:
            parts.append(f"(?P={slot})")
            continue
        seen.add(slot)
        values = sorted({v for (field, v) in TOPIC_OF_VALUE if field == SLOT_VOCABULARY[slot]}, key=len, reverse=True)
        parts.append(f"(?P<{slot}>{'|'.join(map(re.escape, values))})")
    return re.compile("".join(parts))


@lru_cache(maxsize=1)
def _patterns() -> tuple[tuple[str, re.Pattern], ...]:
    # fill() collapses whitespace, so the templates are matched with their spacing collapsed
    return tuple((intent, _compile(" ".join(t.split()))) for intent in INTENTS for t in REPLY_TEMPLATES[intent])


def parse_reply(text: str) -> ParsedReply:
    """Parse ``text`` against the reply templates (see the module docstring)."""
    text = " ".join(str(text or "").split())
    if not text:
        return ParsedReply(False, None, None, "empty")
    # fill() upper-cases the first letter, and a template starting with a slot ("{thing} ...")
    # matches the value's own case: the first letter may be either case
    variants = dict.fromkeys([text, text[0].upper() + text[1:], text[0].lower() + text[1:]])
    mixed_intent = None
    for intent, pattern in _patterns():
        for variant in variants:
            match = pattern.fullmatch(variant)
            if match is None:
                continue
            topics = {TOPIC_OF_VALUE[(SLOT_VOCABULARY[slot], value)] for slot, value in match.groupdict().items()}
            if len(topics) == 1:
                return ParsedReply(True, intent, topics.pop())
            mixed_intent = mixed_intent or intent
    if mixed_intent is not None:
        return ParsedReply(False, mixed_intent, None, "mixed_topics")
    return ParsedReply(False, None, None, "no_template")


def grammar_sha256() -> str:
    """Identity of the grammar (vocabulary and reply templates): part of a generation cache key
    when the ground-truth verifier judges the samples."""
    payload = {"topics": TOPICS, "reply_templates": REPLY_TEMPLATES, "intents": INTENTS}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
