"""The Dagster UI in a real headless browser, over the real code location and instance config.

``dagster dev -w workspace.yaml`` starts from the repo root with a temporary DAGSTER_HOME (a
copy of the shipped ``data/dagster_home/dagster.yaml``: queued coordinator, GPU launcher) and a
temporary data dir. Headless Chromium opens the asset graph of each group; the test checks the rendered
DOM for our asset names, saves a screenshot, checks the webserver listens on 127.0.0.1 only,
and launches ``reply_pairs`` through the GraphQL API, which must succeed (queue -> launcher ->
its own run process -> rows in DuckDB).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO_ROOT / "bench" / "results" / "ui_asset_graph.png"
GROUP_ASSETS = {
    "polychromic": ["reply_pairs", "base_model", "lora_checkpoints"],
    "evaluation": ["generations", "metrics", "metrics_summary", "comparison", "dose_response", "metric_validity",
                   "verdict"],
    "step_importance": ["problems", "codi_model", "step_importance", "step_importance_summary"],
}
# The UI shows a "join the community" dialog over every page whose origin is 127.0.0.1 or
# localhost; the browser reaches the same loopback server under another name instead.
BROWSER_HOST = "polydag.localtest"
ADD_PARTITION = """mutation($name: String!, $key: String!) { addDynamicPartition(
    repositorySelector: {repositoryLocationName: "polydag", repositoryName: "__repository__"},
    partitionsDefName: $name, partitionKey: $key) { __typename } }"""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-quic", "--no-first-run", "--disable-component-update",
                  "--disable-sync", "--disable-dev-shm-usage",
                  "--host-resolver-rules=MAP polydag.localtest 127.0.0.1"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium on PATH: install Debian's `chromium` package "
                "(scripts/test.sh tries `apt-get install -y chromium`)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout_s:.0f}s")
        time.sleep(0.5)


def _run_errors(home: Path, run_id: str) -> str:
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        return "\n".join(
            f"{e.dagster_event.event_type_value if e.dagster_event else ''}: {e.message} "
            f"{e.dagster_event.event_specific_data if e.dagster_event else ''}"
            for e in instance.all_logs(run_id) if e.level >= 30
        )


def _browser(chromium: str, profile: Path, *args: str, timeout_s: float = 120) -> str:
    out = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=timeout_s,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.e2e
def test_asset_graph_renders_in_chromium_and_graphql_materializes(tmp_path):
    from dagster_graphql import DagsterGraphQLClient

    chromium = _chromium()
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "data" / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    data = tmp_path / "data"
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "POLYDAG_DATA_DIR": str(data),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    log_path = tmp_path / "dev.log"
    log = open(log_path, "wb")
    dev = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(port)],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=60)

        def _serving():
            assert dev.poll() is None, log_path.read_text()[-3000:]
            try:
                import urllib.request

                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    return True
            except OSError:
                return False

        _wait(_serving, 120, "dagster dev to serve /server_info")

        # the webserver listens on the loopback interface only
        listeners = {
            conn.laddr.ip
            for proc in [psutil.Process(dev.pid), *psutil.Process(dev.pid).children(recursive=True)]
            for conn in proc.net_connections(kind="tcp")
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port
        }
        assert listeners == {"127.0.0.1"}, listeners

        # the code location loaded (the UI would show an error page otherwise)
        loaded = client._execute("""{ workspaceOrError { ... on Workspace { locationEntries {
            name locationOrLoadError { __typename ... on PythonError { message } } } } } }""")
        entries = loaded["workspaceOrError"]["locationEntries"]
        assert [(e["name"], e["locationOrLoadError"]["__typename"]) for e in entries] == \
            [("polydag", "RepositoryLocation")], entries

        # two λ partitions and a seed, added the way a user would without a CLI (GraphQL mutation)
        for name, key in (("lambda", "0.0"), ("lambda", "1.0"), ("seed", "0")):
            added = client._execute(ADD_PARTITION, {"name": name, "key": key})
            assert added["addDynamicPartition"]["__typename"] == "AddDynamicPartitionSuccess", added

        # what the UI lists as the λ × seed partitions of generations (its own GraphQL query)
        node = client._execute("""{ assetNodeOrError(assetKey: {path: ["generations"]}) {
            ... on AssetNode { partitionKeys } } }""")
        assert node["assetNodeOrError"]["partitionKeys"] == ["0.0|0", "1.0|0"]

        # each group's asset graph, rendered by a real browser. The global lineage page shows
        # groups collapsed, so the group pages are what shows the asset nodes.
        profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp_path))
        base = f"http://{BROWSER_HOST}:{port}/locations/polydag/asset-groups"
        started = time.monotonic()
        for group, names in GROUP_ASSETS.items():
            # a wide window: the graph renders only the nodes inside the viewport
            dom = _browser(chromium, profile, "--virtual-time-budget=30000",
                           "--window-size=2400,1400", "--dump-dom",
                           f"{base}/{group}/lineage")
            missing = [n for n in names if f">{n}<" not in dom]
            assert not missing, f"asset names missing from the {group} graph: {missing}"
        shot = tmp_path / "ui_asset_graph.png"
        _browser(chromium, profile, "--virtual-time-budget=30000", "--window-size=1600,1000",
                 f"--screenshot={shot}", f"{base}/evaluation/lineage")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, SCREENSHOT)
        browser_s = time.monotonic() - started

        # a cheap materialization through the GraphQL API, end to end through the queue
        run_id = client.submit_job_execution(
            "__ASSET_JOB", repository_location_name="polydag", repository_name="__repository__",
            asset_selection=["reply_pairs"],
            run_config={"ops": {"reply_pairs": {"config": {
                "path": str(REPO_ROOT / "data" / "reply_pairs.jsonl")}}}},
        )
        from dagster import DagsterRunStatus

        finished = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
        _wait(lambda: client.get_run_status(run_id) in finished, 180, "the reply_pairs run")
        assert client.get_run_status(run_id) == DagsterRunStatus.SUCCESS, _run_errors(home, run_id)
        import duckdb

        con = duckdb.connect(str(data / "polydag.duckdb"), read_only=True)
        try:
            assert con.execute("SELECT count(*) FROM reply_pairs").fetchone()[0] > 0
        finally:
            con.close()
        print(f"browser (dump-dom + screenshot): {browser_s:.1f}s; screenshot: {SCREENSHOT}")
    finally:
        if dev.poll() is None:
            dev.send_signal(signal.SIGINT)
            try:
                dev.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(dev.pid, signal.SIGKILL)  # the session this test started
                dev.wait(timeout=10)
        log.close()
