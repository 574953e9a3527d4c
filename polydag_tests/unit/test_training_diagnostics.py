import polars as pl
import pytest

from polydag.core.polychromic.diagnostics import diagnostics_markdown, training_diagnostics


def _checkpoints(**extra) -> pl.DataFrame:
    return pl.DataFrame({
        "lambda_key": ["1.0", "0.0", "1.0", "0.0"],
        "seed_key": ["0", "0", "1", "1"],
        "n_diversity_steps": [60, 60, 60, 60],
        "n_effective_diversity_steps": [55, 0, 60, 0],
        "mean_diversity_grad_share": [0.2, 0.0, 0.25, 0.0],
        "mean_advantage_std": [0.01, 0.02, 0.03, 0.04],
        "kl_to_base": [0.3, 0.2, 0.5, 0.25],
        **extra,
    })


def test_kl_is_compared_with_lambda_zero_of_the_same_seed():
    table = training_diagnostics(_checkpoints())
    assert table["lambda_key"].to_list() == ["0.0", "0.0", "1.0", "1.0"]
    assert table["seed_key"].to_list() == ["0", "1", "0", "1"]
    assert table["kl_vs_lambda0"].to_list() == pytest.approx([1.0, 1.0, 1.5, 2.0])
    assert table["n_effective_diversity_steps"].to_list() == [0, 0, 55, 60]


def test_rows_from_before_the_diagnostics_have_nulls_not_errors():
    old = _checkpoints().drop("n_effective_diversity_steps", "mean_advantage_std", "kl_to_base")
    table = training_diagnostics(old)
    assert table["kl_to_base"].null_count() == 4 and table["kl_vs_lambda0"].null_count() == 4
    text = diagnostics_markdown(table)
    assert "– / 60" in text and text.count("\n| 1.0 |") == 2


def test_a_seed_without_lambda_zero_has_no_ratio():
    table = training_diagnostics(_checkpoints().filter(~((pl.col("seed_key") == "1") & (pl.col("lambda_key") == "0.0"))))
    ratio = dict(zip(zip(table["lambda_key"], table["seed_key"]), table["kl_vs_lambda0"]))
    assert ratio[("1.0", "0")] == pytest.approx(1.5) and ratio[("1.0", "1")] is None


def test_no_adapters_says_so():
    assert training_diagnostics(pl.DataFrame()).is_empty()
    assert diagnostics_markdown(pl.DataFrame()) == "No trained adapters yet."
