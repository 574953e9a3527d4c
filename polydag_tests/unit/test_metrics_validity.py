"""metric_validity: rank correlation of each diversity metric with ground-truth distinct_k."""

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from polydag.core.evaluation.metrics.validity import NO_GROUND_TRUTH, metric_validity, plot_validity

METRICS = ("distinct_2", "self_bleu", "vendi")


def _metrics(source="intent", n_prompts=20, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_prompts):
        for key in ("0.0", "1.0"):
            k = int(rng.integers(1, 9))
            rows.append({"lambda_key": key, "prompt_id": f"p{p:02d}", "distinct_k": k, "distinct_k_source": source,
                         "distinct_2": 0.1 * k + rng.normal(0, 0.05),  # tracks distinct_k
                         "self_bleu": 1.0 - 0.1 * k,                   # tracks it exactly, lower = diverse
                         "vendi": float(rng.uniform(1, 5))})           # unrelated
    return pl.DataFrame(rows)


def test_correlations_are_spearman_oriented_with_prompt_bootstrap_cis():
    table = _metrics()
    result = metric_validity(table, METRICS, n_boot=300)
    rows = {r["metric"]: r for r in result.iter_rows(named=True)}
    for metric in METRICS:
        assert rows[metric]["spearman_rho"] == pytest.approx(spearmanr(table[metric], table["distinct_k"]).statistic)
        assert rows[metric]["n_rows"] == 40 and rows[metric]["n_prompts"] == 20
        assert rows[metric]["resampled"] == "prompts"
    assert rows["self_bleu"]["spearman_rho"] == pytest.approx(-1.0)
    assert rows["self_bleu"]["rho_oriented"] == pytest.approx(1.0)  # lower Self-BLEU = more diverse
    d2 = rows["distinct_2"]
    assert d2["rho_oriented"] > 0.8 and d2["ci_low"] > 0.5 and d2["ci_low"] <= d2["rho_oriented"] <= d2["ci_high"]
    vendi = rows["vendi"]
    assert vendi["ci_low"] < 0 < vendi["ci_high"]  # unrelated: the CI straddles 0


def test_without_ground_truth_every_correlation_is_null_and_says_why(tmp_path):
    result = metric_validity(_metrics(source="embedding"), METRICS, n_boot=50)
    assert result["spearman_rho"].null_count() == result.height
    assert set(result["note"]) == {NO_GROUND_TRUTH}
    path = plot_validity(result, _metrics(source="embedding"), tmp_path / "validity.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
