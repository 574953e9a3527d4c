"""Progress of long work: a terminal bar (tqdm) plus throttled log lines.

Every long loop (pretraining, LoRA training, generation, embedding, CODI training, ablation
sweeps) reports through :func:`progress`. The bar goes to stderr, where ``dagster asset
materialize`` and ``polydag`` show it; the log lines go to the logger (the Dagster run log
inside assets), at most one every ``log_every_s`` seconds plus one at the end, with the rate
and the ETA. ``POLYDAG_PROGRESS=1`` forces the bar on, ``0`` off; by default it shows only on
a terminal (tqdm's own rule), so CI logs and captured run logs stay clean.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Iterator


def _bar_disabled() -> bool | None:
    choice = os.environ.get("POLYDAG_PROGRESS", "").strip().lower()
    if choice in ("1", "true", "on", "yes"):
        return False
    if choice in ("0", "false", "off", "no"):
        return True
    return None  # tqdm: on for a TTY, off otherwise


class Progress:
    """One unit of work at a time: ``update(n, **shown)``; ``shown`` values go to the bar's
    postfix and the log line (floats with 3 significant digits)."""

    def __init__(self, total: int, desc: str, *, unit: str, logger: logging.Logger, log_every_s: float):
        from tqdm.auto import tqdm

        self.total, self.desc, self.unit = total, desc, unit
        self.logger, self.log_every_s = logger, log_every_s
        self.done = 0
        self.started = self._last_log = time.perf_counter()
        self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                         disable=_bar_disabled(), leave=False)

    def update(self, n: int = 1, **shown) -> None:
        self.done += n
        self._bar.update(n)
        text = {k: (f"{v:.3g}" if isinstance(v, float) else str(v)) for k, v in shown.items() if v is not None}
        if text:
            self._bar.set_postfix(text, refresh=False)
        now = time.perf_counter()
        if now - self._last_log >= self.log_every_s or self.done >= self.total:
            self._last_log = now
            elapsed = now - self.started
            rate = self.done / elapsed if elapsed > 0 else float("inf")
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            extra = "".join(f"  {k} {v}" for k, v in text.items())
            self.logger.info("%s %d/%d %s%s  %.2f %s/s  ETA %.0fs", self.desc, self.done, self.total, self.unit,
                             extra, rate, self.unit, eta)

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.done / elapsed if elapsed > 0 else float("inf")

    def close(self) -> None:
        self._bar.close()


@contextlib.contextmanager
def progress(total: int, desc: str, *, unit: str = "it", logger: logging.Logger | None = None,
             log_every_s: float = 5.0) -> Iterator[Progress]:
    """A :class:`Progress` for ``total`` units of work, closed when the block ends."""
    bar = Progress(total, desc, unit=unit, logger=logger or logging.getLogger("polydag"), log_every_s=log_every_s)
    try:
        yield bar
    finally:
        bar.close()
