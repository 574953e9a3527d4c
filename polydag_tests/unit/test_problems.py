"""The problems loader: GSM8K JSONL and JSON lists, normalization, step counts, errors."""

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from polydag.core.step_importance.problems import (
    ProblemsFormatError,
    difficulty_bucket,
    load_problems,
    normalize_number,
    question_id,
)
from polydag.step_importance import load_problems as public_load_problems

REPO = Path(__file__).resolve().parents[2]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


GSM = {
    "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
}


def test_gsm8k_jsonl_columns_and_counts(tmp_path):
    big = {"question": "A farm has 1,000 hens and buys 250 more. How many hens?",
           "answer": "1000 + 250 = <<1000+250=1250>>1250\nThat is the total.\n#### 1,250"}
    no_annotations = {"question": "Q three?", "answer": "First line.\n\nSecond line.\nThird.\n#### 7.0"}
    df = load_problems(write_jsonl(tmp_path / "p.jsonl", [GSM, big, no_annotations]))
    assert df.columns == ["problem_id", "question", "answer", "n_steps", "n_lines", "difficulty"]
    assert df["answer"].to_list() == ["72", "1250", "7"]
    assert df["n_steps"].to_list() == [2, 1, 3]      # annotations; fallback to non-empty lines
    assert df["n_lines"].to_list() == [2, 2, 3]
    assert df["difficulty"].to_list() == ["<=2", "<=2", "3"]
    assert df["problem_id"][0] == question_id(GSM["question"])
    assert df["problem_id"][0].startswith("p") and len(df["problem_id"][0]) == 11


def test_problem_id_is_stable_and_whitespace_insensitive(tmp_path):
    a = load_problems(write_jsonl(tmp_path / "a.jsonl", [GSM]))
    spaced = dict(GSM, question="  " + GSM["question"].replace(" ", "   ") + "\n")
    b = load_problems(write_jsonl(tmp_path / "b.jsonl", [{"question": "other?", "answer": "#### 1"}, spaced]))
    assert a["problem_id"][0] == b["problem_id"][1]


def test_record_ids_are_used_when_given(tmp_path):
    df = load_problems(write_jsonl(tmp_path / "p.jsonl", [dict(GSM, id="gsm8k_1"), dict(GSM, id=7)]))
    assert df["problem_id"].to_list() == ["gsm8k_1", "7"]


def test_json_list_with_numeric_answers_and_reasoning_steps(tmp_path):
    records = [
        {"question": "q1", "answer": 18, "reasoning_steps": ["a <<1+2=3>>", "b", "c <<3*6=18>>"]},
        {"question": "q2", "answer": "2,500", "reasoning_steps": 4},
        {"question": "q3", "answer": 0.5},
        {"question": "q4", "answer": 3.0, "reasoning_steps": ["x", "y", "z", "w", "v"]},
        {"question": "q5", "answer": GSM["answer"]},   # a GSM8K solution inside a list also works
    ]
    path = tmp_path / "p.json"
    path.write_text(json.dumps(records))
    df = load_problems(path)
    assert df["answer"].to_list() == ["18", "2500", "0.5", "3", "72"]
    assert df["n_steps"].to_list() == [2, 4, None, 5, 2]
    assert df["n_lines"].to_list() == [3, 4, None, 5, 2]
    assert df["difficulty"].to_list() == ["<=2", "4", "unknown", "5+", "<=2"]
    assert df.schema["n_steps"] == pl.Int64


def test_normalize_number():
    assert normalize_number("1,234") == "1234"
    assert normalize_number(" 7.0 ") == "7"
    assert normalize_number("7.") == "7"
    assert normalize_number("0.50") == "0.5"
    assert normalize_number("-3") == "-3"
    assert normalize_number("0.1") == "0.1"
    assert normalize_number("12 apples") is None
    assert normalize_number("") is None


def test_difficulty_buckets():
    assert [difficulty_bucket(n) for n in (0, 1, 2, 3, 4, 5, 6, 9)] == ["<=2", "<=2", "<=2", "3", "4", "5+", "5+", "5+"]


@pytest.mark.parametrize(
    "lines, where, fragment",
    [
        ([GSM, {"question": "q", "answer": "no final line"}], "line 2", "####"),
        ([GSM, {"question": "q", "answer": "x\n#### twelve"}], "line 2", "not a number"),
        ([{"answer": "#### 1"}], "line 1", "missing field 'question'"),
        ([GSM, {"question": "q"}], "line 2", "missing field 'answer'"),
        ([dict(GSM, id="a"), {"question": "q", "answer": "#### 1", "id": "a"}], "line 2", "duplicate problem_id 'a'"),
        ([GSM, GSM], "line 2", "duplicate problem_id"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path, lines, where, fragment):
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    with pytest.raises(ProblemsFormatError) as err:
        load_problems(path)
    message = str(err.value)
    assert str(path) in message and where in message and fragment in message


def test_malformed_json_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GSM) + "\n\n{not json\n")
    with pytest.raises(ProblemsFormatError, match=r"line 3: malformed JSON"):
        load_problems(path)


@pytest.mark.parametrize(
    "record, fragment",
    [
        ({"question": "q", "answer": "many"}, "not numeric"),
        ({"question": "q", "answer": True}, "not numeric"),
        ({"question": "q", "answer": [1]}, "not numeric"),
        ({"question": "", "answer": 1}, "non-empty string"),
        ({"question": "q", "answer": 1, "reasoning_steps": "three"}, "reasoning_steps"),
    ],
)
def test_json_list_errors_name_the_record(tmp_path, record, fragment):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"question": "fine", "answer": 1}, record]))
    with pytest.raises(ProblemsFormatError) as err:
        load_problems(path)
    assert "record 2" in str(err.value) and fragment in str(err.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_problems(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ProblemsFormatError, match="no problems"):
        load_problems(tmp_path / "empty.jsonl")


def test_shipped_synthetic_set_matches_its_generator(tmp_path):
    """The shipped file is exactly what the deterministic generator writes."""
    out = tmp_path / "regenerated.jsonl"
    subprocess.run([sys.executable, str(REPO / "data" / "make_gsm8k_synthetic.py"), "--out", str(out)],
                   check=True, capture_output=True)
    shipped = REPO / "data" / "gsm8k_synthetic.jsonl"
    assert out.read_bytes() == shipped.read_bytes()
    df = public_load_problems(shipped)
    assert 1000 <= df.height <= 2000 and shipped.stat().st_size < 1_000_000
    assert set(df["n_steps"].unique().to_list()) == {1, 2, 3, 4, 5, 6}
    assert set(df["difficulty"].unique().to_list()) == {"<=2", "3", "4", "5+"}
    assert df.filter(pl.col("answer").cast(pl.Int64) >= 1000).height > 0
    assert "," in shipped.read_text()  # some answers are written with thousands separators


def test_public_api_does_not_import_dagster_or_torch():
    code = ("import sys, polydag.step_importance as s; assert callable(s.load_problems); "
            "print(sorted(m for m in ('dagster', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_problems_that_are_not_utf8_name_the_line_and_a_bom_is_accepted(tmp_path):
    record = {"question": "Tom has 2 apples and buys 3. How many?", "answer": "2+3=<<2+3=5>>5\n#### 5"}
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(json.dumps(record).encode() + b"\n" + '{"question": "caf\xe9"}'.encode("latin-1") + b"\n")
    with pytest.raises(ProblemsFormatError, match="line 2.*not valid UTF-8"):
        load_problems(bad)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(record).encode() + b"\n")
    assert load_problems(bom)["answer"].to_list() == ["5"]
