"""The generations cache decision (core, no model): reuse only a complete set under one key."""

import polars as pl

from polydag.core.evaluation.generation import reuse_cached


def _rows(n, key="k1"):
    return pl.DataFrame({"cache_key": [key] * n, "text": [f"t{i}" for i in range(n)]})


def test_reuses_only_a_complete_partition_under_the_same_key():
    assert reuse_cached(_rows(20), "k1", 20)


def test_a_new_key_or_a_missing_row_samples_afresh():
    assert not reuse_cached(_rows(20), "k2", 20)          # adapter, config, checker or prompts changed
    assert not reuse_cached(_rows(19), "k1", 20)          # a row is missing
    assert not reuse_cached(_rows(21), "k1", 20)          # more rows than the config asks for
    mixed = pl.concat([_rows(10, "k1"), _rows(10, "k2")])
    assert not reuse_cached(mixed, "k1", 20)              # rows of two different draws


def test_nothing_stored_yet():
    assert not reuse_cached(None, "k1", 20)
    assert not reuse_cached(pl.DataFrame(), "k1", 20)


def test_an_adapter_that_did_not_pass_its_gates_is_refused_before_any_work():
    import pytest

    from polydag.core.evaluation.config import GenerationConfig, QualityConfig
    from polydag.core.evaluation.generation import generate_partition

    prompts = pl.DataFrame({"prompt_id": ["p"], "prompt": ["hello"]})
    row = {"lambda_key": "1.0", "adapter_sha256": "ab" * 32, "base_model_sha256": "cd" * 32,
           "base_model_path": "/nonexistent", "adapter_dir": "/nonexistent", "diversity_weight": 1.0}
    for gates in ({}, {"gates_passed": False}):
        with pytest.raises(ValueError, match="has not passed its training gates"):
            generate_partition({**row, **gates}, prompts, GenerationConfig(), QualityConfig(min_relevance=None))
