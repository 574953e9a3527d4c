"""Reading user text files line by line, so a bad byte is named by its line, not a traceback.

A file that is not UTF-8 used to fail with a bare ``UnicodeDecodeError`` and no file or line,
and ``skip_bad_rows`` could not get past it. :func:`decoded_lines` decodes each line on its
own and reports an undecodable one with its 1-based line number, column and byte, and
accepts a UTF-8 byte-order mark at the start of the file (what spreadsheet exports write).
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Iterator


def decoded_lines(path: str | Path) -> Iterator[tuple[int, str | None, str | None]]:
    """``(line number, text, problem)`` per line (line endings kept); ``text`` is None and
    ``problem`` says why when the line is not valid UTF-8."""
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                yield lineno, raw.decode("utf-8"), None
            except UnicodeDecodeError as exc:
                yield lineno, None, (f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                                     "save the file as UTF-8")


def read_utf8(path: str | Path) -> tuple[str | None, str | None]:
    """The whole file as text (a BOM dropped), or ``(None, "line N: not valid UTF-8 ...")``."""
    lines = []
    for lineno, text, problem in decoded_lines(path):
        if problem is not None:
            return None, f"line {lineno}: {problem}"
        lines.append(text)
    return "".join(lines), None
