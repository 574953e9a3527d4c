"""The cost_model resource inside a real materialization: metadata, costs row, step time."""

import time

import duckdb
import pytest
from dagster import (
    AssetExecutionContext,
    DagsterInstance,
    DynamicPartitionsDefinition,
    Output,
    asset,
    materialize,
)

from polydag.core.storage.costs import total_sweep_cost
from polydag.defs.storage.costs import CostModel
from polydag.defs.resources import build_resources
from polydag.defs.storage.resources import PolydagStorage

parts = DynamicPartitionsDefinition(name="lambda")


@asset(partitions_def=parts)
def heavy(context: AssetExecutionContext, cost_model: CostModel, storage: PolydagStorage):
    time.sleep(0.3)  # some real step time for the STEP_START-based wall time
    costs = cost_model.record(context, storage, device="cuda")
    return Output(None, metadata={"n": 1, **costs})


def test_record_from_an_asset(tmp_path):
    resources = {"storage": PolydagStorage(data_dir=str(tmp_path)),
                 "cost_model": CostModel(cpu_hour_usd=0.1, gpu_hour_usd=36.0)}
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("lambda", ["0.5"])
        result = materialize([heavy], instance=instance, resources=resources, partition_key="0.5")
        assert result.success
        meta = result.asset_materializations_for_node("heavy")[0].metadata
    wall = meta["cost/wall_s"].value
    assert wall >= 0.3
    assert meta["cost/device"].value == "cuda"
    assert meta["cost/gpu_hours"].value == pytest.approx(wall / 3600)
    assert meta["cost/cost_usd"].value == pytest.approx(wall / 3600 * 36.0)

    con = duckdb.connect(str(tmp_path / "polydag.duckdb"), read_only=True)
    row = con.execute("SELECT run_id, asset, partition_keys, wall_s FROM costs").fetchall()
    con.close()
    assert row == [(result.run_id, "heavy", '["0.5"]', pytest.approx(wall))]
    assert total_sweep_cost(tmp_path / "polydag.duckdb")["cost_usd"] == pytest.approx(wall * 0.01)


def test_build_resources_has_a_cost_model(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYDAG_GPU_HOUR_USD", "4.2")
    model = build_resources(tmp_path)["cost_model"]
    assert isinstance(model, CostModel) and model.gpu_hour_usd == 4.2
