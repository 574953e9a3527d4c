"""Generate ``data/reply_pairs.jsonl``: the default tweet/reply dataset of polydag.

Deterministic (seeded ``random.Random``), standard library only, so the shipped file can be
regenerated bit for bit:

    python data/make_reply_pairs.py            # writes data/reply_pairs.jsonl
    python data/make_reply_pairs.py --check    # exits 1 if the shipped file differs

Each prompt is a tweet built from a topic (coffee, running, coding, ...) and a prompt
template; each prompt gets 4-6 *different, valid* replies drawn from different reply intents
(agree, ask, advise, joke, cheer, disagree, share a story, hype), filled with the prompt's own
topic words. So there is real diversity to learn (several good answers per prompt) and every
reply stays on the prompt's topic. Replies are 4-25 words. Fields: ``id``, ``prompt``,
``reply``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

SEED = 20251026
PROMPTS_PER_TOPIC = 30
MIN_REPLIES, MAX_REPLIES = 4, 6

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
        "emoji": ["📖", "📚", "🤯"],
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
        "tags": ["#pizza", "#foodie", "#pizzanight"],
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

PROMPT_TEMPLATES = [
    "Just finished {doing} and honestly I feel amazing {emoji}",
    "Is it just me or is {thing} getting worse lately? {tag}",
    "Hot take: {thing} is the best thing ever and I will not be taking questions {emoji}",
    "Need recommendations. Anyone tried {alt}? {tag}",
    "Day {n} of {doing}. Still going strong {emoji} {tag}",
    "Who else is {doing} this weekend? {tag}",
    "Can't stop thinking about {thing}. Send help {emoji}",
    "Unpopular opinion: {thing} is overrated {tag}",
    "Early morning thoughts: {doing} hits different {emoji}",
    "Tried {alt} for the first time today. Not sure how I feel {emoji}",
    "Okay I need to talk about {thing} {emoji} {emoji2}",
    "Week {n} of {doing} and I have questions {tag}",
    "Nobody warned me that {doing} would be this hard {emoji}",
    "{thing} appreciation post {emoji} {tag}",
    "Quick poll: {thing}, yes or no? {tag}",
]

# Reply intents: each prompt gets replies from different intents, so its valid replies
# differ in kind, not just in wording.
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


def _fill(template: str, slots: dict[str, str]) -> str:
    text = template.format(**slots)
    text = " ".join(text.split())
    return text[0].upper() + text[1:]


def _words(text: str) -> int:
    return len(text.split())


def generate(seed: int = SEED) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
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
            prompt = _fill(rng.choice(PROMPT_TEMPLATES), slots)
            if prompt in seen_prompts:
                continue
            seen_prompts.add(prompt)
            n_replies = rng.randint(MIN_REPLIES, MAX_REPLIES)
            intents = rng.sample(sorted(REPLY_TEMPLATES), n_replies)
            replies: list[str] = []
            for intent in intents:
                # Replies reuse the prompt's own topic words most of the time, so they
                # stay relevant, but sometimes a sibling word of the same topic.
                reply_slots = dict(slots)
                if rng.random() < 0.3:
                    reply_slots["thing"] = rng.choice(vocab["things"])
                if rng.random() < 0.3:
                    reply_slots["doing"] = rng.choice(vocab["doing"])
                reply_slots["emoji"], reply_slots["emoji2"] = rng.sample(vocab["emoji"], 2)
                reply_slots["tag"] = rng.choice(vocab["tags"])
                reply = _fill(rng.choice(REPLY_TEMPLATES[intent]), reply_slots)
                if reply in replies:
                    continue
                if not 4 <= _words(reply) <= 25:
                    raise RuntimeError(f"reply outside 4-25 words: {reply!r}")
                replies.append(reply)
            for reply in replies:
                rows.append({"prompt": prompt, "reply": reply})
    rng.shuffle(rows)
    return [{"id": f"rp-{i:05d}", **row} for i, row in enumerate(rows)]


def render(rows: list[dict[str, str]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("reply_pairs.jsonl"))
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing")
    args = parser.parse_args(argv)
    text = render(generate(args.seed))
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else None
        if current != text:
            print(f"{args.out} differs from the generator's output (seed {args.seed})", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.write_text(text, encoding="utf-8")
    rows = text.count("\n")
    prompts = len({json.loads(line)["prompt"] for line in text.splitlines()})
    print(f"wrote {args.out}: {rows} pairs, {prompts} prompts, {len(text.encode()) / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
