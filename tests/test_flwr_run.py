"""`flwr run` on the repository says in one line to use FedRad's commands, exits non-zero,
and starts, submits and installs nothing: against the local simulation (which would start
a SuperLink that `uv sync`s torch into a fresh environment) or a deployment connection."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("flwr") is None, reason="flwr is not on PATH")
@pytest.mark.parametrize(
    "connection", [[], ["a-deployment", "--stream"]], ids=["local", "deployment"]
)
def test_flwr_run_on_the_repository_points_to_fedrads_commands(tmp_path, connection):
    env = {**os.environ, "FLWR_HOME": str(tmp_path), "COLUMNS": "400"}
    env.pop("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", None)  # Flower's default: install
    done = subprocess.run(
        ["flwr", "run", ".", *connection], cwd=REPO, env=env, capture_output=True,
        encoding="utf-8", errors="replace", timeout=120,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    hint = [line for line in output.splitlines() if "fedrad server start" in line]
    assert len(hint) == 1 and "`fedrad simulate`" in hint[0], output
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "config.toml"
    ]  # no SuperLink, no app
