"""The site's `flwr-clientapp` through the warm app server behaves as the guarded process
it forks would on its own: same output, same exit status, a fresh process per launch, and
it stops when Flower stops its launcher or the SuperNode goes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedrad.client.app_launcher import SERVER_VARIABLE
from fedrad.client.trusted_supernode import CLIENT_APP, app_commands

SERVE_WITH = """
import os, sys, time
from pathlib import Path
from fedrad.client.app_server import serve
def entry():
    {body}
serve(Path(sys.argv[1]), int(sys.argv[2]), entry=entry)
"""


def _wait_for(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def launcher(tmp_path):
    return app_commands(tmp_path / "commands") / CLIENT_APP


def _server(tmp_path: Path, command: list[str]) -> tuple[subprocess.Popen, Path]:
    socket_path = tmp_path / "server.socket"
    server = subprocess.Popen([*command, str(socket_path), str(os.getpid())])
    _wait_for(socket_path.exists)
    return server, socket_path


@pytest.fixture
def guarded_server(tmp_path):
    server, socket_path = _server(
        tmp_path, [sys.executable, "-P", "-m", "fedrad.client.app_server"]
    )
    yield socket_path
    server.kill()


def _serve(tmp_path: Path, body: str):
    return _server(tmp_path, [sys.executable, "-c", SERVE_WITH.format(body=body)])


def _launch(launcher: Path, socket_path: Path | None, *args: str, **popen):
    env = {key: value for key, value in os.environ.items() if key != SERVER_VARIABLE}
    if socket_path is not None:
        env[SERVER_VARIABLE] = str(socket_path)
    return subprocess.run([launcher, *args], env=env, capture_output=True, timeout=120, **popen)


def _named_alike(output: bytes) -> bytes:
    """argparse names the program after argv[0]: the launcher's file, or the module's."""
    return output.replace(b"app_launcher.py", b"trusted_apps.py")


@pytest.mark.parametrize("arguments", [["--help"], ["--no-such-option"], ["--insecure"]])
def test_a_launch_through_the_server_answers_as_the_guarded_process_alone(
    launcher, guarded_server, arguments
):
    """--insecure without a SuperNode to reach: Flower's own refusal, with its status."""
    alone = _launch(launcher, None, *arguments, "--runtime-api-address", "127.0.0.1:1")
    warm = _launch(launcher, guarded_server, *arguments, "--runtime-api-address", "127.0.0.1:1")
    assert warm.returncode == alone.returncode
    assert _named_alike(warm.stdout) == alone.stdout
    assert _named_alike(warm.stderr).splitlines()[-1:] == alone.stderr.splitlines()[-1:]
    if arguments == ["--help"]:
        assert alone.returncode == 0 and b"Run a Flower ClientApp" in warm.stdout


def test_the_guarded_process_refuses_runtime_installs_through_the_server(launcher, guarded_server):
    refused = _launch(launcher, guarded_server, "--allow-runtime-dependency-installation")
    assert refused.returncode == 1 and b"refusing --allow-runtime" in refused.stderr


def test_every_launch_is_a_fresh_fork_of_the_server_and_keeps_its_exit_status(tmp_path, launcher):
    body = "print(os.getpid(), os.getppid(), sys.argv[1:]); sys.exit(int(sys.argv[1]))"
    server, socket_path = _serve(tmp_path, body)
    try:
        first, second = (_launch(launcher, socket_path, code) for code in ("3", "0"))
    finally:
        server.kill()
    pids = [done.stdout.decode().split()[:2] for done in (first, second)]
    assert (first.returncode, second.returncode) == (3, 0)
    assert pids[0][1] == pids[1][1] == str(server.pid) and pids[0][0] != pids[1][0]
    assert first.stdout.decode().endswith("['3']\n")


def test_a_launcher_stopped_by_flower_stops_its_fork(tmp_path, launcher):
    pid_file = tmp_path / "fork.pid"
    body = f"Path({str(pid_file)!r}).write_text(str(os.getpid())); time.sleep(120)"
    server, socket_path = _serve(tmp_path, body)
    env = {**os.environ, SERVER_VARIABLE: str(socket_path)}
    try:
        launch = subprocess.Popen([launcher], env=env)
        _wait_for(pid_file.exists)
        fork = int(pid_file.read_text())
        launch.send_signal(signal.SIGTERM)
        launch.wait(timeout=30)
        _wait_for(lambda: not _alive(fork))
    finally:
        server.kill()


def test_the_server_ends_with_its_supernode_and_removes_its_socket(tmp_path):
    socket_path = tmp_path / "server.socket"
    supernode = subprocess.Popen(
        [sys.executable, "-c", "import os, subprocess, sys, time; subprocess.Popen([sys.executable,"
         " '-P', '-m', 'fedrad.client.app_server', sys.argv[1], str(os.getpid())]); "
         "time.sleep(120)", str(socket_path)]
    )  # fmt: skip
    _wait_for(socket_path.exists)
    supernode.kill()
    supernode.wait()
    _wait_for(lambda: not socket_path.exists())


def test_without_a_server_the_launcher_is_the_guarded_process_itself(tmp_path, launcher):
    missing = _launch(launcher, tmp_path / "no-server.socket", "--help")
    assert missing.returncode == 0 and b"Run a Flower ClientApp" in missing.stdout
