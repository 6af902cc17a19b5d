"""`fedrad keys register`: one clear sentence when the aggregator is not there."""

from __future__ import annotations

import socket

from typer.testing import CliRunner

from fedrad.common.cli import app
from fedrad.server.superlink import connection_config, flower_home


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_register_says_the_aggregator_is_unreachable(tmp_path):
    state = tmp_path / "state"
    flower_home(state).mkdir(parents=True)
    address = f"127.0.0.1:{_closed_port()}"
    (flower_home(state) / "config.toml").write_text(connection_config(address, None))
    (tmp_path / "node.pub").write_text("ecdsa-sha2-nistp384 AAAA site01\n")
    result = CliRunner().invoke(
        app,
        ["keys", "register", str(tmp_path / "node.pub"), "--name", "site01", "--state", str(state)],
    )
    assert result.exit_code == 2
    assert f"cannot reach the aggregator at {address}" in result.output
    assert "Traceback" not in result.output


def test_register_without_a_started_aggregator_says_to_start_it(tmp_path):
    (tmp_path / "node.pub").write_text("ecdsa-sha2-nistp384 AAAA site01\n")
    result = CliRunner().invoke(
        app,
        ["keys", "register", str(tmp_path / "node.pub"), "--name", "site01",
         "--state", str(tmp_path / "nothing")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "fedrad server start" in result.output
