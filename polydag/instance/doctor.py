"""``polydag doctor``'s checks of the Dagster instance, and the doctor run with them.

:mod:`polydag.core.ops.doctor` checks the machine (torch, GPUs, disk, offline models, the
results database, model paths) and knows nothing about Dagster. This module adds what only
the instance layer knows: that DAGSTER_HOME is set and its ``dagster.yaml`` names a run
launcher and coordinator that can be imported, and (``polydag doctor`` only) that no run is
stuck: no in-progress run whose worker died and no concurrency slot held by a finished or dead
run (:func:`check_runs`). :func:`run_preflight` runs the core checks with these in their place
(after the results database), which ``polydag doctor`` and the training preflight
(:mod:`polydag.defs.preflight`) call. Dagster is imported only inside :func:`check_runs`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Callable

from polydag.core.ops import doctor
from polydag.core.ops.doctor import FAIL, OK, WARN, CheckResult


def check_dagster_home(home: str | Path | None = None) -> CheckResult:
    """DAGSTER_HOME is set, exists and holds a dagster.yaml whose launcher is importable."""
    import yaml

    name = "DAGSTER_HOME"
    fix = "source scripts/env.sh (it exports DAGSTER_HOME=$PWD/data/dagster_home)."
    home = home if home is not None else os.environ.get("DAGSTER_HOME")
    if not home:
        return CheckResult(name, FAIL, "DAGSTER_HOME is not set: `dagster dev` would use a "
                           "temporary instance and delete it on exit, and `dagster asset "
                           "materialize` would not see the λ and problem partitions.", fix)
    home = Path(home)
    if not home.is_dir():
        return CheckResult(name, FAIL, f"DAGSTER_HOME={home} does not exist.", fix)
    config_path = home / "dagster.yaml"
    if not config_path.is_file():
        return CheckResult(name, WARN, f"{home} has no dagster.yaml: Dagster's defaults apply "
                           "(no GPU launcher, no run queue, no gpu pool limit).",
                           f"cp data/dagster_home/dagster.yaml {home}/")
    try:
        config = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as exc:
        return CheckResult(name, FAIL, f"{config_path} is not valid YAML: {exc}",
                           "fix the file (compare with data/dagster_home/dagster.yaml).")
    for section in ("run_launcher", "run_coordinator"):
        module = (config.get(section) or {}).get("module")
        if module and not _importable(module):
            return CheckResult(name, FAIL, f"{config_path}: {section} module {module!r} is not "
                               "importable.", f"pip install the package providing {module}.")
    launcher = (config.get("run_launcher") or {}).get("class", "DefaultRunLauncher")
    return CheckResult(name, OK, f"{home} with dagster.yaml (run launcher: {launcher})",
                       data={"home": str(home), "run_launcher": launcher})


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


REAP_FIX = ("polydag runs reap (fails the dead runs and frees their slots; the next run of "
            "the code location does the same when it starts)")


def check_runs(home: str | Path | None = None) -> CheckResult:
    """No stuck run: every in-progress run's worker is alive (or on another host), and every
    claimed concurrency slot belongs to a live run. Lists who holds each pool's slots."""
    name = "runs and slots"
    home = home if home is not None else os.environ.get("DAGSTER_HOME")
    if not home or not Path(home).is_dir():
        return CheckResult(name, WARN, "not checked: no DAGSTER_HOME instance to read.",
                           "source scripts/env.sh")
    from dagster import DagsterInstance

    from polydag.instance.reaper import inspect_runs
    from polydag.instance.workers import ALIVE, UNKNOWN

    with DagsterInstance.from_config(str(home)) as instance:
        seen = inspect_runs(instance)
    stale, dead = seen.stale_holders, seen.dead_runs
    unknown = [v for v in seen.runs.values() if v.in_progress and v.worker.status == UNKNOWN]
    pools = "; ".join(
        f"pool {pool}: {claimed}/{limit} claimed"
        + "".join(f", by run {v.short_id} ({v.worker.status})" for v in seen.holders(pool))
        for pool, (limit, claimed) in sorted(seen.pools.items())) or "no concurrency pools yet"
    data = {"pools": {p: {"limit": l, "claimed": c} for p, (l, c) in seen.pools.items()},
            "stale_holders": [v.run_id for v in stale], "dead_runs": [v.run_id for v in dead],
            "unknown_workers": [v.run_id for v in unknown]}
    if stale:
        held = "; ".join(f"{v.describe()}" for v in stale)
        return CheckResult(name, FAIL, f"{len(stale)} run(s) hold concurrency slots they will "
                           f"never give back, so every later step of those pools waits: {held}.",
                           REAP_FIX, data)
    if dead:
        return CheckResult(name, WARN, f"{len(dead)} run(s) are {dead[0].status} but their worker "
                           f"is gone: " + "; ".join(v.describe() for v in dead) + f". {pools}.",
                           REAP_FIX, data)
    if unknown:
        ids = ", ".join(v.run_id for v in unknown)
        return CheckResult(name, WARN, f"{len(unknown)} in-progress run(s) recorded no worker, so "
                           f"whether they still run cannot be checked: {ids}. {pools}.",
                           "if such a run is not running (see its logs, or ps): polydag runs reap "
                           "--run RUN_ID", data)
    live = sum(v.in_progress and v.worker.status == ALIVE for v in seen.runs.values())
    remote = sum(v.in_progress and v.worker.status not in (ALIVE, UNKNOWN)
                 for v in seen.runs.values())
    return CheckResult(name, OK, f"no stuck runs ({live} running here, {remote} on other hosts); "
                       f"{pools}", data=data)


def instance_checks(
    dagster_home: str | Path | None = None, *, runs: bool = False,
) -> list[tuple[str, Callable[[], CheckResult]]]:
    """(name, check) of the instance, for :func:`polydag.core.ops.doctor.run_preflight`;
    ``runs`` adds :func:`check_runs` (``polydag doctor``; a training step's preflight skips it:
    its own run is in progress, and reaping happened when its run started)."""
    checks = [("DAGSTER_HOME", lambda: check_dagster_home(dagster_home))]
    if runs:
        checks.append(("runs and slots", lambda: check_runs(dagster_home)))
    return checks


def run_preflight(*, dagster_home: str | Path | None = None, runs: bool = False,
                  **core: Any) -> list[CheckResult]:
    """Every check of :func:`polydag.core.ops.doctor.run_preflight` (``core`` are its keyword
    arguments) plus the instance checks, in the doctor's order."""
    return doctor.run_preflight(extra_checks=instance_checks(dagster_home, runs=runs), **core)
