"""`polydag lambdas`: the one documented command to add a λ partition at run time."""

import pytest
from dagster import DagsterInstance

from polydag import cli


@pytest.fixture
def instance(monkeypatch, tmp_path):
    """The real instance the CLI opens from DAGSTER_HOME (here a temporary one)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as inst:
        yield inst


def test_add_canonicalises_and_deduplicates(instance, capsys):
    assert cli.main(["lambdas", "add", "0", "0.3", "1", "2.0", "1.0"]) == 0
    assert instance.get_dynamic_partitions("lambda") == ["0.0", "0.3", "1.0", "2.0"]
    assert cli.main(["lambdas", "add", "0.50"]) == 0
    assert instance.get_dynamic_partitions("lambda")[-1] == "0.5"


def test_non_numeric_lambda_is_refused_and_nothing_is_added(instance, capsys):
    assert cli.main(["lambdas", "add", "0.3", "strong"]) == 2
    assert "λ key 'strong' is not a number" in capsys.readouterr().err
    assert instance.get_dynamic_partitions("lambda") == []
