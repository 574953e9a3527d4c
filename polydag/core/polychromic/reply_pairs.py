"""Reply-pair dataset: load, validate, split, check.

A reply-pair file holds tweet-like ``prompt`` texts and one ``reply`` per row; a prompt
usually appears on several rows, once per valid reply. ``id`` is optional.

Optional ground truth (the shipped default has it, see ``data/make_reply_pairs.py``):
``intent`` (the reply's intent), ``topic`` (the prompt's topic) and ``admitted_intents`` (the
intents a reply to the prompt may have: a list, or in CSV one string separated by ``;``,
``,`` or ``|``). They are kept through the split when the file has them; a file without them
loads as before, without those columns, and evaluation then has no ground truth (the
ground-truth verifier and metrics say they are absent). The rows of one prompt must agree on
its ``topic`` and ``admitted_intents`` (a row leaving them empty agrees with any).

- :func:`load_reply_pairs` reads JSONL, CSV or Parquet and validates every row. A bad row
  raises :class:`DatasetError` naming the file, the 1-based line (JSONL, CSV) or row
  (Parquet) and the field, unless the caller asked to skip bad rows, in which case they are
  dropped, counted, logged, and the count is returned.
- :func:`split_reply_pairs` assigns train/val/test by prompt (all replies of a prompt land in
  one split, so evaluation prompts were never trained on), deterministically by seed.
- ``find_*`` functions return the offending rows (an empty frame when the data is fine); the
  Dagster asset checks call them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from polydag.core.ops.text_files import decoded_lines

REQUIRED_FIELDS = ("prompt", "reply")


@dataclass(frozen=True)
class Columns:
    """Which columns of a file hold what (the researchers' files: tweet, reply, tweet_id)."""

    prompt: str = "prompt"
    reply: str = "reply"
    id: str | None = "id"  # unique row id; rows without one get "row-<line>"
    group: str | None = None  # rows with the same value are one prompt (e.g. tweet_id; repeats are fine)
    intent: str | None = "intent"  # optional ground truth: the reply's intent
    topic: str | None = "topic"  # optional ground truth: the prompt's topic
    admitted_intents: str | None = "admitted_intents"  # optional ground truth: the prompt's admitted intents

    @property
    def required(self) -> tuple[str, str]:
        return (self.prompt, self.reply)


DEFAULT_COLUMNS = Columns()
GROUND_TRUTH_FIELDS = ("intent", "topic", "admitted_intents")
_PROMPT_FIELDS = ("topic", "admitted_intents")  # properties of the prompt, equal on all its rows
SPLITS = ("train", "val", "test")
SUPPORTED_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".parquet")

