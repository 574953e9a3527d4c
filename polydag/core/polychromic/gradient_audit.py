"""Gradient audit of the diversity term, from the rows of ``training_log``.

The researchers' loss ``ce − λ·float(diversity)`` trained exactly like ``ce``: the diversity
term had no gradient, so λ changed nothing. The trainer records, on every diversity step, the
diversity term's share of the gradient norm ``‖g_div‖ / (‖g_quality‖ + ‖g_div‖)``. A λ > 0
whose shares are all zero (or missing) is that bug.
"""

from __future__ import annotations

import polars as pl

from polydag.core.polychromic.lambdas import lambda_value


def zero_gradient_lambdas(log: pl.DataFrame, lambda_keys: list[str]) -> pl.DataFrame:
    """One row per λ key: ``n_diversity_steps``, ``max_grad_share``, ``mean_grad_share``, ``ok``.

    ``log`` holds training_log rows (lambda_key, diversity_grad_share). ``ok`` is False for a
    λ > 0 with no logged diversity step, or whose largest share is not > 0. λ = 0 is expected
    to have share 0 and is always ok.
    """
    expected = pl.DataFrame(
        {
            "lambda_key": list(lambda_keys),
            "diversity_weight": [lambda_value(k) for k in lambda_keys],
        }
    )
    stats = (
        log.group_by("lambda_key")
        .agg(
            pl.col("diversity_grad_share").drop_nulls().len().alias("n_diversity_steps"),
            pl.col("diversity_grad_share").max().alias("max_grad_share"),
            pl.col("diversity_grad_share").mean().alias("mean_grad_share"),
        )
    )
    audit = expected.join(stats, on="lambda_key", how="left").sort("diversity_weight")
    return audit.with_columns(
        pl.col("n_diversity_steps").fill_null(0),
        ok=(pl.col("diversity_weight") == 0)
        | ((pl.col("n_diversity_steps") > 0) & (pl.col("max_grad_share").fill_null(0) > 0))
    )
