"""What every Flower process FedRad starts shares: its environment.

A hospital machine must never install packages at run time nor call home, whatever
Flower's defaults (runtime dependency installation, telemetry, update checks).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

FLOWER_ENV = {
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    # a SuperExec looks for messages to hand to a new app process every second by default;
    # a study is hundreds of short messages in sequence
    "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1",
}

INSECURE_WARNING = (
    "WARNING: --insecure: traffic between sites and the aggregator is NOT encrypted and "
    "NOT authenticated; use it only on a test machine, never with patient data."
)


def flower_env(**extra: str) -> dict[str, str]:
    """This process's environment with FedRad's Flower settings (and `extra`) on top.

    The Flower commands are looked up first beside this Python, so a FedRad run by its full
    path (a systemd unit, cron, a venv not activated) starts the Flower it was installed with.
    """
    path = os.pathsep.join(filter(None, (str(Path(sys.executable).parent), os.environ.get("PATH"))))
    return {**os.environ, "PATH": path, **FLOWER_ENV, **extra}


def toml_string(value: str) -> str:
    """A TOML basic string (Flower reads node and run configs as TOML values)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def stop_on_sigterm() -> None:
    """Treat SIGTERM (`docker stop`, systemd) as Ctrl-C, so the Flower process under a
    command is stopped cleanly rather than orphaned."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc): Flower's SuperExec starts its own session,
    so its app processes escape a signal to the SuperLink's process group."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def stop_tree(processes: list[subprocess.Popen], grace_s: float = 5.0) -> None:
    """Stop `processes` and all their descendants: SIGTERM, then SIGKILL after `grace_s`."""
    pids = [pid for process in processes for pid in (process.pid, *descendants(process.pid))]
    for signal_number in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal_number)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(p.poll() is None for p in processes):
            time.sleep(0.2)
