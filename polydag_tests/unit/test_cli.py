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


def test_remove_takes_the_exact_key_and_never_its_canonical_twin(instance, capsys):
    """`remove 1` with only `1.0` registered must not remove `1.0`."""
    assert cli.main(["lambdas", "add", "0", "1"]) == 0
    capsys.readouterr()
    assert cli.main(["lambdas", "remove", "1"]) == 1
    err = capsys.readouterr().err
    assert "λ partition '1' is not registered (did you mean '1.0'?)" in err
    assert instance.get_dynamic_partitions("lambda") == ["0.0", "1.0"]
    assert cli.main(["lambdas", "remove", "1.0"]) == 0
    assert capsys.readouterr().out == "removed: 1.0\n"
    assert instance.get_dynamic_partitions("lambda") == ["0.0"]


def test_bogus_keys_from_the_ui_can_be_removed_exactly(instance, capsys):
    """Keys added by the UI or GraphQL bypass the CLI's rules; remove cleans them up."""
    instance.add_dynamic_partitions("lambda", ["1.0", "1", "abc", " 2 "])
    assert cli.main(["lambdas", "list"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["1.0", "1", "abc", " 2 "]
    assert "polydag lambdas remove abc" in captured.err  # the bogus ones are pointed out
    assert cli.main(["lambdas", "remove", "1", "abc", " 2 "]) == 0
    assert instance.get_dynamic_partitions("lambda") == ["1.0"]  # the real 1.0 stays


def test_remove_of_an_unknown_key_removes_nothing(instance, capsys):
    instance.add_dynamic_partitions("lambda", ["0.3", "abc"])
    assert cli.main(["lambdas", "remove", "abc", "0.7"]) == 1
    assert "λ partition '0.7' is not registered; nothing removed" in capsys.readouterr().err
    assert instance.get_dynamic_partitions("lambda") == ["0.3", "abc"]
    assert cli.main(["lambdas", "remove"]) == 2


@pytest.mark.parametrize("value", ["1e3", "inf", "nan", "0x10", "1,0", " 1 ", "+1", ".5", "-1",
                                   "0.00001"])
def test_add_refuses_what_is_not_a_plain_non_negative_decimal(instance, capsys, value):
    assert cli.main(["lambdas", "add", "0.3", value]) == 2
    assert capsys.readouterr().err.startswith(f"polydag lambdas: λ")
    assert instance.get_dynamic_partitions("lambda") == []


def test_negative_lambda_needs_allow_negative(instance, capsys):
    assert cli.main(["lambdas", "add", "-0.5"]) == 2
    assert "--allow-negative" in capsys.readouterr().err
    assert cli.main(["lambdas", "add", "--allow-negative", "-0.5", "-0"]) == 0
    assert instance.get_dynamic_partitions("lambda") == ["-0.5", "0.0"]
