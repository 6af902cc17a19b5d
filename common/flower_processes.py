"""What every Flower process FedRad starts shares: its environment.

A hospital machine must never install packages at run time nor call home, whatever
Flower's defaults (runtime dependency installation, telemetry, update checks).
"""

from __future__ import annotations

import os

FLOWER_ENV = {
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
}

INSECURE_WARNING = (
    "WARNING: --insecure: traffic between sites and the aggregator is NOT encrypted and "
    "NOT authenticated; use it only on a test machine, never with patient data."
)


def flower_env(**extra: str) -> dict[str, str]:
    """This process's environment with FedRad's Flower settings (and `extra`) on top."""
    return {**os.environ, **FLOWER_ENV, **extra}


def toml_string(value: str) -> str:
    """A TOML basic string (Flower reads node and run configs as TOML values)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