_log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A reply-pair file or row is invalid; the message names the file, line/row and field."""

    def __init__(self, path: str | Path, location: str | None, field: str | None, problem: str):
        self.path = str(path)
        self.location = location
        self.field = field
        self.problem = problem
        where = self.path if location is None else f"{self.path}, {location}"
        what = problem if field is None else f"field {field!r}: {problem}"
        super().__init__(f"{where}: {what}")


@dataclass(frozen=True)
class _RawRow:
    location: str  # "line 7" or "row 7"
    number: int  # the 1-based line/row number, used for generated ids
    record: object  # whatever the parser produced; validated by _validate_row


def _read_jsonl(path: Path, required=REQUIRED_FIELDS) -> list[_RawRow | DatasetError]:
    rows: list[_RawRow | DatasetError] = []
    for lineno, line, problem in decoded_lines(path):
        if problem is not None:
            rows.append(DatasetError(path, f"line {lineno}", None, problem))
            continue
        if not line.strip():
            continue  # blank lines are not rows (a trailing newline is common)
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append(DatasetError(path, f"line {lineno}", None, f"malformed JSON ({exc.msg} at column {exc.colno})"))
            continue
        rows.append(_RawRow(f"line {lineno}", lineno, record))
    return rows


def _read_csv(path: Path, required=REQUIRED_FIELDS) -> list[_RawRow | DatasetError]:
    found: list[tuple[int, _RawRow | DatasetError]] = []  # (file line, row), sorted at the end
    text_lines: list[str] = []
    file_line: list[int] = []  # the file line behind each line the CSV reader sees
    for lineno, line, problem in decoded_lines(path):
        if problem is not None:
            found.append((lineno, DatasetError(path, f"line {lineno}", None, problem)))
            continue
        text_lines.append(line)
        file_line.append(lineno)
    if found and found[0][0] == 1:
        raise found[0][1]  # the header itself is unreadable: nothing to skip to
    reader = csv.DictReader(text_lines)
    header = reader.fieldnames
    if header is None:
        raise DatasetError(path, None, None, "empty CSV file (no header row)")
    missing = [f for f in required if f not in header]
    if missing:
        raise DatasetError(path, "line 1 (header)", missing[0], f"required column missing; header is {header}")
    for record in reader:
        lineno = file_line[reader.line_num - 1]  # line where this record ends (quoted newlines span lines)
        if None in record:  # more cells than header columns
            found.append((lineno, DatasetError(
                path, f"line {lineno}", None, f"row has more cells than the {len(header)} header columns")))
            continue
        # DictReader fills cells missing at the end of a short row with None.
        found.append((lineno, _RawRow(f"line {lineno}", lineno, {k: v for k, v in record.items() if v is not None})))
    return [row for _, row in sorted(found, key=lambda item: item[0])]


def _read_parquet(path: Path, required=REQUIRED_FIELDS) -> list[_RawRow | DatasetError]:
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # polars raises several error types for corrupt files
        raise DatasetError(path, None, None, f"cannot read Parquet: {exc}") from exc
    missing = [f for f in required if f not in frame.columns]
    if missing:
        raise DatasetError(path, None, missing[0], f"required column missing; columns are {frame.columns}")
    return [_RawRow(f"row {i}", i, record) for i, record in enumerate(frame.to_dicts(), start=1)]


_READERS = {".jsonl": _read_jsonl, ".ndjson": _read_jsonl, ".csv": _read_csv, ".parquet": _read_parquet}


def _validate_row(path: Path, raw: _RawRow, columns: Columns = DEFAULT_COLUMNS) -> dict[str, str]:
    record = raw.record
    if not isinstance(record, dict):
        raise DatasetError(path, raw.location, None, f"expected a JSON object, got {type(record).__name__}")
    out: dict[str, str] = {}
    for field, column in zip(REQUIRED_FIELDS, columns.required):
        if column not in record:
            raise DatasetError(path, raw.location, column, "missing")
        value = record[column]
        if value is None:
            raise DatasetError(path, raw.location, column, "is null")
        if not isinstance(value, str):
            raise DatasetError(path, raw.location, column, f"must be a string, got {type(value).__name__} {value!r}")
        if not value.strip():
            raise DatasetError(path, raw.location, column, "is empty or whitespace only")
        out[field] = value
    for field, column, generated in (("id", columns.id, f"row-{raw.number}"), ("group", columns.group, None)):
        value = record.get(column) if column else None
        if value is None:
            if field == "group" and column:
                raise DatasetError(path, raw.location, column, "missing (it groups the replies of one prompt)")
            if generated is not None:
                out[field] = generated  # stable: derived from the position in the file
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise DatasetError(path, raw.location, column, f"must be a string or integer, got {type(value).__name__}")
        value = str(value).strip()
        if not value:
            raise DatasetError(path, raw.location, column, "is empty")
        out[field] = value
    for field in GROUND_TRUTH_FIELDS:
        column = getattr(columns, field)
        value = record.get(column) if column else None
        if value is None or value == "":
            continue  # ground truth is optional, row by row
        if field == "admitted_intents":
            value = _intent_list(path, raw.location, column, value)
        elif not isinstance(value, str) or not value.strip():
            raise DatasetError(path, raw.location, column, f"must be a non-empty string, got {value!r}")
        else:
            value = value.strip()
        out[field] = value
    return out


def _intent_list(path: Path, location: str, column: str, value: object) -> list[str]:
    """A list of intent names, from a list or a ``;``/``,``/``|``-separated string (CSV)."""
    if isinstance(value, str):
        value = re.split(r"[;,|]", value)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise DatasetError(path, location, column, f"must be a list of intent names, got {value!r}")
    names = [v.strip() for v in value if v.strip()]
    if not names:
        raise DatasetError(path, location, column, "is an empty list (a prompt admits at least one intent)")
    return list(dict.fromkeys(names))


def load_reply_pairs(
    path: str | Path,
    *,
    skip_bad_rows: bool = False,
    columns: Columns = DEFAULT_COLUMNS,
    logger: logging.Logger | None = None,
) -> tuple[pl.DataFrame, int]:
    """Read and validate a reply-pair file; returns ``(frame[id, prompt, reply(, group)], n_skipped)``,
    plus the ground-truth columns ``intent``, ``topic`` and ``admitted_intents`` when the file has them.

    ``columns`` maps the file's column names (the researchers' files have ``tweet``, ``reply``
    and a ``tweet_id`` shared by a tweet's replies: ``Columns("tweet", "reply", None, "tweet_id")``);
    other columns are ignored.

    Raises :class:`DatasetError` on the first bad row (malformed JSON, missing field,
    null/non-string/empty text, bad or duplicate id), unless ``skip_bad_rows``: then bad
    rows are dropped and counted, and the count is logged as a warning and returned.
    Raises ``FileNotFoundError`` for a missing file and :class:`DatasetError` for an
    unsupported extension or a file with no valid rows.
    """
    logger = logger or _log
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _READERS:
        raise DatasetError(
            path, None, None,
            f"unsupported file extension {path.suffix!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}",
        )
    if not path.is_file():
        raise FileNotFoundError(f"reply-pair file {path} does not exist")

    good: list[dict[str, str]] = []
    bad: list[DatasetError] = []
    seen_ids: dict[str, str] = {}
    prompt_truth: dict[tuple[str, str], tuple[object, str]] = {}  # (prompt, field) -> (value, location)
    for raw in _READERS[suffix](path, columns.required):
        try:
            if isinstance(raw, DatasetError):
                raise raw
            row = _validate_row(path, raw, columns)
            if row["id"] in seen_ids:
                raise DatasetError(path, raw.location, "id", f"duplicate id {row['id']!r} (first at {seen_ids[row['id']]})")
            prompt_key = row.get("group") or normalize_prompt(row["prompt"])
            for field in _PROMPT_FIELDS:
                if field not in row:
                    continue
                first = prompt_truth.setdefault((prompt_key, field), (row[field], raw.location))
                if first[0] != row[field]:
                    raise DatasetError(path, raw.location, getattr(columns, field),
                                       f"{row[field]!r} disagrees with {first[0]!r} at {first[1]} for the same "
                                       "prompt (it is a property of the prompt)")
            seen_ids[row["id"]] = raw.location
        except DatasetError as exc:
            if not skip_bad_rows:
                raise
            bad.append(exc)
            continue
        good.append(row)

    if bad:
        shown = "; ".join(str(e) for e in bad[:3])
        logger.warning("skipped %d bad rows of %s (skip_bad_rows=True); first: %s", len(bad), path, shown)
    if not good:
        raise DatasetError(path, None, None, f"no valid rows ({len(bad)} bad rows skipped)" if bad else "no rows")
    schema = {"id": pl.String, "prompt": pl.String, "reply": pl.String}
    if columns.group:
        schema["group"] = pl.String
    for field in GROUND_TRUTH_FIELDS:  # a ground-truth column exists when some row has it
        if any(field in row for row in good):
            schema[field] = pl.List(pl.String) if field == "admitted_intents" else pl.String
    frame = pl.DataFrame([{name: row.get(name) for name in schema} for row in good], schema=schema)
    logger.info("loaded %d reply pairs (%d prompts) from %s", frame.height, frame["prompt"].n_unique(), path)
    return frame, len(bad)


def normalize_prompt(prompt: str) -> str:
    """The prompt identity used for grouping: case-folded, whitespace collapsed."""
    return " ".join(prompt.split()).casefold()


def prompt_id(prompt: str) -> str:
    """Stable short id of a prompt: the first 12 hex digits of sha256(normalized prompt)."""
    return hashlib.sha256(normalize_prompt(prompt).encode("utf-8")).hexdigest()[:12]


def _split_size(n_prompts: int, fraction: float, cap: int | None) -> int:
    size = round(n_prompts * fraction)
    if fraction > 0:
        size = max(size, 1)
    if cap is not None:
        size = min(size, cap)
    return size


def split_reply_pairs(
    df: pl.DataFrame,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    max_val_prompts: int | None = None,
    max_test_prompts: int | None = 50,
) -> pl.DataFrame:
    """Add ``prompt_id`` and ``split`` (train | val | test), grouped by prompt, deterministic.

    Distinct prompts are sorted by ``prompt_id`` and shuffled with ``random.Random(seed)``,
    so the split depends only on the set of prompts and the seed, not on row order. The
    first ``n_test`` shuffled prompts go to test, the next ``n_val`` to val, the rest to
    train; ``n = round(fraction * n_prompts)`` (at least 1 when the fraction is positive),
    capped by ``max_*_prompts``. The default caps test at 50 prompts because evaluation
    samples many replies per test prompt.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction}")
    for name, cap in (("max_val_prompts", max_val_prompts), ("max_test_prompts", max_test_prompts)):
        if cap is not None and cap < 0:
            raise ValueError(f"{name} must be >= 0 or None, got {cap}")
    missing = [c for c in REQUIRED_FIELDS if c not in df.columns]
    if missing:
        raise ValueError(f"reply-pair frame lacks column(s) {missing}; columns are {df.columns}")

    key = "group" if "group" in df.columns else "prompt"  # a file's group column, else the prompt text
    with_ids = df.with_columns(
        pl.col(key).map_elements(prompt_id, return_dtype=pl.String).alias("prompt_id")
    )
    ids = sorted(set(with_ids["prompt_id"].to_list()))
    n_test = _split_size(len(ids), test_fraction, max_test_prompts)
    n_val = _split_size(len(ids), val_fraction, max_val_prompts)
    if len(ids) - n_test - n_val < 1:
        raise ValueError(
            f"{len(ids)} distinct prompts are too few for {n_test} test and {n_val} val prompts "
            "plus at least one training prompt"
        )
    random.Random(seed).shuffle(ids)
    assignment = {pid: "test" for pid in ids[:n_test]}
    assignment.update({pid: "val" for pid in ids[n_test : n_test + n_val]})
    assignment.update({pid: "train" for pid in ids[n_test + n_val :]})
    return with_ids.with_columns(
        pl.col("prompt_id").replace_strict(assignment, return_dtype=pl.String).alias("split")
    )


