"""Diversity-collapse sensors for real: crafted training logs in a temp DuckDB, a real Dagster
instance, the real webhook over HTTP on 127.0.0.1, a lock held by another process, and one
tiny training run that collapses on purpose."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import duckdb
import polars as pl
import pytest
from dagster import AssetKey, AssetMaterialization, DagsterRunStatus, build_sensor_context, instance_for_test
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.test_utils import create_run_for_test

from polydag.core.storage import alerts as alert_store
from polydag_tests.e2e.harness import add_sweep
from polydag.core.polychromic.collapse import (
    COMBINED_NOT_BELOW_QUALITY,
    DIVERSITY_DROP,
    DIVERSITY_FLOOR,
    DIVERSITY_WORSE,
    GRAD_SHARE_ZERO,
    NONFINITE,
    PASS_AT_K_COLLAPSE,
    Alert,
    CollapseThresholds,
    training_alerts,
)
from polydag.core.storage.training_log import TrainingLogWriter
from polydag.defs.polychromic.resources import CollapseAlerting
from polydag.defs.resources import build_resources
from polydag.defs.storage.resources import PolydagStorage
from polydag.defs.polychromic.sensors import evaluation_collapse_sensor, training_collapse_sensor


def _write_run(db, run_id, lam, scores, *, shares=None, div_loss=-0.1, nan_step=None, first_step=1,
               seed_key=None):
    """One run's log through the real writer: every step is a diversity step. Each run is its
    own (λ, seed) unit unless ``seed_key`` says otherwise: the writer of a new training of a
    unit clears the rows a dead training of that unit left, so live runs never share a unit."""
    writer = TrainingLogWriter(db, run_id=run_id, lambda_key=repr(float(lam)), diversity_weight=lam,
                               seed_key=seed_key or run_id, flush_every_s=1e9)
    for i, score in enumerate(scores):
        step = first_step + i
        quality = float("nan") if step == nan_step else 2.0
        writer({"step": step, "quality_loss": quality, "diversity_score": score,
                "diversity_loss": div_loss, "combined_loss": quality + div_loss,
                "diversity_grad_share": 0.3 if shares is None else shares[i],
                "advantage_std": 0.01, "tied_prompt_share": 0.0,
                "learning_rate": 1e-3, "wall_time": float(step)})
    writer.flush()


CRAFTED = {  # run_id -> (λ, scores, kwargs, expected kinds)
    "run-healthy": (1.0, [0.8, 0.8, 0.8, 0.7, 0.75, 0.8], {}, set()),
    "run-floor": (1.0, [0.0] * 4, {}, {DIVERSITY_FLOOR}),
    "run-drop": (1.0, [0.8, 0.8, 0.8, 0.1, 0.1, 0.1], {}, {DIVERSITY_DROP}),
    "run-gradzero": (2.0, [0.5] * 4, {"shares": [0.0] * 4}, {GRAD_SHARE_ZERO}),
    "run-combined": (1.0, [0.5] * 4, {"div_loss": 0.2}, {COMBINED_NOT_BELOW_QUALITY}),
    "run-nan": (1.0, [0.5] * 4, {"nan_step": 2}, {NONFINITE}),
    # λ = 0: zero grad share and collapsed diversity are expected there, nothing is flagged
    "run-baseline": (0.0, [0.0] * 4, {"shares": [0.0] * 4, "div_loss": 0.0}, set()),
}


@pytest.fixture
def db(tmp_path):
    return tmp_path / "polydag.duckdb"


@pytest.fixture
def instance():
    with instance_for_test() as inst:
        yield inst


def _resources(tmp_path, **alerting):
    alerting.setdefault("db_timeout_s", 0.5)
    return {"storage": PolydagStorage(data_dir=str(tmp_path)), "collapse_alerting": CollapseAlerting(**alerting)}


def _tick(sensor_def, instance, cursor, resources):
    context = build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return sensor_def.evaluate_tick(context)


def _alerts(db):
    return alert_store.read_alerts(db)


def _max_seq(db):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT max(seq) FROM training_log").fetchone()[0]
    finally:
        con.close()


def test_each_training_flag_fires_for_its_run_only(tmp_path, db, instance):
    seeds = {run_id: str(i) for i, run_id in enumerate(CRAFTED)}
    add_sweep(instance, ["1.0", "2.0"], list(seeds.values()))
    for run_id, (lam, scores, kwargs, _) in CRAFTED.items():
        _write_run(db, run_id, lam, scores, seed_key=seeds[run_id], **kwargs)
    data = _tick(training_collapse_sensor, instance, None, _resources(tmp_path))
    stored = _alerts(db)
    got = {(r["run_id"], r["kind"]) for r in stored.iter_rows(named=True)}
    want = {(run_id, kind) for run_id, (_, _, _, kinds) in CRAFTED.items() for kind in kinds}
    assert got == want
    assert data.cursor == str(_max_seq(db))
    # each new alert shows up as an observation on its λ × seed partition of lora_checkpoints
    observed = {(e.partition, e.metadata["alert_kind"].value) for e in data.asset_events}
    assert observed == {(f"{float(CRAFTED[r][0])!r}|{seeds[r]}", k) for r, k in want}
    assert all(e.asset_key == AssetKey("lora_checkpoints") for e in data.asset_events)
    drop = stored.filter(pl.col("kind") == DIVERSITY_DROP).row(0, named=True)
    assert drop["value"] == pytest.approx((0.8 - 0.1) / 0.8) and drop["threshold"] == 0.5
    assert json.loads(drop["details"])["early_mean"] == pytest.approx(0.8)


def test_thresholds_are_config(tmp_path, db, instance):
    _write_run(db, "run-low", 1.0, [0.2] * 4)
    assert _tick(training_collapse_sensor, instance, None, _resources(tmp_path)).skip_message
    assert _alerts(db).is_empty()
    data = _tick(training_collapse_sensor, instance, None, _resources(tmp_path, diversity_floor=0.25))
    assert [r["kind"] for r in _alerts(db).iter_rows(named=True)] == [DIVERSITY_FLOOR]
    assert len(data.asset_events) == 1


def test_no_duplicates_across_ticks_and_the_cursor_advances(tmp_path, db, instance):
    resources = _resources(tmp_path)
    _write_run(db, "run-a", 1.0, [0.0] * 3)
    first = _tick(training_collapse_sensor, instance, None, resources)
    assert first.cursor == str(_max_seq(db)) and len(_alerts(db)) == 1

    again = _tick(training_collapse_sensor, instance, first.cursor, resources)
    assert again.cursor in (None, first.cursor) and "no training_log rows" in again.skip_message

    # more collapsed steps of the same run: re-evaluated with its history, not re-alerted
    _write_run(db, "run-a", 1.0, [0.0] * 3, first_step=4)
    third = _tick(training_collapse_sensor, instance, first.cursor, resources)
    assert int(third.cursor) == _max_seq(db) > int(first.cursor)
    assert len(_alerts(db)) == 1 and not third.asset_events
    # a replay from scratch writes nothing new either
    _tick(training_collapse_sensor, instance, None, resources)
    assert len(_alerts(db)) == 1

    # a new run of the same λ that collapses is a new alert
    _write_run(db, "run-b", 1.0, [0.0] * 3)
    fourth = _tick(training_collapse_sensor, instance, third.cursor, resources)
    assert sorted(_alerts(db)["run_id"].to_list()) == ["run-a", "run-b"]
    assert len(fourth.asset_events) == 1


_HOLD_LOCK = """
import duckdb, sys, time
con = duckdb.connect(sys.argv[1])
con.execute("INSERT INTO training_log (run_id, lambda_key, diversity_weight, step) VALUES ('x', '1.0', 1.0, 99)")
print("locked", flush=True)
sys.stdin.readline()
con.close()
"""


def test_busy_database_skips_the_tick_and_keeps_the_cursor(tmp_path, db, instance):
    resources = _resources(tmp_path, db_timeout_s=0.3)
    _write_run(db, "run-a", 1.0, [0.5] * 3)
    cursor = "1"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(db)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        busy = _tick(training_collapse_sensor, instance, cursor, resources)
        assert busy.cursor == cursor  # a bare skip: the stored cursor is left as it was
        assert "busy" in busy.skip_message and "seq 1" in busy.skip_message
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=30)
    # the lock is gone: the next tick reads from the old cursor, including the holder's row
    after = _tick(training_collapse_sensor, instance, cursor, resources)
    assert after.cursor == str(_max_seq(db))


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Hook.received
    server.shutdown()
    server.server_close()


def test_webhook_receives_each_new_alert_once(tmp_path, db, instance, webhook):
    url, received = webhook
    resources = _resources(tmp_path, webhook_url=url)
    _write_run(db, "run-nan", 1.0, [0.5] * 3, nan_step=2)
    _write_run(db, "run-floor", 1.0, [0.0] * 3)
    data = _tick(training_collapse_sensor, instance, None, resources)
    _tick(training_collapse_sensor, instance, None, resources)  # replay: nothing new to post
    assert [ctype for ctype, _ in received] == ["application/json"] * 2
    bodies = {b["run_id"]: b for _, b in received}
    assert bodies["run-nan"]["kind"] == NONFINITE and bodies["run-nan"]["value"] == "nan"
    assert bodies["run-floor"]["kind"] == DIVERSITY_FLOOR and bodies["run-floor"]["lambda_key"] == "1.0"
    assert {b["alert_id"] for b in bodies.values()} == set(_alerts(db)["alert_id"].to_list())
    assert data.cursor == str(_max_seq(db))


def test_unreachable_webhook_is_logged_not_raised(caplog):
    alert = Alert("training", DIVERSITY_FLOOR, "1.0", "r", 3, 0.0, 0.0, "msg")
    with HTTPServer(("127.0.0.1", 0), _Hook) as server:
        port = server.server_address[1]  # bound then closed: nothing listens there
    assert alert_store.post_webhook(f"http://127.0.0.1:{port}/", alert, timeout_s=2) is False
    assert "alert webhook" in caplog.text


def _queued_run(instance):
    """A run waiting in the QueuedRunCoordinator's queue (cancel_run really cancels it)."""
    from dagster._core.remote_origin import (
        InProcessCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    origin = RemoteJobOrigin(RemoteRepositoryOrigin(InProcessCodeLocationOrigin(
        LoadableTargetOrigin(python_file=__file__)), "repo"), "training")
    run = create_run_for_test(instance, job_name="training", status=DagsterRunStatus.NOT_STARTED,
                              remote_job_origin=origin)
    instance.report_dagster_event(DagsterEvent(DagsterEventType.RUN_ENQUEUED.value, job_name="training"),
                                  run_id=run.run_id)
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.QUEUED
    return run


@pytest.mark.parametrize("terminate", [True, False])
def test_terminate_on_collapse_cancels_the_offending_run(tmp_path, db, terminate):
    overrides = {"run_coordinator": {"module": "dagster._core.run_coordinator",
                                     "class": "QueuedRunCoordinator"}}
    with instance_for_test(overrides=overrides) as instance:
        bad, good = _queued_run(instance), _queued_run(instance)
        _write_run(db, bad.run_id, 1.0, [0.0] * 3)
        _write_run(db, good.run_id, 1.0, [0.8] * 3)
        _tick(training_collapse_sensor, instance, None, _resources(tmp_path, terminate_on_collapse=terminate))
        status = instance.get_run_by_id(bad.run_id).status
        assert status == (DagsterRunStatus.CANCELED if terminate else DagsterRunStatus.QUEUED)
        assert instance.get_run_by_id(good.run_id).status == DagsterRunStatus.QUEUED


def _write_evaluation(db, self_bleu_p=0.01, pass10=0.1):
    rows = []
    for key, lam in (("1.0", 1.0), ("2.0", 2.0)):
        for metric, hib, value, base, p in (
            ("distinct_2", True, 0.6, 0.5, 0.001),          # better, significant: fine
            ("self_bleu", False, 0.7, 0.5, self_bleu_p),    # higher Self-BLEU is worse
            ("semantic_diversity", True, 0.2, 0.3, 0.40),   # worse but not significant
            ("pass_at_10", True, pass10 if key == "2.0" else 0.5, 0.5, 0.2),
        ):
            rows.append({"lambda_key": key, "diversity_weight": lam, "baseline_key": "0.0", "metric": metric,
                         "higher_is_better": hib, "value": value, "baseline": base,
                         "rel_change": (value - base) / base, "p_holm": p})
    comparison = pl.DataFrame(rows)
    summary = pl.DataFrame({"lambda_key": ["0.0", "1.0", "2.0"], "diversity_weight": [0.0, 1.0, 2.0],
                            "pass_at_10": [0.5, 0.5, pass10]})
    con = duckdb.connect(str(db))
    try:
        con.execute("CREATE OR REPLACE TABLE comparison AS SELECT * FROM comparison")
        con.execute("CREATE OR REPLACE TABLE metrics_summary AS SELECT * FROM summary")
    finally:
        con.close()


def test_evaluation_sensor_fires_on_materialization_and_flags_worse_diversity(tmp_path, db, instance):
    resources = _resources(tmp_path)
    _write_evaluation(db)
    assert "no new materialization" in _tick(evaluation_collapse_sensor, instance, None, resources).skip_message
    instance.report_runless_asset_event(AssetMaterialization("comparison"))
    data = _tick(evaluation_collapse_sensor, instance, None, resources)
    got = sorted((r["lambda_key"], r["kind"], json.loads(r["details"])["metric"])
                 for r in _alerts(db).iter_rows(named=True))
    assert got == [("1.0", DIVERSITY_WORSE, "self_bleu"), ("2.0", DIVERSITY_WORSE, "self_bleu"),
                   ("2.0", PASS_AT_K_COLLAPSE, "pass_at_10")]
    assert len(data.asset_events) == 3
    # the same materialization on the next tick: nothing new, cursor kept
    again = _tick(evaluation_collapse_sensor, instance, data.cursor, resources)
    assert again.skip_message and len(_alerts(db)) == 3
    # verdict materializes later: re-evaluated, still no duplicates
    instance.report_runless_asset_event(AssetMaterialization("verdict"))
    third = _tick(evaluation_collapse_sensor, instance, data.cursor, resources)
    assert json.loads(third.cursor)["verdict"] > 0 and len(_alerts(db)) == 3


def test_evaluation_thresholds_decide(tmp_path, db, instance):
    _write_evaluation(db, self_bleu_p=0.2, pass10=0.4)  # not significant; a 20% drop only
    instance.report_runless_asset_event(AssetMaterialization("metrics"))
    data = _tick(evaluation_collapse_sensor, instance, None, _resources(tmp_path))
    assert _alerts(db).is_empty() and data.skip_message
    instance.report_runless_asset_event(AssetMaterialization("metrics"))
    _tick(evaluation_collapse_sensor, instance, data.cursor,
          _resources(tmp_path, alpha=0.25, max_pass_at_k_drop=0.1))
    assert sorted(_alerts(db)["kind"].to_list()) == [DIVERSITY_WORSE, DIVERSITY_WORSE, PASS_AT_K_COLLAPSE]


def test_pure_flags_need_enough_steps_and_reject_bad_thresholds():
    rows = pl.DataFrame({"seq": [1, 2], "run_id": ["r", "r"], "lambda_key": ["1.0"] * 2,
                         "diversity_weight": [1.0] * 2, "step": [1, 2], "quality_loss": [2.0] * 2,
                         "diversity_score": [0.5] * 2, "diversity_loss": [0.1] * 2,
                         "combined_loss": [2.1] * 2, "diversity_grad_share": [0.0] * 2})
    assert training_alerts(rows, CollapseThresholds()) == []  # 2 < min_diversity_steps
    kinds = {a.kind for a in training_alerts(rows, CollapseThresholds(min_diversity_steps=2))}
    assert kinds == {GRAD_SHARE_ZERO, COMBINED_NOT_BELOW_QUALITY}
    with pytest.raises(KeyError, match="diversity_grad_share"):
        training_alerts(rows.drop("diversity_grad_share"), CollapseThresholds())
    with pytest.raises(ValueError, match="window_steps"):
        CollapseThresholds(window_steps=0)
    with pytest.raises(ValueError, match="diversity_floor"):
        CollapseThresholds(diversity_floor=math.nan)


@pytest.mark.e2e
def test_a_real_training_run_with_identical_samples_raises_an_alert(tmp_path, instance):
    """temperature 1e-3 makes the N samples of a prompt identical: their set diversity is 0
    (under the floor), every leave-one-out advantage is zero, so at λ = 1 the diversity term
    has no gradient and adds nothing.

    The sensor reads the live log while training runs, before the adapter's gates: this trains
    through the trainer with the asset's own log writer and ticks the sensor on that log (the
    asset's gate then refuses the adapter and drops the log, which
    ``test_polychromic_training`` covers)."""
    from polydag.core.polychromic.config import PolychromicTrainConfig
    from polydag.core.polychromic.gates import adapter_gates
    from polydag.core.polychromic.trainer import train_lora_adapter
    from polydag_tests.e2e.harness import TINY_BASE, TINY_LORA, Pipeline, write_reply_pairs

    source = write_reply_pairs(tmp_path / "pairs.jsonl")
    add_sweep(instance, ["1.0"])
    pipe = Pipeline(tmp_path, instance)
    assert pipe.run(["reply_pairs", "base_model"], {"reply_pairs": {"path": str(source), "max_test_prompts": 6},
                                                     "base_model": TINY_BASE}).success
    pairs = pipe.sql("SELECT prompt, reply FROM reply_pairs WHERE split = 'train' ORDER BY prompt, reply").rows()
    cfg = PolychromicTrainConfig.for_partition(
        "1.0", dict(TINY_LORA, temperature=1e-3, compute_diversity_every_n_steps=1), "0")
    writer = TrainingLogWriter(tmp_path / "polydag.duckdb", run_id="run-collapsed", lambda_key="1.0",
                               seed_key="0", diversity_weight=1.0)
    result = train_lora_adapter(pipe.sql("SELECT path FROM base_model").item(), pairs, cfg,
                                tmp_path / "adapter", log_fn=writer)
    writer.flush()
    data = _tick(training_collapse_sensor, instance, None, build_resources(tmp_path))
    alerts = pipe.sql("SELECT * FROM alerts ORDER BY kind")
    assert set(alerts["kind"]) == {GRAD_SHARE_ZERO, COMBINED_NOT_BELOW_QUALITY, DIVERSITY_FLOOR}
    assert set(alerts["run_id"]) == {"run-collapsed"} and set(alerts["lambda_key"]) == {"1.0"}
    assert data.cursor == str(pipe.sql("SELECT max(seq) FROM training_log").item())
    assert {e.partition for e in data.asset_events} == {"1.0|0"}
    failed = {g.name for g in adapter_gates(result, vocab_size=result.vocab_size, max_loss_ratio=cfg.gate_max_loss_ratio)
              if not g.passed}
    assert failed == {"diversity_gradient"}
