"""A site's warm ClientApp processes: forked, one per message, from a process that has
already imported them.

Flower starts a new `flwr-clientapp` process for every message a site answers, and
Python, Flower, numpy and FedRad's client load again each time: most of a deployed
round (docs/protocol.md 9). Started beside the SuperNode (`trusted_supernode.py`), this
server imports FedRad's guarded ClientApp process (`trusted_apps.py`) and the ClientApp
once; for each launcher that connects (`app_launcher.py`, the site's `flwr-clientapp`)
it forks a copy that runs with the launcher's arguments and standard streams and
reports its exit status back. Each message still gets a fresh process with the same
checks, and nothing is shared between messages: every random draw in the client comes
from the operating system at the time it is made (`secrets`, `os.urandom`,
`numpy.random.default_rng()`).

Run as `python -P -m fedrad.client.app_server SOCKET SUPERNODE_PID`; it ends when that
SuperNode does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

import fedrad.client.app  # noqa: F401  (the ClientApp and its imports, loaded once for all forks)
from fedrad.client import trusted_apps
from fedrad.client.app_launcher import STATUS_BYTES

ACCEPT_TIMEOUT_S = 1.0
"""How often the server looks whether its SuperNode is still there."""


def serve(path: Path, supernode_pid: int, entry: Callable[[], object] = trusted_apps.main):
    """Fork `entry` for every launcher connecting at `path` while `supernode_pid` lives."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps finished forks
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    listener.settimeout(ACCEPT_TIMEOUT_S)
    try:
        while os.getppid() == supernode_pid:
            try:
                launcher, _ = listener.accept()
            except TimeoutError:
                continue
            if os.fork() == 0:
                listener.close()
                _run_fork(launcher, entry)
            launcher.close()
    finally:
        listener.close()
        path.unlink(missing_ok=True)


def _run_fork(launcher: socket.socket, entry: Callable[[], object]) -> None:
    """Become the launcher's `flwr-clientapp`: its argv and streams, its exit status."""
    status = 1
    try:
        launcher.settimeout(None)
        payload, streams, _, _ = socket.recv_fds(launcher, 1 << 16, 3)
        for number, stream in enumerate(streams):
            os.dup2(stream, number)
            os.close(stream)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sys.argv = json.loads(payload)
        threading.Thread(target=_stop_with, args=(launcher,), daemon=True).start()
        status = _exit_status(entry)
    except BaseException:  # noqa: BLE001  a fork must always report and exit
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            launcher.sendall(status.to_bytes(STATUS_BYTES, "big", signed=True))
        finally:
            os._exit(status)


def _exit_status(entry: Callable[[], object]) -> int:
    try:
        entry()
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1
    return 0


def _stop_with(launcher: socket.socket) -> None:
    """Flower stops an app process by signalling its launcher: the fork follows it."""
    try:
        ended = launcher.recv(1) == b""
    except OSError:
        ended = True
    if ended:
        os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    socket_path, supernode_pid = sys.argv[1:]
    serve(Path(socket_path), int(supernode_pid))


if __name__ == "__main__":
    main()