def find_empty_texts(df: pl.DataFrame) -> pl.DataFrame:
    """Rows whose prompt or reply is null, empty or whitespace only."""
    def empty(col: str) -> pl.Expr:
        return pl.col(col).is_null() | (pl.col(col).str.strip_chars() == "")

    return df.filter(empty("prompt") | empty("reply"))


def find_exact_duplicates(df: pl.DataFrame) -> pl.DataFrame:
    """Every row whose exact (prompt, reply) pair occurs more than once."""
    return df.filter(pl.struct("prompt", "reply").is_duplicated())


def find_prompt_leakage(df: pl.DataFrame) -> pl.DataFrame:
    """Rows whose prompt (normalized) occurs in more than one split."""
    if "split" not in df.columns:
        raise ValueError(f"find_prompt_leakage needs a 'split' column; columns are {df.columns}")
    key = pl.col("prompt").map_elements(normalize_prompt, return_dtype=pl.String)
    return df.filter(pl.col("split").n_unique().over(key) > 1)


def load_and_split(path: str | Path, cfg, *, logger: logging.Logger | None = None) -> tuple[pl.DataFrame, int]:
    """``reply_pairs`` as the asset stores it: the file loaded and split by ``cfg``
    (a :class:`polydag.core.polychromic.config.ReplyPairsConfig`); returns (table, n skipped).

    With ``cfg.test_path`` the test split is that file's prompts (capped at
    ``max_test_prompts``) and ``path`` is split into train and val only."""
    columns = cfg.columns()
    rows, n_skipped = load_reply_pairs(path, skip_bad_rows=cfg.skip_bad_rows, columns=columns, logger=logger)
    if not cfg.test_path:
        split = split_reply_pairs(rows, seed=cfg.split_seed, val_fraction=cfg.val_fraction,
                                  test_fraction=cfg.test_fraction, max_test_prompts=cfg.max_test_prompts)
        return split, n_skipped
    test_rows, n_test_skipped = load_reply_pairs(cfg.test_path, skip_bad_rows=cfg.skip_bad_rows, columns=columns,
                                                 logger=logger)
    rest = split_reply_pairs(rows, seed=cfg.split_seed, val_fraction=cfg.val_fraction, test_fraction=0.0)
    test = split_reply_pairs(test_rows, seed=cfg.split_seed, val_fraction=0.0, test_fraction=0.0)
    keep = sorted(set(test["prompt_id"].to_list()))
    random.Random(cfg.split_seed).shuffle(keep)
    test = test.filter(pl.col("prompt_id").is_in(keep[: cfg.max_test_prompts])).with_columns(split=pl.lit("test"))
    test = test.with_columns(id=pl.lit("test-") + pl.col("id"))  # ids of two files never collide
    # diagonal: a ground-truth column of one file is null in the other's rows
    return pl.concat([rest, test], how="diagonal_relaxed"), n_skipped + n_test_skipped
