"""`fedrad server status`: sites by name with their state, runs, and a clear error offline."""

from __future__ import annotations

import socket

from typer.testing import CliRunner

from fedrad.common.cli import app
from fedrad.server.status import run_rows, site_rows
from fedrad.server.superlink import connection_config, flower_home


def test_sites_show_by_the_name_they_were_registered_under():
    nodes = [
        {"node-id": "7", "status": "online"},
        {"node-id": "3", "status": "registered"},
        {"node-id": "9", "status": "unregistered"},
        {"node-id": "5", "status": "offline"},
    ]
    assert site_rows(nodes, {"7": "site02", "3": "site01"}) == [
        ("(unnamed)", "5", "offline"),
        ("site01", "3", "registered"),
        ("site02", "7", "online"),
    ]


def test_runs_show_their_status_and_elapsed_time_as_flower_gives_it_in_seconds():
    runs = [{"run-id": "42", "status": "running", "elapsed": 3725.4}]
    assert run_rows(runs) == [("42", "running", "1:02:05")]


def test_status_without_a_running_aggregator_says_so(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    flower_home(tmp_path).mkdir(parents=True)
    config = connection_config(f"127.0.0.1:{port}", None)
    (flower_home(tmp_path) / "config.toml").write_text(config)
    result = CliRunner().invoke(app, ["server", "status", "--state", str(tmp_path)])
    assert result.exit_code == 2
    assert "is `fedrad server start` running?" in result.output
