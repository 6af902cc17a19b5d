"""A real federation on loopback for the process tests: a SuperLink with TLS and node
authentication, one SuperNode per site, each a process started by the very command lines
`fedrad server start` / `fedrad site join` and the containers use. With `gateway=True`
the sites connect through the gateway (nginx, server/gateway.py) that `fedrad server start
--public` puts in front of the SuperLink, as they do in a real deployment.

Every process is started in its own session and killed at the end with all its children
(Flower starts one per run and per message). Logs land beside the federation, one file
per process (`superlink.log`, `<site>.log`). For fault tests: a site may reach the
SuperLink through a `TcpProxy` whose link can be cut, a site's ClientApp processes can be
found (`app_processes`) to stop them, and the SuperLink's view of each site polled
(`site_status`, `wait_until`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from fedrad.client.node_key import NodeKeyFiles, make_node_key
from fedrad.client.supernode import supernode_command
from fedrad.common.config import StudyConfig
from fedrad.common.flower_processes import descendants, flower_env, stop_tree, toml_string
from fedrad.server.certificates import FederationCertificates, make_federation_certificates
from fedrad.server.gateway import Upstream, gateway_command, write_gateway_config
from fedrad.server.registration import register_site
from fedrad.server.runs import RunRecord, record_run
from fedrad.server.status import query as status_query
from fedrad.server.superlink import (
    CONNECTION,
    connection_config,
    flower_home,
    study_app_project,
    submit_command,
    superlink_command,
)
from fedrad.simulations.simulate import pin_site_keys
from fedrad.simulations.synth.features import write_site_feature_tables

RESULTS_TIMEOUT_S = 900
APP_PROCESSES = (b"flwr-clientapp", b"fedrad.client.trusted_apps", b"faulty_clientapp")
"""How a site's per-message ClientApp process shows in its command line."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(
    port: int, process: subprocess.Popen, timeout_s: float = 60, name: str = "superlink"
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the {name} exited; see {name}.log"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the {name} did not listen on {port} within {timeout_s} s")


