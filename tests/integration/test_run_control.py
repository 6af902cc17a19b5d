"""A coordinator stops a deployed run and starts its study again from the dashboard, on a
real SuperLink: Flower lists the run as stopped and the new run as running, the store says
who stopped it, and the new run is recorded for `fedrad server resume`. A run Flower ends
behind the store's back is recorded as ended by the next `fedrad server status`."""

from __future__ import annotations

import shutil
import time

import pytest
from fastapi.testclient import TestClient
from loopback import LoopbackFederation
from typer.testing import CliRunner

from fedrad.common.cli import app
from fedrad.common.config import StudyConfig
from fedrad.common.flower_processes import flower_env
from fedrad.server.dashboard.app import create_app
from fedrad.server.dashboard.tokens import Role, add_token
from fedrad.server.flwr_cli import ask
from fedrad.server.run_control import RunControl
from fedrad.server.runs import read_run
from fedrad.server.store.engine import STORE_FILE, open_store
from fedrad.server.store.reader import overview, run_page
from fedrad.server.superlink import flower_home, runs_command

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("flower-superlink") is None, reason="flower-superlink is not on PATH"
    ),
]


def _flower_status(loopback: LoopbackFederation) -> dict[int, str]:
    env = flower_env(FLWR_HOME=str(flower_home(loopback.state)))
    return {int(run["run-id"]): run["status"] for run in ask(runs_command(), env)["runs"]}


def _store_run(engine, flower_run_id: int, timeout_s: float = 180) -> int:
    """The store's id of Flower run `flower_run_id`, once its ServerApp has recorded it."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [r.id for r in overview(engine).runs if r.flower_run_id == str(flower_run_id)]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"run {flower_run_id} not in the store"
        time.sleep(0.5)


def test_a_coordinator_stops_a_deployed_run_and_starts_its_study_again(tmp_path):
    # No site joins: the run waits in its census for min_sites, as long as the round timeout.
    study = StudyConfig().updated(federation={"secure_aggregation": False})
    loopback = LoopbackFederation(tmp_path, study)
    store_url = f"sqlite:///{tmp_path / 'runs.db'}"
    engine = open_store(store_url)
    coordinator = add_token(engine, "cora", Role.coordinator)
    viewer = add_token(engine, "vera", Role.viewer)
    try:
        loopback.start_superlink()
        flower_run = loopback.submit(tmp_path / "out", run_config={"store-url": store_url})
        run = _store_run(engine, flower_run)
        client = TestClient(create_app(engine, RunControl(loopback.state)))

        as_viewer = client.post(f"/api/runs/{run}/stop", headers=_bearer(viewer))
        assert as_viewer.status_code == 403
        assert 'id="stop"' not in client.get(f"/runs/{run}", headers=_bearer(viewer)).text
        assert 'id="stop"' in client.get(f"/runs/{run}", headers=_bearer(coordinator)).text
        stopped = client.post(f"/runs/{run}/stop", headers=_bearer(coordinator))  # its button
        assert stopped.status_code == 200 and f"cora stopped run {run}." in stopped.text
        assert _flower_status(loopback)[flower_run].startswith("finished:stopped")
        page = run_page(engine, run)
        assert (page.run.status, page.run.reason) == (
            "stopped",
            "stopped by cora from the dashboard",
        )
        assert [e["reason_code"] for e in page.events][-1:] == ["stopped_by_coordinator"]
        assert 'id="stop"' not in client.get(f"/runs/{run}", headers=_bearer(coordinator)).text
        again = client.post(f"/api/runs/{run}/stop", headers=_bearer(coordinator))
        assert (again.status_code, again.json()["detail"]) == (409, f"run {run} is stopped")

        started = client.post("/api/runs", json={"like": run}, headers=_bearer(coordinator))
        assert started.status_code == 202, started.text
        new = started.json()["flower_run_id"]
        assert new != flower_run and _flower_status(loopback)[new].startswith(
            ("pending", "starting", "running")
        )
        record, first = read_run(loopback.state, new), read_run(loopback.state, flower_run)
        assert (record.study, record.store) == (first.study, store_url)
        assert record.out_dir.startswith(first.out_dir + "-")
        new_run = _store_run(engine, new)
        assert run_page(engine, new_run).run.started_by == "cora"
        RunControl(loopback.state).stop(new)  # stopped with flwr, not from the dashboard
        (loopback.state / STORE_FILE).write_text(store_url)  # as `fedrad server start` does
        shown = CliRunner().invoke(app, ["server", "status", "--state", str(loopback.state)])
        assert f"run {new_run} recorded as ended" in shown.output, shown.output
        ended = run_page(engine, new_run).run
        assert (ended.status, ended.reason) == (
            "stopped",
            "the aggregator ended without recording it (Flower: finished:stopped)",
        )
    finally:
        loopback.stop_all()
        engine.dispose()


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}
