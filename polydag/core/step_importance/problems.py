"""Load GSM8K-format math problems into one validated polars table.

Two input shapes are accepted:

* **GSM8K JSONL** (one object per line): ``question`` and ``answer``, where the answer is the
  worked solution with ``<<expr=result>>`` calculator annotations followed by ``#### N``
  (N may contain thousands separators, e.g. ``#### 1,250``).
* **A JSON list of records** with ``question``, a numeric ``answer`` (a JSON number or a
  numeric string) and an optional ``reasoning_steps`` (a list of step strings or a count).
  A record whose answer is a GSM8K solution string (with ``####``) is read as GSM8K.

Either shape may give an ``id`` per record; otherwise the id is ``p`` + the first 10 hex
digits of sha256 of the whitespace-normalized question, so the same question always gets the
same id whatever file or position it comes from.

Difficulty is the number of reasoning steps: the count of ``<<…>>`` annotations, falling back
to the non-empty solution lines before ``####`` when there are none (both counts are kept).
Every error names the file and the 1-based line (JSONL) or record index (JSON list).
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

import polars as pl

from polydag.core.ops.text_files import read_utf8

ANNOTATION_RE = re.compile(r"<<[^<>]*>>")
NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
DIFFICULTY_BUCKETS = ("<=2", "3", "4", "5+")
UNKNOWN_DIFFICULTY = "unknown"

SCHEMA = {
    "problem_id": pl.String,
    "question": pl.String,
    "answer": pl.String,
    "n_steps": pl.Int64,
    "n_lines": pl.Int64,
    "difficulty": pl.String,
}


class ProblemsFormatError(ValueError):
    """A problems file that cannot be read; the message names the file and line or record."""

    def __init__(self, path: Path | str, where: str, message: str):
        self.path = str(path)
        self.where = where
        super().__init__(f"{path}, {where}: {message}")


def normalize_number(text: str) -> str | None:
    """A number as canonical text, or None when ``text`` is not a number.

    Thousands separators and surrounding spaces are removed, integral values lose their
    decimals ("7.0" -> "7", "1,250" -> "1250") and other decimals keep only significant
    digits ("0.50" -> "0.5"). Decimal arithmetic avoids float artefacts ("0.1" stays "0.1").
    """
    cleaned = text.strip().replace(",", "")
    if cleaned.endswith("."):
        cleaned = cleaned[:-1]
    if not NUMBER_RE.match(cleaned):
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def question_id(question: str) -> str:
    normalized = " ".join(question.split())
    return "p" + hashlib.sha256(normalized.encode("utf-8")).hexdigest()[:10]


def difficulty_bucket(n_steps: int | None) -> str:
    if n_steps is None:
        return UNKNOWN_DIFFICULTY
    if n_steps <= 2:
        return "<=2"
    if n_steps >= 5:
        return "5+"
    return str(n_steps)


def _count_steps(solution_lines: list[str]) -> tuple[int, int]:
    """(n_steps, n_lines): annotations, falling back to non-empty lines when there are none."""
    lines = [line for line in solution_lines if line.strip()]
    n_annotations = sum(len(ANNOTATION_RE.findall(line)) for line in lines)
    return (n_annotations if n_annotations else len(lines)), len(lines)


def _parse_gsm8k_answer(solution: str, fail) -> tuple[str, int, int]:
    if "####" not in solution:
        fail("answer has no '#### N' final line (GSM8K format)")
    body, _, final = solution.rpartition("####")
    number = normalize_number(final)
    if number is None:
        fail(f"answer after '####' is not a number: {final.strip()!r}")
    n_steps, n_lines = _count_steps(body.splitlines())
    return number, n_steps, n_lines


def _parse_numeric_answer(answer, fail) -> str:
    if isinstance(answer, bool):
        fail(f"answer is not numeric: {answer!r}")
    if isinstance(answer, (int, float)):
        if answer != answer or answer in (float("inf"), float("-inf")):
            fail(f"answer is not a finite number: {answer!r}")
        answer = repr(answer)
    if not isinstance(answer, str):
        fail(f"answer is not numeric: {answer!r}")
    number = normalize_number(answer)
    if number is None:
        fail(f"answer is not numeric: {answer!r}")
    return number


def _parse_reasoning_steps(steps, fail) -> tuple[int | None, int | None]:
    if steps is None:
        return None, None
    if isinstance(steps, bool):
        fail(f"field 'reasoning_steps' must be a list or a count, got {steps!r}")
    if isinstance(steps, int):
        if steps < 0:
            fail(f"field 'reasoning_steps' is negative: {steps}")
        return steps, steps
    if isinstance(steps, list) and all(isinstance(s, str) for s in steps):
        return _count_steps(steps)
    fail(f"field 'reasoning_steps' must be a list of strings or a count, got {steps!r}")
    raise AssertionError("unreachable")


def _parse_record(record, path: Path, where: str, *, jsonl: bool) -> dict:
    def fail(message: str):
        raise ProblemsFormatError(path, where, message)

    if not isinstance(record, dict):
        fail(f"expected a JSON object, got {type(record).__name__}")
    for field in ("question", "answer"):
        if field not in record or record[field] is None:
            fail(f"missing field {field!r}")
    question = record["question"]
    if not isinstance(question, str) or not question.strip():
        fail("field 'question' must be a non-empty string")
    answer = record["answer"]
    if isinstance(answer, str) and ("####" in answer or jsonl):
        number, n_steps, n_lines = _parse_gsm8k_answer(answer, fail)
        if "reasoning_steps" in record:
            n_steps, n_lines = _parse_reasoning_steps(record["reasoning_steps"], fail)
    else:
        number = _parse_numeric_answer(answer, fail)
        n_steps, n_lines = _parse_reasoning_steps(record.get("reasoning_steps"), fail)
    raw_id = record.get("id")
    if raw_id is None:
        problem_id = question_id(question)
    elif isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) and str(raw_id).strip():
        problem_id = str(raw_id).strip()
    else:
        fail(f"field 'id' must be a non-empty string or integer, got {raw_id!r}")
    return {
        "problem_id": problem_id,
        "question": question.strip(),
        "answer": number,
        "n_steps": n_steps,
        "n_lines": n_lines,
        "difficulty": difficulty_bucket(n_steps),
    }


def _read_records(path: Path) -> list[tuple[str, dict, bool]]:
    """(location, record, is_jsonl) for every record of a JSONL file or a JSON list."""
    text, problem = read_utf8(path)
    if problem is not None:
        where, _, message = problem.partition(": ")
        raise ProblemsFormatError(path, where, message)
    stripped = text.lstrip()
    if path.suffix == ".json" or stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProblemsFormatError(path, f"line {exc.lineno}", f"malformed JSON: {exc.msg}") from exc
        if not isinstance(data, list):
            raise ProblemsFormatError(path, "top level", "expected a JSON list of problem records")
        return [(f"record {i}", record, False) for i, record in enumerate(data, start=1)]
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ProblemsFormatError(path, f"line {lineno}", f"malformed JSON: {exc.msg}") from exc
        records.append((f"line {lineno}", record, True))
    return records


def load_problems(path: str | Path) -> pl.DataFrame:
    """Read and validate a problems file (GSM8K JSONL or a JSON list), one row per problem.

    Columns: ``problem_id``, ``question``, ``answer`` (normalized number as text),
    ``n_steps``, ``n_lines`` (null when a JSON-list record gives no reasoning steps) and
    ``difficulty`` (``<=2``, ``3``, ``4``, ``5+``, or ``unknown`` without step information).
    Rows keep the file's order.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"problems file not found: {path}")
    rows: list[dict] = []
    first_seen: dict[str, str] = {}
    for where, record, jsonl in _read_records(path):
        row = _parse_record(record, path, where, jsonl=jsonl)
        if row["problem_id"] in first_seen:
            raise ProblemsFormatError(
                path, where,
                f"duplicate problem_id {row['problem_id']!r} (first seen at {first_seen[row['problem_id']]}); "
                "give each record a unique 'id' or remove the repeated question",
            )
        first_seen[row["problem_id"]] = where
        rows.append(row)
    if not rows:
        raise ProblemsFormatError(path, "whole file", "no problems found")
    return pl.DataFrame(rows, schema=SCHEMA)
