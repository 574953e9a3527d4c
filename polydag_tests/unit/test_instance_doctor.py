"""The doctor's instance checks (``polydag.instance.doctor``): DAGSTER_HOME and its dagster.yaml."""

import shutil
from pathlib import Path

from polydag.core.ops.doctor import FAIL, OK, WARN
from polydag.instance import doctor as instance_doctor

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_dagster_home_failure_paths(monkeypatch, tmp_path):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    unset = instance_doctor.check_dagster_home()
    assert unset.status == FAIL and "not set" in unset.detail and "scripts/env.sh" in unset.fix
    assert instance_doctor.check_dagster_home(tmp_path / "nope").status == FAIL
    home = tmp_path / "home"
    home.mkdir()
    # no dagster.yaml: Dagster defaults
    assert instance_doctor.check_dagster_home(home).status == WARN
    (home / "dagster.yaml").write_text("run_launcher: [unclosed")
    assert instance_doctor.check_dagster_home(home).status == FAIL
    (home / "dagster.yaml").write_text("run_launcher:\n  module: not_installed_pkg.launcher\n"
                                       "  class: X\n")
    result = instance_doctor.check_dagster_home(home)
    assert result.status == FAIL and "not_installed_pkg.launcher" in result.detail


def test_shipped_dagster_home_is_ok(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "data" / "dagster_home" / "dagster.yaml", home)
    result = instance_doctor.check_dagster_home(home)
    assert result.status == OK and result.data["run_launcher"] == "PolydagRunLauncher"
