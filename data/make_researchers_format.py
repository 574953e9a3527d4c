"""Generate ``data/researchers_format/{train,test}.jsonl``: a slice of the shipped reply pairs
in the researchers' own file format, so their experiment YAML trains end to end offline.

Their rows are ``tweet_id, tweet, reply, reply_likes, reply_author``; one tweet has several
replies, so several rows share a ``tweet_id``. Deterministic, standard library only:

    python data/make_researchers_format.py          # writes the two files
    python data/make_researchers_format.py --check  # exits 1 if the shipped files differ
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
N_TRAIN_TWEETS, N_TEST_TWEETS = 160, 12


def _rows() -> dict[str, list[dict]]:
    tweets: dict[str, list[str]] = {}
    for line in (HERE / "reply_pairs.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        tweets.setdefault(row["prompt"], []).append(row["reply"])
    out: dict[str, list[dict]] = {"train": [], "test": []}
    for i, (tweet, replies) in enumerate(list(tweets.items())[: N_TRAIN_TWEETS + N_TEST_TWEETS]):
        split = "train" if i < N_TRAIN_TWEETS else "test"
        tweet_id = str(1_800_000_000_000_000_000 + int(hashlib.sha256(tweet.encode()).hexdigest()[:12], 16))
        for j, reply in enumerate(replies):
            digest = int(hashlib.sha256(f"{tweet_id}:{j}".encode()).hexdigest()[:8], 16)
            out[split].append({"tweet_id": tweet_id, "tweet": tweet, "reply": reply,
                               "reply_likes": digest % 500, "reply_author": f"user{digest % 10_000:04d}"})
    return out


def _render(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped files instead of writing")
    args = parser.parse_args()
    folder = HERE / "researchers_format"
    folder.mkdir(exist_ok=True)
    for split, rows in _rows().items():
        path, text = folder / f"{split}.jsonl", _render(rows)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                print(f"{path} differs from its generator", file=sys.stderr)
                return 1
        else:
            path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
