"""The deployments end to end against a real Prefect server on 127.0.0.1 (issue 7's integration test).

`scripts/ui.sh start` (what `make ui` runs) starts a server and a process worker and registers prefect.yaml;
then `prefect deployment run s3-train/tiny` trains on the tiny world (a short setting: 2 PPO steps, one
checkpoint each). Checked: the run completes with its evaluation table and report artifacts; each
`s3.checkpoint.saved` event started an `s3-evaluate/on-checkpoint` run, which completed; the work queue
`gpu` kept them from running beside the training run; a headless Chromium (Debian's package, driven by
Playwright) opens the flow-run page, its Artifacts tab and the evaluation table, and a screenshot is saved;
`scripts/ui.sh stop` stops exactly the processes it started.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
RUN_TIMEOUT_S = 900
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def prefect_ui(tmp_path_factory):
    """`scripts/ui.sh start` on a free port with its own PREFECT_HOME; `scripts/ui.sh stop` afterwards."""
    tmp = tmp_path_factory.mktemp("ui")
    port = free_port()
    env = {**os.environ, "S3_UI_PORT": str(port), "S3_UI_STATE": str(tmp / "state"), "PREFECT_HOME": str(tmp / "home"),
           "PREFECT_WORKER_QUERY_SECONDS": "2"}  # the worker notices new runs sooner than its default 10 s
    env.pop("PREFECT_API_URL", None)
    started = subprocess.run([str(REPO / "scripts" / "ui.sh"), "start"], env=env, capture_output=True, text=True,
                             timeout=300)
    if started.returncode != 0:
        subprocess.run([str(REPO / "scripts" / "ui.sh"), "stop"], env=env, timeout=120)
        pytest.fail(f"scripts/ui.sh start failed:\n{started.stdout}\n{started.stderr}")
    pids = {name: int((tmp / "state" / f"{name}.pid").read_text()) for name in ("server", "worker")}
    yield {"url": f"http://127.0.0.1:{port}", "env": {**env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"},
           "pids": pids, "tmp": tmp}
    stopped = subprocess.run([str(REPO / "scripts" / "ui.sh"), "stop"], env=env, capture_output=True, text=True,
                             timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    for name, pid in pids.items():
        assert not _alive(pid), f"the {name} (pid {pid}) outlived scripts/ui.sh stop"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _short_tiny_config(tiny_indexes, tmp: Path) -> Path:
    """configs/tiny.yaml on the test session's store (world and indexes already built), trained briefly."""
    data = yaml.safe_load(Path(tiny_indexes["config"]).read_text())
    data["ppo"].update(total_steps=2, save_every=1, keep_last=2, train_batch_size=4, mini_batch_size=2)
    data["inference"]["baselines"] = [{"name": "rag-bm25", "strategy": "naive", "retriever": "bm25"}]
    path = tmp / "tiny-deployed.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _api(prefect_ui, coroutine_fn):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def call():
        async with get_client() as client:
            return await coroutine_fn(client)

    with temporary_settings({PREFECT_API_URL: prefect_ui["env"]["PREFECT_API_URL"]}):
        return asyncio.run(call())


def _deployment_runs(prefect_ui, name: str):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

    async def read(client):
        deployment = await client.read_deployment_by_name(name)
        return await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id])))
    return _api(prefect_ui, read)


def _wait_for(prefect_ui, name: str, count: int, timeout_s: float):
    """The runs of deployment `name` once `count` of them exist and all are final (or the deadline passes)."""
    deadline = time.monotonic() + timeout_s
    while True:
        runs = _deployment_runs(prefect_ui, name)
        if len(runs) >= count and all(r.state and r.state.is_final() for r in runs):
            return runs
        if time.monotonic() > deadline:
            return runs
        time.sleep(3)


def _worker_log(prefect_ui) -> str:
    return (prefect_ui["tmp"] / "state" / "worker.log").read_text(errors="replace")[-6000:]


def test_deployed_training_completes_and_checkpoints_trigger_evaluations(prefect_ui, tiny_indexes, tmp_path):
    config = _short_tiny_config(tiny_indexes, tmp_path)
    started = subprocess.run([str(REPO / ".venv" / "bin" / "prefect"), "deployment", "run", "s3-train/tiny",
                              "--param", f"config_path={config}"], env=prefect_ui["env"], capture_output=True,
                             text=True, timeout=120, cwd=REPO)
    assert started.returncode == 0, started.stdout + started.stderr
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", started.stdout).group(1)

    (train,) = _wait_for(prefect_ui, "s3-train/tiny", 1, RUN_TIMEOUT_S)
    assert str(train.id) == run_id
    assert train.state.is_completed(), f"s3-train/tiny ended {train.state_name}:\n{_worker_log(prefect_ui)}"

    # the run's evaluation: a table with the trained searcher and the baseline, and the markdown report
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    artifacts = _api(prefect_ui, lambda c: c.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[train.id]))))
    by_key = {a.key: a for a in artifacts if a.key}
    assert {"tiny-evaluation", "tiny-report", "tiny-contexts"} <= set(by_key), sorted(by_key)
    table = yaml.safe_load(by_key["tiny-evaluation"].data)  # JSON is YAML
    assert [row["run"] for row in table] == ["s3@step-2", "rag-bm25"]
    assert "## GenAcc" in by_key["tiny-report"].data and "reward_curve.png" in by_key["tiny-report"].data

    # one evaluation per checkpoint event, started by the automation, each completed after training
    evaluations = _wait_for(prefect_ui, "s3-evaluate/on-checkpoint", 2, 600)
    assert len(evaluations) == 2, [(r.name, r.state_name) for r in evaluations]
    assert all(r.state.is_completed() for r in evaluations), [(r.name, r.state_name) for r in evaluations]
    assert sorted(r.parameters["step"] for r in evaluations) == [1, 2]
    assert all(r.work_queue_name == "gpu" for r in evaluations + [train])
    assert all(r.start_time >= train.end_time for r in evaluations)  # the gpu queue held them until training ended

    shot = tmp_path / "flow-run-evaluation.png"
    rendered = _screenshot_evaluation_table(prefect_ui["url"], run_id, shot)
    assert "s3@step-2" in rendered and "rag-bm25" in rendered and "avg" in rendered
    assert shot.stat().st_size > 20_000
    keep = os.environ.get("S3_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / shot.name)


def _screenshot_evaluation_table(base_url: str, run_id: str, path: Path) -> str:
    """Open the flow-run page in headless Chromium, its Artifacts tab, then the evaluation table artifact;
    screenshot it and return the rendered table's text."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed: .ci/run installs it (apt-get install chromium)")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base_url}/runs/flow-run/{run_id}")
            page.get_by_text("Artifacts", exact=True).first.click()
            page.locator(".artifact-card", has_text="tiny-evaluation").first.click()
            table = page.locator("table").first
            table.wait_for(timeout=30_000)
            page.get_by_text("s3@step-2").first.wait_for(timeout=30_000)
            page.screenshot(path=str(path), full_page=True)
            return table.inner_text()
        finally:
            browser.close()
