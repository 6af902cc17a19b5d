"""Allow-listing a site's node key on the running SuperLink (`flwr supernode register`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from fedrad.server.superlink import register_command


class RegistrationFailed(Exception):
    """The SuperLink did not take the key; the message says why in one sentence."""


def register_site(public_key: Path, name: str, env: dict[str, str]) -> bool:
    """Register `public_key` as site `name`; False if it was registered already (a restart
    of the aggregator on its old state), True if newly registered."""
    if not public_key.is_file():
        raise RegistrationFailed(f"there is no public key file {public_key}.")
    try:
        done = subprocess.run(
            register_command(public_key, name), env=env, capture_output=True, text=True
        )
    except FileNotFoundError as exc:
        raise RegistrationFailed("the `flwr` command is missing; install FedRad.") from exc
    output = " ".join((done.stdout + " " + done.stderr).split())
    if done.returncode == 0:
        return True
    if "already in use" in output:
        return False
    raise RegistrationFailed(f"the aggregator did not register {public_key}: {output[-300:]}")
