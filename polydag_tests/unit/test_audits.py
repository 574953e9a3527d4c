import polars as pl

from polydag.core.polychromic.gradient_audit import zero_gradient_lambdas
from polydag.core.evaluation.metric_audit import diversity_metric_problems, pass_at_k_ceilings


def test_gradient_audit_flags_zero_and_missing_shares_for_positive_lambda_only():
    log = pl.DataFrame({
        "lambda_key": ["0.0", "0.0", "0.3", "0.3", "1.0"],
        "diversity_grad_share": [0.0, None, 0.2, None, 0.0],
    })
    audit = zero_gradient_lambdas(log, ["0.0", "0.3", "1.0", "2.0"])
    assert dict(audit.select("lambda_key", "ok").iter_rows()) == {
        "0.0": True, "0.3": True, "1.0": False, "2.0": False}
    assert audit.filter(pl.col("lambda_key") == "2.0")["n_diversity_steps"].item() == 0


def _metrics(**columns):
    base = {"lambda_key": ["0.0", "0.0"], "n_samples": [10, 10], "distinct_1": [0.4, 0.5],
            "distinct_2": [0.6, 0.7], "self_bleu": [0.3, 0.2],
            "semantic_diversity": [0.3, 0.4], "vendi": [2.0, 3.0]}
    base.update(columns)
    return pl.DataFrame(base)


def test_sane_metrics_pass():
    assert diversity_metric_problems(_metrics()) == []


def test_all_zero_nan_and_out_of_range_are_each_reported():
    problems = diversity_metric_problems(_metrics(
        distinct_2=[0.0, 0.0], self_bleu=[float("nan"), 0.2], semantic_diversity=[0.1, 2.5],
        vendi=[0.5, 11.0]))
    assert "λ=0.0 distinct_2: all 2 values are 0" in problems
    assert "λ=0.0 self_bleu: 1 of 2 values are NaN or missing" in problems
    assert any(p.startswith("λ=0.0 semantic_diversity: 1 value(s) outside") for p in problems)
    assert any(p.startswith("λ=0.0 vendi: 2 value(s) outside") for p in problems)
    assert len(problems) == 4


def test_pass_at_k_ceiling():
    summary = pl.DataFrame({"lambda_key": ["0.0", "1.0"], "pass_at_1": [0.7, 0.6],
                            "pass_at_10": [0.998, 0.9]})
    assert pass_at_k_ceilings(summary) == ["λ=0.0 pass_at_10 = 0.998 ≥ 0.95"]


def test_a_few_undefined_prompts_are_tolerated_but_not_many():
    n = 20
    ok = _metrics(**{k: v * 10 for k, v in _metrics().to_dict(as_series=False).items()})
    assert ok.height == n
    one_nan = ok.with_columns(
        self_bleu=pl.when(pl.int_range(pl.len()) == 0).then(float("nan")).otherwise(pl.col("self_bleu")))
    assert diversity_metric_problems(one_nan) == []
    many = ok.with_columns(
        self_bleu=pl.when(pl.int_range(pl.len()) < 5).then(None).otherwise(pl.col("self_bleu")))
    assert diversity_metric_problems(many) == ["λ=0.0 self_bleu: 5 of 20 values are NaN or missing"]
