"""The ``alerts`` table and the optional webhook: where collapse flags end up.

Each :class:`Alert` (flagged by ``polydag.core.polychromic.collapse``) is one row, keyed by ``alert_id`` = a hash of
(source, kind, run_id, lambda_key, subject). ``record_alerts`` inserts only ids not stored yet
and returns those new alerts, so a sensor that re-evaluates the same run on every tick writes
(and posts) each alert once. Writes go through a short-lived connection
(``polydag.core.storage.duck.connect``) so the table never holds the results database open; a busy
file raises ``DuckDBBusyError`` (nothing is written, the caller retries on its next tick).

``post_webhook`` sends one alert as JSON with the standard library; network errors are logged
and reported as False, never raised: an unreachable chat hook must not stop the sensor.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from polydag.core.storage.duck import connect, table_exists

@dataclass(frozen=True)
class Alert:
    """One flag. ``subject`` tells apart alerts of the same kind for one (run, λ), e.g. the metric."""

    source: str
    kind: str
    lambda_key: str
    run_id: str | None
    step: int | None
    value: float | None
    threshold: float | None
    message: str
    subject: str = ""
    details: dict = field(default_factory=dict)

    @property
    def alert_id(self) -> str:
        """Stable id of (source, kind, run_id, lambda_key, subject): the de-duplication key."""
        key = json.dumps([self.source, self.kind, self.run_id, self.lambda_key, self.subject])
        return hashlib.sha256(key.encode()).hexdigest()[:20]

    def to_json(self) -> dict:
        out = asdict(self)
        out["alert_id"] = self.alert_id
        for name in ("value", "threshold"):  # JSON has no NaN/inf
            v = out[name]
            if v is not None and not math.isfinite(v):
                out[name] = repr(v)
        return out



TABLE = "alerts"
_DDL = f"""
CREATE SEQUENCE IF NOT EXISTS {TABLE}_seq;
CREATE TABLE IF NOT EXISTS {TABLE} (
    alert_id VARCHAR PRIMARY KEY,
    seq BIGINT DEFAULT nextval('{TABLE}_seq'),
    created_at TIMESTAMP DEFAULT current_timestamp,
    source VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    lambda_key VARCHAR NOT NULL,
    run_id VARCHAR,
    step INTEGER,
    value DOUBLE,
    threshold DOUBLE,
    message VARCHAR NOT NULL,
    details JSON
);
"""
_COLUMNS = ("alert_id", "source", "kind", "lambda_key", "run_id", "step", "value", "threshold",
            "message", "details")


def record_alerts(
    db_path: str | Path,
    alerts: Iterable[Alert],
    *,
    timeout_s: float = 5.0,
    logger: logging.Logger | None = None,
) -> list[Alert]:
    """Insert the alerts whose ``alert_id`` is not stored yet; return exactly those."""
    logger = logger or logging.getLogger(__name__)
    unique: dict[str, Alert] = {}
    for a in alerts:
        unique.setdefault(a.alert_id, a)
    if not unique:
        return []
    with connect(db_path, timeout_s=timeout_s) as con:
        con.execute(_DDL)
        stored = {row[0] for row in con.execute(
            f"SELECT alert_id FROM {TABLE} WHERE alert_id IN (SELECT unnest(?))", [list(unique)]
        ).fetchall()}
        new = [a for a_id, a in unique.items() if a_id not in stored]
        if new:
            con.executemany(
                f"INSERT INTO {TABLE} ({', '.join(_COLUMNS)}) VALUES ({', '.join(['?'] * len(_COLUMNS))})",
                [(a.alert_id, a.source, a.kind, a.lambda_key, a.run_id, a.step, a.value, a.threshold,
                  a.message, json.dumps(a.to_json()["details"], default=str)) for a in new],
            )
    for a in new:
        logger.warning("polydag alert %s: %s", a.kind, a.message)
    return new


def read_alerts(db_path: str | Path, *, timeout_s: float = 5.0):
    """All stored alerts in insertion order (polars); empty frame when there are none yet."""
    import polars as pl

    if not Path(db_path).exists():
        return pl.DataFrame()
    with connect(db_path, read_only=True, timeout_s=timeout_s) as con:
        if not table_exists(con, TABLE):
            return pl.DataFrame()
        return con.execute(f"SELECT * FROM {TABLE} ORDER BY seq").pl()


def post_webhook(
    url: str,
    alert: Alert,
    *,
    timeout_s: float = 5.0,
    logger: logging.Logger | None = None,
) -> bool:
    """POST ``alert.to_json()`` to ``url``; True on a 2xx answer, False (logged) on any failure."""
    logger = logger or logging.getLogger(__name__)
    body = json.dumps(alert.to_json(), default=str).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            ok = 200 <= response.status < 300
            if not ok:
                logger.error("alert webhook %s answered HTTP %s for alert %s", url, response.status, alert.alert_id)
            return ok
    except (urllib.error.URLError, OSError, ValueError) as exc:
        logger.error("alert webhook %s failed for alert %s: %s", url, alert.alert_id, exc)
        return False
