"""A real federation on loopback for the process tests: a SuperLink with TLS and node
authentication, one SuperNode per site, each a process started by the very command lines
`fedrad server start` / `fedrad site join` and the containers use.

Every process is started in its own session and killed at the end with all its children
(Flower starts one per run and per message). Logs land beside the federation, one file
per process (`superlink.log`, `<site>.log`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from fedrad.client.node_key import NodeKeyFiles, make_node_key
from fedrad.client.supernode import supernode_command
from fedrad.common.config import StudyConfig
from fedrad.common.flower_processes import descendants, flower_env, stop_tree
from fedrad.server.certificates import FederationCertificates, make_federation_certificates
from fedrad.server.registration import register_site
from fedrad.server.runs import RunRecord, record_run
from fedrad.server.status import query
from fedrad.server.superlink import (
    connection_config,
    flower_home,
    study_app_project,
    submit_command,
    superlink_command,
)
from fedrad.simulations.simulate import pin_site_keys
from fedrad.simulations.synth.features import write_site_feature_tables

RESULTS_TIMEOUT_S = 900


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the SuperLink exited; see superlink.log"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the SuperLink did not listen on {port} within {timeout_s} s")


@dataclass
class LoopbackFederation:
    """Sites' feature tables, keys and processes under `root`; `start()` brings up the
    SuperLink and every site, `submit()` the study, `results()` waits for its results."""

    root: Path
    study: StudyConfig
    sizes: tuple[int, ...] = (40, 40, 40)
    n_features: int = 4
    tables: dict[str, Path] = field(init=False)
    keys: FederationCertificates = field(init=False)
    node_keys: dict[str, NodeKeyFiles] = field(init=False, default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(init=False, default_factory=dict)
    port: int = field(init=False, default_factory=free_port)

    def __post_init__(self):
        self.tables = write_site_feature_tables(
            self.root / "sites", self.study, sizes=self.sizes, n_features=self.n_features
        )
        self.study = pin_site_keys(self.tables, self.study)
        self.study_path = self.root / "study.yaml"
        self.study_path.write_text(yaml.safe_dump(self.study.model_dump(mode="json")))
        self.keys = make_federation_certificates(self.root / "keys", ["127.0.0.1", "localhost"])
        self.state = self.root / "state"
        flower_home(self.state).mkdir(parents=True)
        (flower_home(self.state) / "config.toml").write_text(
            connection_config(f"127.0.0.1:{self.port}", self.keys)
        )
        self.env = flower_env(FLWR_HOME=str(flower_home(self.state)))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def start_process(self, command: list[str], name: str) -> subprocess.Popen:
        log = (self.root / f"{name}.log").open("a")
        process = subprocess.Popen(
            command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes[name] = process
        return process

    def start(self) -> LoopbackFederation:
        self.start_superlink()
        for name in self.tables:
            self.register(name)
            self.start_site(name)
        return self

    def start_superlink(self) -> subprocess.Popen:
        command = superlink_command(self.keys, self.state, host="127.0.0.1", port=self.port)
        superlink = self.start_process(command, "superlink")
        wait_for_port(self.port, superlink)
        return superlink

    def register(self, name: str) -> NodeKeyFiles:
        self.node_keys[name] = make_node_key(self.root / "node-keys" / name, name)
        register_site(self.node_keys[name].public, name, self.state)
        return self.node_keys[name]

    def site_command(self, name: str, node_key: Path | None = None) -> list[str]:
        return supernode_command(
            self.address, self.tables[name], name, self.study_path, self.keys.ca_certificate,
            node_key or self.node_keys[name].private, port=free_port(),
        )  # fmt: skip

    def start_site(self, name: str) -> subprocess.Popen:
        return self.start_process(self.site_command(name), name)

    def kill(self, name: str) -> None:
        """SIGKILL a process and everything under it: a crash, not a clean stop."""
        process = self.processes.pop(name)
        for pid in [process.pid, *descendants(process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=30)

    def wait_online(self, timeout_s: float = 120) -> None:
        """Until every site started here shows `online` in `fedrad server status`."""
        deadline = time.monotonic() + timeout_s
        while True:
            sites, _ = query(self.state)
            online = {name for name, _, status in sites if status == "online"}
            waiting = set(self.tables) & set(self.processes) - online
            if not waiting:
                return
            assert time.monotonic() < deadline, f"not online in {timeout_s:g} s: {waiting}"
            time.sleep(1)

    def submit(
        self, out_dir: Path, study_path: Path | None = None, files: dict[str, str] | None = None
    ) -> int:
        """Submit the study app (`flwr run`), `files` added to or replacing its own (an app
        the aggregator should not send) and record it as `fedrad server start` does (for
        `fedrad server resume`); returns the run id."""
        app_dir = out_dir / "app"
        app_dir.mkdir(parents=True, exist_ok=True)
        (app_dir / "pyproject.toml").write_text(
            study_app_project(study_path or self.study_path, out_dir)
        )
        for name, text in (files or {}).items():
            (app_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (app_dir / name).write_text(text)
        done = subprocess.run(
            submit_command(app_dir), env=self.env, check=True, capture_output=True, text=True
        )
        run_id = int(json.loads(done.stdout)["run-id"])
        keys = str(self.keys.folder.resolve())
        study = str((study_path or self.study_path).resolve())
        record_run(self.state, RunRecord(run_id, study, str(out_dir.resolve()), keys, self.port))
        return run_id

    def results(self, out_dir: Path, timeout_s: float = RESULTS_TIMEOUT_S) -> dict:
        results_path = out_dir / "results.json"
        deadline = time.monotonic() + timeout_s
        while not results_path.exists():
            assert time.monotonic() < deadline, f"no results in {timeout_s:g} s"
            time.sleep(1)
        return json.loads(results_path.read_text())

    def stop_all(self) -> None:
        stop_tree(list(self.processes.values()))
        self.processes.clear()
