import json
import logging
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from polydag.core.polychromic.reply_pairs import (
    DatasetError,
    find_empty_texts,
    find_exact_duplicates,
    find_prompt_leakage,
    load_reply_pairs,
    prompt_id,
    split_reply_pairs,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "data" / "reply_pairs.jsonl"


def _write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


GOOD = [
    {"id": "a", "prompt": "Coffee first?", "reply": "Always coffee first, then the world"},
    {"id": "b", "prompt": "Coffee first?", "reply": "Tea for me, sorry"},
    {"id": "c", "prompt": "Rain again today", "reply": "Perfect weather for reading"},
]


def test_loads_jsonl_csv_parquet_identically(tmp_path):
    expected = pl.DataFrame(GOOD)
    jsonl = _write_jsonl(tmp_path / "p.jsonl", GOOD)
    csv = tmp_path / "p.csv"
    expected.write_csv(csv)
    parquet = tmp_path / "p.parquet"
    expected.write_parquet(parquet)
    for path in (jsonl, csv, parquet):
        frame, skipped = load_reply_pairs(path)
        assert skipped == 0
        assert frame.columns == ["id", "prompt", "reply"]
        assert frame.to_dicts() == GOOD


def test_ids_are_generated_from_the_line_when_absent(tmp_path):
    path = _write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p1", "reply": "r1"}, "", {"prompt": "p2", "reply": "r2"}])
    frame, _ = load_reply_pairs(path)
    assert frame["id"].to_list() == ["row-1", "row-3"]


@pytest.mark.parametrize(
    "bad_line, field, problem",
    [
        ('{"prompt": "p", "reply": ', None, "malformed JSON"),
        ({"prompt": "p"}, "reply", "missing"),
        ({"prompt": "p", "reply": "   "}, "reply", "empty"),
        ({"prompt": None, "reply": "r"}, "prompt", "null"),
        ({"prompt": 7, "reply": "r"}, "prompt", "must be a string"),
        (["p", "r"], None, "expected a JSON object"),
        ({"id": "a", "prompt": "p", "reply": "r"}, "id", "duplicate id"),
    ],
)
def test_bad_jsonl_row_names_file_line_and_field(tmp_path, bad_line, field, problem):
    path = _write_jsonl(tmp_path / "bad.jsonl", GOOD[:2] + [bad_line])
    with pytest.raises(DatasetError) as err:
        load_reply_pairs(path)
    message = str(err.value)
    assert str(path) in message and "line 3" in message and problem in message
    if field:
        assert f"field '{field}'" in message
    assert err.value.field == field


def test_csv_errors_name_line_and_column(tmp_path):
    no_reply = tmp_path / "no_reply.csv"
    no_reply.write_text("id,prompt,answer\n1,p,r\n")
    with pytest.raises(DatasetError, match=r"line 1 \(header\): field 'reply': required column missing"):
        load_reply_pairs(no_reply)
    empty_cell = tmp_path / "empty.csv"
    empty_cell.write_text('prompt,reply\n"a prompt","a reply"\n"another",""\n')
    with pytest.raises(DatasetError, match=r"empty\.csv, line 3: field 'reply': is empty"):
        load_reply_pairs(empty_cell)


def test_parquet_errors_name_row_and_field(tmp_path):
    path = tmp_path / "p.parquet"
    pl.DataFrame({"prompt": ["a", "b"], "reply": ["fine reply", None]}).write_parquet(path)
    with pytest.raises(DatasetError, match=r"p\.parquet, row 2: field 'reply': is null"):
        load_reply_pairs(path)


def test_bad_extension_and_missing_file(tmp_path):
    bad = tmp_path / "pairs.txt"
    bad.write_text("prompt,reply\n")
    with pytest.raises(DatasetError, match=r"unsupported file extension '\.txt'"):
        load_reply_pairs(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_reply_pairs(tmp_path / "missing.jsonl")


def test_skip_mode_drops_counts_and_logs_bad_rows(tmp_path, caplog):
    records = [GOOD[0], "{not json", {"prompt": "p"}, GOOD[1], {"prompt": "", "reply": "r"}, GOOD[2]]
    path = _write_jsonl(tmp_path / "mixed.jsonl", records)
    with pytest.raises(DatasetError):
        load_reply_pairs(path)
    with caplog.at_level(logging.WARNING):
        frame, skipped = load_reply_pairs(path, skip_bad_rows=True)
    assert skipped == 3
    assert frame["id"].to_list() == ["a", "b", "c"]
    assert "skipped 3 bad rows" in caplog.text and "line 2" in caplog.text


def test_all_rows_bad_is_an_error_even_when_skipping(tmp_path):
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p"}])
    with pytest.raises(DatasetError, match="no valid rows"):
        load_reply_pairs(path, skip_bad_rows=True)


def _pairs(n_prompts: int, replies: int = 3) -> pl.DataFrame:
    rows = [{"id": f"{i}-{j}", "prompt": f"prompt number {i}", "reply": f"reply {j} to {i}"}
            for i in range(n_prompts) for j in range(replies)]
    return pl.DataFrame(rows)


def test_split_is_deterministic_grouped_and_leak_free():
    df = _pairs(200)
    a = split_reply_pairs(df, seed=3, max_test_prompts=15)
    b = split_reply_pairs(df.reverse(), seed=3, max_test_prompts=15)  # row order must not matter
    key = ["id", "prompt_id", "split"]
    assert a.select(key).sort("id").equals(b.select(key).sort("id"))
    c = split_reply_pairs(df, seed=4, max_test_prompts=15)
    assert not a.select(key).sort("id").equals(c.select(key).sort("id"))
    per_prompt = a.group_by("prompt_id").agg(pl.col("split").n_unique().alias("n"))
    assert per_prompt["n"].max() == 1
    assert find_prompt_leakage(a).is_empty()
    n = dict(a.group_by("split").agg(pl.col("prompt_id").n_unique()).iter_rows())
    assert n == {"test": 15, "val": 20, "train": 165}
    assert a["prompt_id"][0] == prompt_id("  PROMPT   number 0 ") and len(a["prompt_id"][0]) == 12


def test_split_rejects_impossible_fractions():
    with pytest.raises(ValueError, match="too few"):
        split_reply_pairs(_pairs(2), val_fraction=0.1, test_fraction=0.1)
    with pytest.raises(ValueError, match="must be < 1"):
        split_reply_pairs(_pairs(20), val_fraction=0.5, test_fraction=0.5)


def test_find_empty_texts_catches_crafted_rows():
    df = pl.DataFrame({"prompt": ["ok", " ", "ok", None], "reply": ["fine", "fine", "\t", "x"]})
    assert find_empty_texts(df).height == 3
    assert find_empty_texts(df.head(1)).is_empty()


def test_find_exact_duplicates_catches_crafted_rows():
    df = pl.DataFrame({"prompt": ["p", "p", "p", "q"], "reply": ["r", "r", "s", "r"]})
    dups = find_exact_duplicates(df)
    assert dups.height == 2 and set(dups["reply"]) == {"r"} and set(dups["prompt"]) == {"p"}
    assert find_exact_duplicates(df.tail(3)).is_empty()


def test_find_prompt_leakage_catches_crafted_rows():
    df = pl.DataFrame({
        "prompt": ["Same prompt", "same  PROMPT", "other", "other"],
        "reply": ["a", "b", "c", "d"],
        "split": ["train", "test", "val", "val"],
    })
    leaked = find_prompt_leakage(df)
    assert leaked["reply"].to_list() == ["a", "b"]
    with pytest.raises(ValueError, match="split"):
        find_prompt_leakage(df.drop("split"))


def test_shipped_dataset_is_valid_and_reproducible():
    frame, skipped = load_reply_pairs(SHIPPED)
    assert skipped == 0 and 5000 <= frame.height <= 7000
    assert SHIPPED.stat().st_size < 2_000_000
    per_prompt = frame.group_by("prompt").len()
    assert 1100 <= per_prompt.height <= 1300 and per_prompt["len"].min() >= 4
    assert find_exact_duplicates(frame).is_empty() and find_empty_texts(frame).is_empty()
    words = frame["reply"].str.split(" ").list.len()
    assert words.min() >= 4 and words.max() <= 25
    split = split_reply_pairs(frame)
    assert split.filter(pl.col("split") == "test")["prompt_id"].n_unique() == 50
    check = subprocess.run([sys.executable, str(REPO / "data" / "make_reply_pairs.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


UTF8_ROWS = [{"prompt": "coffee or tea?", "reply": "coffee, always"}, {"prompt": "best pizza?", "reply": "margherita"}]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_line_that_is_not_utf8_names_file_and_line_and_can_be_skipped(tmp_path, suffix):
    path = tmp_path / f"pairs{suffix}"
    if suffix == ".jsonl":
        lines = [json.dumps(UTF8_ROWS[0]).encode(), '{"prompt": "caf\xe9", "reply": "ok"}'.encode("latin-1"),
                 json.dumps(UTF8_ROWS[1]).encode()]
        bad_line = 2
    else:
        lines = [b"prompt,reply", b"coffee or tea?,coffee", "caf\xe9,latin-1 bytes".encode("latin-1"),
                 b"best pizza?,margherita"]
        bad_line = 3
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DatasetError, match=rf"pairs{suffix}, line {bad_line}: not valid UTF-8 \(byte 0xe9"):
        load_reply_pairs(path)
    frame, n_skipped = load_reply_pairs(path, skip_bad_rows=True)
    assert n_skipped == 1 and frame.height == 2


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_utf8_byte_order_mark_is_accepted(tmp_path, suffix):
    path = tmp_path / f"bom{suffix}"
    if suffix == ".jsonl":
        text = "".join(json.dumps(r) + "\n" for r in UTF8_ROWS)
    else:
        text = "prompt,reply\n" + "".join(f"{r['prompt']},{r['reply'].replace(',', '')}\n" for r in UTF8_ROWS)
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    frame, n_skipped = load_reply_pairs(path)
    assert n_skipped == 0 and frame["prompt"].to_list() == [r["prompt"] for r in UTF8_ROWS]
