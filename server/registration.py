"""Allow-listing a site's node key on the running SuperLink (`flwr supernode register`),
and remembering which node id is which site: Flower lists nodes by id only. The run store
learns of the site too, so the coordinator sees it registered before it ever joins."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from fedrad.common.flower_processes import flower_env
from fedrad.server.flwr_cli import StatusUnavailable, ask
from fedrad.server.superlink import flower_home, register_command, unregister_command

SITES_FILE = "sites.json"


class RegistrationFailed(Exception):
    """The SuperLink did not take the key; the message says why in one sentence."""


def register_site(public_key: Path, name: str, state: Path) -> bool:
    """Register `public_key` as site `name` on the aggregator whose state is `state`; False
    if it was registered already (a restart on the old state), True if newly registered."""
    if not public_key.is_file():
        raise RegistrationFailed(f"there is no public key file {public_key}.")
    env = flower_env(FLWR_HOME=str(flower_home(state)))
    try:
        done = subprocess.run(
            register_command(public_key, name),
            env=env,
            capture_output=True,
            encoding="utf-8",
            errors="replace",
        )
    except FileNotFoundError as exc:
        raise RegistrationFailed("the `flwr` command is missing; install FedRad.") from exc
    output = " ".join((done.stdout + " " + done.stderr).split())
    if "already in use" in output:
        _remember(state, name, None)
        return False
    try:
        node_id = str(json.loads(done.stdout)["node-id"])
    except (json.JSONDecodeError, KeyError) as exc:
        reason = output[-300:]
        raise RegistrationFailed(f"the aggregator did not register {public_key}: {reason}") from exc
    names = site_names(state)
    (state / SITES_FILE).write_text(json.dumps(names | {node_id: name}, indent=2))
    _remember(state, name, node_id)
    return True


def unregister_site(name: str, state: Path) -> list[str]:
    """Remove site `name`'s node key from the aggregator whose state is `state`, so its
    SuperNode is refused from now on; the node ids it had. The run store keeps the site and
    its history, marked unregistered."""
    names = site_names(state)
    node_ids = sorted(node for node, site in names.items() if site == name)
    if not node_ids:
        known = ", ".join(sorted(set(names.values()))) or "none"
        raise RegistrationFailed(
            f"no site {name!r} was registered through FedRad here (registered: {known}); "
            f"a node registered with `flwr` directly is removed with "
            f"`flwr supernode unregister NODE_ID`."
        )
    env = flower_env(FLWR_HOME=str(flower_home(state)))
    for node_id in node_ids:
        try:
            ask(unregister_command(node_id), env)
        except StatusUnavailable as exc:
            raise RegistrationFailed(f"{name} is still registered: {exc}") from exc
    remaining = {node: site for node, site in names.items() if site != name}
    (state / SITES_FILE).write_text(json.dumps(remaining, indent=2))
    _forget(state, name)
    return node_ids


def _forget(state: Path, name: str) -> None:
    """The removal, in the state's run store; a store that refuses it only warns (the key
    is removed, which is what keeps the site out)."""
    from sqlalchemy.exc import SQLAlchemyError

    from fedrad.server.store.engine import open_store, state_store_url
    from fedrad.server.store.writer import record_unregistration

    try:
        engine = open_store(state_store_url(state))
        record_unregistration(engine, name)
        engine.dispose()
    except (SQLAlchemyError, OSError) as exc:
        raise RegistrationFailed(
            f"{name} is unregistered, but the run store did not record it "
            f"({type(exc).__name__}); `fedrad server status` shows the truth."
        ) from exc


def _remember(state: Path, name: str, node_id: str | None) -> None:
    """The registration, in the state's run store; if the store refuses it, the site is
    still registered (it is recorded when it joins) and the message says so."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from fedrad.server.store.engine import open_store, state_store_url
    from fedrad.server.store.writer import record_registration

    url = state_store_url(state)
    try:
        engine = open_store(url)
        record_registration(engine, name, node_id)
        engine.dispose()
    except (SQLAlchemyError, OSError) as exc:
        raise RegistrationFailed(
            f"{name} is registered, but the run store at {make_url(url)} did not record it "
            f"({type(exc).__name__}); it will be recorded when the site joins."
        ) from exc


def site_names(state: Path) -> dict[str, str]:
    """Node id -> site name, of the sites registered through FedRad."""
    try:
        return json.loads((state / SITES_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
