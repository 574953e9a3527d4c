"""`polydag lambdas` and `polydag seeds`: the documented commands that add λ and seed partitions at run time."""

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
    assert "polydag lambdas remove ' 2 '" in captured.err
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


@pytest.fixture
def stubbed(monkeypatch):
    """Every command replaced by a stub, so only argument parsing runs."""
    calls = []
    for name in ("cmd_sweep", "cmd_sql", "cmd_tables", "cmd_doctor"):
        monkeypatch.setattr(cli, name, lambda args: calls.append(args) or 0)
    return calls


@pytest.mark.parametrize("argv, option", [
    (["sweep", "step-importance", "--max-problems", "-5"], "--max-problems"),
    (["sweep", "step-importance", "--max-problems", "0"], "--max-problems"),
    (["sweep", "step-importance", "--max-problems", "2.5"], "--max-problems"),
    (["sweep", "step-importance", "--problems-per-run", "0"], "--problems-per-run"),
    (["sweep", "step-importance", "--problems-per-run", "-1"], "--problems-per-run"),
    (["sql", "SELECT 1", "--max-rows", "0"], "--max-rows"),
    (["sql", "SELECT 1", "--max-rows", "-10"], "--max-rows"),
    (["sql", "SELECT 1", "--timeout", "0"], "--timeout"),
    (["sql", "SELECT 1", "--timeout", "-1"], "--timeout"),
    (["sql", "SELECT 1", "--timeout", "nan"], "--timeout"),
    (["sql", "SELECT 1", "--timeout", "inf"], "--timeout"),
    (["tables", "--timeout", "0"], "--timeout"),
    (["doctor", "--lambdas", "0"], "--lambdas"),
    (["doctor", "--lambdas", "-2"], "--lambdas"),
])
def test_counts_and_timeouts_must_be_positive(stubbed, capsys, argv, option):
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    assert f"argument {option}: " in capsys.readouterr().err
    assert stubbed == []  # the command never ran


def test_valid_counts_reach_the_command(stubbed):
    assert cli.main(["sweep", "step-importance", "--max-problems", "5",
                     "--problems-per-run", "2"]) == 0
    assert cli.main(["sql", "SELECT 1", "--max-rows", "1", "--timeout", "0.5"]) == 0
    assert (stubbed[0].max_problems, stubbed[0].problems_per_run) == (5, 2)
    assert (stubbed[1].max_rows, stubbed[1].timeout) == (1, 0.5)


def test_seeds_add_canonicalises_refuses_non_integers_and_removes(instance, capsys):
    assert cli.main(["seeds", "add", "0", "007", "1", "1"]) == 0
    assert instance.get_dynamic_partitions("seed") == ["0", "7", "1"]
    assert cli.main(["seeds", "add", "2", "-1"]) == 2
    assert "seed key '-1' is not a non-negative integer" in capsys.readouterr().err
    assert instance.get_dynamic_partitions("seed") == ["0", "7", "1"]  # nothing added
    assert cli.main(["seeds", "remove", "7", "9"]) == 1
    assert instance.get_dynamic_partitions("seed") == ["0", "7", "1"]
    assert cli.main(["seeds", "remove", "7"]) == 0
    capsys.readouterr()
    assert cli.main(["seeds", "list"]) == 0
    assert capsys.readouterr().out.split() == ["0", "1"]
