"""``polydag doctor``'s checks of the Dagster instance, and the doctor run with them.

:mod:`polydag.core.ops.doctor` checks the machine (torch, GPUs, disk, offline models, the
results database, model paths) and knows nothing about Dagster. This module adds what only
the instance layer knows: that DAGSTER_HOME is set and its ``dagster.yaml`` names a run
launcher and coordinator that can be imported. :func:`run_preflight` runs the core checks
with these in their place (after the results database), which ``polydag doctor`` and the
training preflight (:mod:`polydag.defs.preflight`) call. Nothing here imports dagster.
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


def instance_checks(
    dagster_home: str | Path | None = None,
) -> list[tuple[str, Callable[[], CheckResult]]]:
    """(name, check) of the instance, for :func:`polydag.core.ops.doctor.run_preflight`."""
    return [("DAGSTER_HOME", lambda: check_dagster_home(dagster_home))]


def run_preflight(*, dagster_home: str | Path | None = None, **core: Any) -> list[CheckResult]:
    """Every check of :func:`polydag.core.ops.doctor.run_preflight` (``core`` are its keyword
    arguments) plus the instance checks, in the doctor's order."""
    return doctor.run_preflight(extra_checks=instance_checks(dagster_home), **core)
