"""A real federation on loopback: SuperLink + 3 SuperNodes as processes, TLS and node keys.

The results must equal the in-process federation's on the same feature tables, and a
SuperNode whose key was never registered must be refused. Every process started here is
killed at the end, with all its children (Flower starts one per run and per message).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fedrad.client.data import SiteData
from fedrad.client.node_key import make_node_key
from fedrad.client.supernode import supernode_command
from fedrad.common.cli import app
from fedrad.common.config import StudyConfig
from fedrad.common.flower_processes import flower_env, stop_tree
from fedrad.server.certificates import make_federation_certificates
from fedrad.server.registration import register_site
from fedrad.server.study import StudyProtocol
from fedrad.server.superlink import (
    connection_config,
    flower_home,
    study_app_project,
    submit_command,
    superlink_command,
)
from fedrad.simulations.in_process import in_process_transport
from fedrad.simulations.simulate import pin_site_keys
from fedrad.simulations.synth.features import write_site_feature_tables

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("flower-superlink") is None, reason="flower-superlink is not on PATH"
    ),
]

RESULTS_TIMEOUT_S = 900


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Processes:
    """Starts each process in its own group; `stop_all` ends them and their descendants."""

    def __init__(self, logs: Path, env: dict[str, str]):
        self.logs, self.env, self.started = logs, env, []

    def start(self, command: list[str], name: str) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("w")
        process = subprocess.Popen(
            command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        stop_tree(self.started)


def _wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the SuperLink exited; see superlink.log"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the SuperLink did not listen on {port} within {timeout_s} s")


def _study() -> StudyConfig:
    """Small, so each of Flower's per-message process starts counts: few features, one
    holdout split, ComBat, no screening, sums in the clear (masking adds reveal rounds)."""
    return StudyConfig().updated(
        federation={"min_sites": 3, "secure_aggregation": False},
        selection={"screen": "none"},
        validation={"scheme": "holdout"},
    )


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    root = tmp_path_factory.mktemp("deployment")
    tables = write_site_feature_tables(root / "sites", _study(), sizes=(40, 40, 40), n_features=4)
    study = pin_site_keys(tables, _study())
    study_path = root / "study.yaml"
    study_path.write_text(yaml.safe_dump(study.model_dump(mode="json")))
    keys = make_federation_certificates(root / "keys", ["127.0.0.1", "localhost"])
    state, port = root / "state", _free_port()
    flower_home(state).mkdir(parents=True)
    (flower_home(state) / "config.toml").write_text(connection_config(f"127.0.0.1:{port}", keys))
    env = flower_env(FLWR_HOME=str(flower_home(state)))
    processes = Processes(root, env)
    try:
        superlink = processes.start(
            superlink_command(keys, state, host="127.0.0.1", port=port), "superlink"
        )
        _wait_for_port(port, superlink)
        for name, table in tables.items():
            node_key = make_node_key(root / "node-keys" / name, name)
            assert register_site(node_key.public, name, state)
            command = supernode_command(
                f"127.0.0.1:{port}", table, name, study_path, keys.ca_certificate,
                node_key.private, port=_free_port(),
            )  # fmt: skip
            processes.start(command, name)
        app_dir = root / "app"
        app_dir.mkdir()
        (app_dir / "pyproject.toml").write_text(study_app_project(study_path, root / "out"))
        started = time.monotonic()
        subprocess.run(submit_command(app_dir), env=env, check=True, capture_output=True)
        results_path = root / "out" / "results.json"
        while not results_path.exists():
            assert time.monotonic() - started < RESULTS_TIMEOUT_S, "no results in time"
            time.sleep(2)
        results = json.loads(results_path.read_text())
        print(f"deployed study: {time.monotonic() - started:.0f} s")
        yield {
            "state": state, "root": root, "tables": tables, "study": study,
            "study_path": study_path, "results": results, "keys": keys, "port": port,
            "processes": processes,
        }  # fmt: skip
    finally:
        processes.stop_all()


def test_a_deployed_study_equals_the_in_process_federation(federation):
    study, tables = federation["study"], federation["tables"]
    sites = [SiteData.load(path, name, study) for name, path in tables.items()]
    reference = StudyProtocol(in_process_transport(sites, study), study, expected_sites=3).run()
    deployed = federation["results"]
    assert [site["status"] for site in deployed["sites"]] == ["included"] * 3
    model, expected = deployed["model"]["coefficients"], reference["model"]["coefficients"]
    assert list(model) == list(expected)
    assert max(abs(model[name] - expected[name]) for name in model) <= 1e-9
    for key in ("auc", "sensitivity", "specificity"):
        assert deployed["metrics"]["federated"][key] == pytest.approx(
            reference["metrics"]["federated"][key], abs=1e-9
        )


def test_a_supernode_with_an_unregistered_key_is_refused(federation):
    root, keys = federation["root"], federation["keys"]
    stranger = make_node_key(root / "node-keys" / "stranger", "stranger")
    name, table = next(iter(federation["tables"].items()))
    command = supernode_command(
        f"127.0.0.1:{federation['port']}", table, name, federation["study_path"],
        keys.ca_certificate, stranger.private, port=_free_port(),
    )  # fmt: skip
    process = federation["processes"].start(command, "stranger")
    try:
        status = process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("a SuperNode with an unregistered key was let in (it kept running)")
    assert status != 0
    assert "Failed to activate SuperNode" in (root / "stranger.log").read_text()
    refusal = "No SuperNode found with the given public key"
    assert refusal in (root / "superlink.log").read_text()


def test_registering_a_known_site_again_is_not_an_error(federation):
    name = next(iter(federation["tables"]))
    public_key = federation["root"] / "node-keys" / name / "node.pub"
    assert register_site(public_key, name, federation["state"]) is False


def test_server_status_names_every_site_and_the_finished_run(federation):
    result = CliRunner().invoke(app, ["server", "status", "--state", str(federation["state"])])
    assert result.exit_code == 0, result.output
    for name in federation["tables"]:
        assert re.search(rf"{name} .* online", result.output), result.output
    assert "finished" in result.output
