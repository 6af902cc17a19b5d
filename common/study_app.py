"""The Flower app (FAB) the aggregator submits for a study, as both sides know it.

It is FedRad's installed apps and nothing else: one `pyproject.toml`, no code, the
study's paths in its run config, and the FedRad version that submitted it. A site runs
such an app with its own installed FedRad and refuses every other one
(`client/trusted_apps.py`); `server/superlink.py` writes it.
"""

from __future__ import annotations

from importlib.metadata import version

PUBLISHER = "fedrad"
NAME = "fedrad-study"
PROJECT_FILE = "pyproject.toml"
COMPONENTS = {"serverapp": "fedrad.server.app:app", "clientapp": "fedrad.client.app:app"}


def fedrad_version() -> str:
    """The installed FedRad's version: the study app's version, so that a site runs only
    studies submitted by the FedRad it runs (both sides speak one wire contract)."""
    return version("fedrad")
