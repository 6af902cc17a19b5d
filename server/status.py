"""What `fedrad server status` shows: the registered sites (by name, as FedRad registered
them), whether each is online, and the studies' runs."""

from __future__ import annotations

from pathlib import Path

from fedrad.common.flower_processes import flower_env
from fedrad.server.flwr_cli import ask
from fedrad.server.registration import site_names
from fedrad.server.superlink import flower_home, nodes_command, runs_command


def site_rows(nodes: list[dict], names: dict[str, str]) -> list[tuple[str, str, str]]:
    """(site, node id, status) per registered node, by site name; a node registered with
    `flwr` directly shows as unnamed."""
    rows = [
        (names.get(node["node-id"], "(unnamed)"), node["node-id"], node["status"])
        for node in nodes
        if node["status"] != "unregistered"
    ]
    return sorted(rows)


def run_rows(runs: list[dict]) -> list[tuple[str, str, str]]:
    """(run id, status, elapsed) per submitted run."""
    return [(run["run-id"], run["status"], _elapsed(run.get("elapsed", ""))) for run in runs]


def _elapsed(value) -> str:
    """Flower gives a run's elapsed time in seconds (a float): shown as h:mm:ss."""
    if not isinstance(value, int | float):
        return str(value)
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


def query(state: Path) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """The aggregator's sites and runs (its state folder `state`)."""
    env = flower_env(FLWR_HOME=str(flower_home(state)))
    nodes = ask(nodes_command(), env)["nodes"]
    runs = ask(runs_command(), env)["runs"]
    return site_rows(nodes, site_names(state)), run_rows(runs)
