"""Cost accounting: the formula, bad input, the costs table and the sweep total."""

import json
import math

import duckdb
import pytest

from polydag.core.storage.costs import estimate_cost, is_gpu_device, record_cost, total_sweep_cost
from polydag.core.storage.table_docs import TABLE_DOCS, documented_columns_missing

PRICES = {"cpu_hour_usd": 0.10, "gpu_hour_usd": 3.00}


def test_formula_gpu_and_cpu():
    gpu = estimate_cost(1800, "cuda:1", n_devices=2, **PRICES)
    assert gpu.device_hours == pytest.approx(1.0) and gpu.gpu_hours == pytest.approx(1.0)
    assert gpu.price_per_hour == 3.00 and gpu.cost_usd == pytest.approx(3.00)
    cpu = estimate_cost(7200, "cpu", **PRICES)
    assert cpu.device_hours == pytest.approx(2.0) and cpu.gpu_hours == 0.0
    assert cpu.cost_usd == pytest.approx(0.20)


@pytest.mark.parametrize("kwargs, match", [
    ({"wall_s": -1, "device": "cpu"}, "wall_s"),
    ({"wall_s": math.nan, "device": "cpu"}, "wall_s"),
    ({"wall_s": 1, "device": "tpu"}, "unknown device 'tpu'"),
    ({"wall_s": 1, "device": "cpu", "n_devices": 0}, "n_devices"),
])
def test_bad_input_names_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        estimate_cost(**kwargs, **PRICES)
    with pytest.raises(ValueError, match="gpu_hour_usd"):
        estimate_cost(1, "cpu", cpu_hour_usd=1, gpu_hour_usd=-2)


def test_device_kinds():
    assert is_gpu_device("cuda") and is_gpu_device("CUDA:0") and not is_gpu_device("cpu")


def test_rows_and_sweep_total(tmp_path):
    db = tmp_path / "polydag.duckdb"
    duckdb.connect(str(db)).close()
    assert total_sweep_cost(db)["n_records"] == 0  # nothing recorded yet: an empty total
    a = record_cost(db, estimate_cost(3600, "cuda", **PRICES), run_id="r1",
                    asset="lora_checkpoints", partition_keys=["0.0", "1.0"])
    record_cost(db, estimate_cost(1800, "cpu", **PRICES), run_id="r2", asset="generations",
                partition_keys=["0.0"])
    record_cost(db, estimate_cost(1800, "cuda", **PRICES), run_id="r3", asset="lora_checkpoints")
    assert a["cost_usd"] == pytest.approx(3.0) and json.loads(a["partition_keys"]) == ["0.0", "1.0"]

    total = total_sweep_cost(db)
    assert total["n_records"] == 3
    assert total["cost_usd"] == pytest.approx(3.0 + 0.05 + 1.5)
    assert total["gpu_hours"] == pytest.approx(1.5)
    assert total["device_hours"] == pytest.approx(2.0)
    assert total["by_asset"]["lora_checkpoints"]["cost_usd"] == pytest.approx(4.5)
    assert total["by_asset"]["generations"]["n_records"] == 1

    con = duckdb.connect(str(db), read_only=True)
    columns = [r[0] for r in con.execute("DESCRIBE costs").fetchall()]
    con.close()
    assert documented_columns_missing("costs", columns) == []
    assert set(columns) == set(TABLE_DOCS["costs"])


def test_missing_database_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        total_sweep_cost(tmp_path / "none.duckdb")
