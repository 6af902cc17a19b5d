"""Flower processes: no installs at run time, and stopping one stops all it started."""

from __future__ import annotations

import os
import subprocess
import time

from fedrad.common.flower_processes import descendants, flower_env, stop_tree


def test_flower_never_installs_packages_nor_calls_home():
    env = flower_env()
    assert env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] == "1"
    assert env["FLWR_TELEMETRY_ENABLED"] == "0"


def test_stopping_a_process_stops_the_processes_it_started_in_their_own_session():
    parent = subprocess.Popen(["sh", "-c", "setsid sleep 60 & sleep 60"])
    deadline = time.monotonic() + 5
    while len(descendants(parent.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    below = descendants(parent.pid)
    assert below
    stop_tree([parent], grace_s=2)
    time.sleep(0.2)
    for pid in below:
        assert not os.path.exists(f"/proc/{pid}") or "Z" in _state(pid)


def _state(pid: int) -> str:
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]


def test_flower_commands_are_found_beside_this_python_when_its_folder_is_not_on_path(
    monkeypatch,
):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    done = subprocess.run(
        ["flwr", "--version"], env=flower_env(), capture_output=True, encoding="utf-8"
    )
    assert done.returncode == 0
    assert "1.42" in done.stdout