@dataclass
class LoopbackFederation:
    """Sites' feature tables, keys and processes under `root`; `start()` brings up the
    SuperLink and every site, `submit()` the study, `results()` waits for its results."""

    root: Path
    study: StudyConfig
    sizes: tuple[int, ...] = (40, 40, 40)
    n_features: int = 4
    gateway: bool = False
    tables: dict[str, Path] = field(init=False)
    keys: FederationCertificates = field(init=False)
    node_keys: dict[str, NodeKeyFiles] = field(init=False, default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(init=False, default_factory=dict)
    port: int = field(init=False, default_factory=free_port)
    public_port: int | None = field(init=False, default=None)

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

    @property
    def site_address(self) -> str:
        """Where sites connect: the gateway once started, else the SuperLink itself."""
        return self.address if self.public_port is None else f"127.0.0.1:{self.public_port}"

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def start_process(
        self, command: list[str], name: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        log = (self.root / f"{name}.log").open("a")
        process = subprocess.Popen(
            command,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def start(self) -> LoopbackFederation:
        self.start_superlink()
        if self.gateway:
            self.start_gateway()
        for name in self.tables:
            self.register(name)
            self.start_site(name)
        return self

    def start_superlink(self) -> subprocess.Popen:
        command = superlink_command(self.keys, self.state, host="127.0.0.1", port=self.port)
        superlink = self.start_process(command, "superlink")
        wait_for_port(self.port, superlink)
        return superlink

    def start_gateway(self) -> subprocess.Popen:
        """The gateway `fedrad server start --public` starts, in front of the SuperLink."""
        self.public_port = free_port()
        config = write_gateway_config(
            self.keys, self.site_address, Upstream("127.0.0.1", self.port), self.root / "gateway"
        )
        gateway = self.start_process(gateway_command(config), "gateway")
        wait_for_port(self.public_port, gateway, name="gateway")
        return gateway

    def register(self, name: str) -> NodeKeyFiles:
        self.node_keys[name] = make_node_key(self.root / "node-keys" / name, name)
        register_site(self.node_keys[name].public, name, self.state)
        return self.node_keys[name]

    def site_command(
        self, name: str, node_key: Path | None = None, address: str | None = None
    ) -> list[str]:
        return supernode_command(
            address or self.site_address, self.tables[name], name, self.study_path,
            self.keys.ca_certificate, node_key or self.node_keys[name].private, port=free_port(),
        )  # fmt: skip

    def start_site(
        self, name: str, address: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        """Start a site's SuperNode, connecting to the SuperLink or its gateway (or to
        `address`, e.g. a `TcpProxy` in front of it), `env` added to its environment."""
        return self.start_process(self.site_command(name, address=address), name, env)

    def app_processes(self, name: str) -> list[int]:
        """The ClientApp processes running under a site's SuperNode (one per message)."""
        found = []
        for pid in descendants(self.processes[name].pid):
            with contextlib.suppress(OSError):
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
                if state != "Z" and any(app in command for app in APP_PROCESSES):
                    found.append(pid)
        return found

    def site_status(self) -> dict[str, str]:
        """Each registered site's status at the SuperLink (`fedrad server status`)."""
        sites, _ = status_query(self.state)
        return {site: status for site, _, status in sites}

    def wait_until(self, status: str, names: list[str], timeout_s: float = 180) -> None:
        """Wait until the SuperLink lists every site of `names` with `status` (e.g. online)."""
        deadline = time.monotonic() + timeout_s
        while any((found := self.site_status()).get(name) != status for name in names):
            assert time.monotonic() < deadline, f"not all of {names} {status}: {found}"
            time.sleep(1)

    def wait_for_log(self, name: str, text: str, timeout_s: float = RESULTS_TIMEOUT_S) -> None:
        """Wait until a process's log holds `text` (e.g. a site answered a message)."""
        deadline = time.monotonic() + timeout_s
        while text not in self.log(name):
            assert time.monotonic() < deadline, f"{name}.log lacks {text!r} after {timeout_s:g} s"
            assert self.processes[name].poll() is None, f"{name} exited; see {name}.log"
            time.sleep(0.5)

    def kill(self, name: str) -> None:
        """SIGKILL a process and everything under it: a crash, not a clean stop."""
        process = self.processes.pop(name)
        for pid in [process.pid, *descendants(process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=30)

    def submit(
        self,
        out_dir: Path,
        study_path: Path | None = None,
        files: dict[str, str] | None = None,
        run_config: dict[str, str] | None = None,
    ) -> int:
        """Submit the study app (`flwr run`); returns the run id. `files`: added to or
        replacing the app's own (an app the aggregator should not send); `run_config`:
        more settings of the run. Recorded as `fedrad server start` records a run (for
        `fedrad server resume`)."""
        app_dir = out_dir / "app"
        app_dir.mkdir(parents=True, exist_ok=True)
        project = study_app_project(study_path or self.study_path, out_dir)
        for key, value in (run_config or {}).items():
            project += f"{key} = {toml_string(value)}\n"
        (app_dir / "pyproject.toml").write_text(project)
        for name, text in (files or {}).items():
            (app_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (app_dir / name).write_text(text)
        done = subprocess.run(
            submit_command(app_dir),
            env=self.env,
            check=True,
            capture_output=True,
            encoding="utf-8",
            errors="replace",
        )
        run_id = int(json.loads(done.stdout)["run-id"])
        keys = str(self.keys.folder.resolve())
        study = str((study_path or self.study_path).resolve())
        store = (run_config or {}).get("store-url")
        record_run(
            self.state, RunRecord(run_id, study, str(out_dir.resolve()), keys, self.port, store)
        )
        return run_id

    def results(self, out_dir: Path, timeout_s: float = RESULTS_TIMEOUT_S) -> dict:
        results_path = out_dir / "results.json"
        deadline = time.monotonic() + timeout_s
        while not results_path.exists():
            assert time.monotonic() < deadline, f"no results in {timeout_s:g} s"
            time.sleep(1)
        return json.loads(results_path.read_text())

    def run_log(self, run_id: int) -> str:
        """What the run's ServerApp printed, as `flwr log --show` gives it the coordinator."""
        command = ["flwr", "log", str(run_id), CONNECTION, "--show"]
        done = subprocess.run(
            command,
            env=self.env,
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            timeout=120,
        )
        return done.stdout

    def stop_all(self) -> None:
        stop_tree(list(self.processes.values()))
        self.processes.clear()


class TcpProxy:
    """A TCP relay on loopback in front of `target_port`, whose link can be cut: `cut()`
    drops every connection through it and refuses new ones (the port closes), `restore()`
    listens again on the same port. TLS passes through untouched."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.accepted = 0  # connections relayed so far
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # cut
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    upstream.close()
                    return
                self._connections += [client, upstream]
                self.accepted += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for end in (source, sink):
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
