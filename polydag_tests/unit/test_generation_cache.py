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


# --------------------------------------------------------------------------- generation_batches


def _store(tmp_path, **kwargs):
    from polydag.core.storage.generation_batches import GenerationBatches

    return GenerationBatches(tmp_path / "polydag.duckdb", **kwargs)


def test_finished_prompts_come_back_only_under_their_key_and_only_when_complete(tmp_path):
    store = _store(tmp_path)
    assert store.finished("k1", 2) == {}  # no database yet
    assert store.add("k1", "0.0", {"p1": ["a", "b"], "p2": ["c", "d"]})
    assert store.add("k1", "0.0", {"p3": ["e", "f"]})
    assert store.finished("k1", 2) == {"p1": ["a", "b"], "p2": ["c", "d"], "p3": ["e", "f"]}
    assert store.finished("k2", 2) == {}                  # another key never sees them
    assert store.finished("k1", 3) == {}                  # fewer samples than the draw needs: missing
    assert store.add("k1", "0.0", {"p1": ["x", "y"]})     # a prompt drawn again replaces its rows
    assert store.finished("k1", 2)["p1"] == ["x", "y"]
    import duckdb

    con = duckdb.connect(str(tmp_path / "polydag.duckdb"))
    con.execute("DELETE FROM generation_batches WHERE prompt_id = 'p2' AND sample_idx = 1")
    con.close()
    assert set(store.finished("k1", 2)) == {"p1", "p3"}   # a half-kept prompt is drawn again


def test_prune_keeps_only_the_current_key_of_a_lambda(tmp_path):
    store = _store(tmp_path)
    store.add("old", "0.0", {"p1": ["a"]})
    store.add("new", "0.0", {"p1": ["b"]})
    store.add("other", "1.0", {"p1": ["c"]})
    assert store.prune("0.0", keep_cache_key="new") == 1
    assert store.finished("old", 1) == {} and store.finished("new", 1) == {"p1": ["b"]}
    assert store.prune("0.0") == 1                        # the stored partition holds them: all go
    assert store.finished("new", 1) == {} and store.finished("other", 1) == {"p1": ["c"]}


def test_a_busy_database_keeps_the_batch_pending_until_it_can_be_written(tmp_path):
    import subprocess
    import sys

    store = _store(tmp_path, timeout_s=0.5)
    store.add("k", "0.0", {"p0": ["z"]})  # creates the file and the table
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
         "time.sleep(60)", str(tmp_path / "polydag.duckdb")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not store.add("k", "0.0", {"p1": ["a", "b"]})
        assert not store.add("k", "0.0", {"p2": ["c", "d"]})
    finally:
        holder.kill()
        holder.wait()
    assert store.flush()
    assert store.finished("k", 2) == {"p1": ["a", "b"], "p2": ["c", "d"]}


def test_the_partition_cache_key_covers_device_and_dtype():
    import torch

    from polydag.core.evaluation.config import GenerationConfig, QualityConfig
    from polydag.core.evaluation.generation import partition_cache_key

    row = {"adapter_sha256": "ab" * 32, "base_model_sha256": "cd" * 32}
    prompts = pl.DataFrame({"prompt_id": ["p"], "prompt": ["hello"]})
    key = lambda **kw: partition_cache_key(row, prompts, GenerationConfig(), QualityConfig(), **kw)  # noqa: E731
    base = key(device="cuda", dtype=torch.bfloat16)
    assert base == key(device="cuda", dtype=torch.bfloat16)
    assert base != key(device="cuda", dtype=torch.float16)
    assert base != key(device="cpu", dtype=torch.bfloat16)
    assert base != partition_cache_key(row, prompts.with_columns(prompt=pl.lit("bye")), GenerationConfig(),
                                       QualityConfig(), device="cuda", dtype=torch.bfloat16)
