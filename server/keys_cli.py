"""`fedrad keys init` and `fedrad keys register`: the coordinator's keys."""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from fedrad.common.cli_errors import fail
from fedrad.common.keyfiles import KeyFilesExist
from fedrad.common.model_signing import SIGNING_PUBLIC_KEY, make_signing_key
from fedrad.common.text_files import path_problem
from fedrad.server.certificates import make_federation_certificates
from fedrad.server.registration import RegistrationFailed, register_site, unregister_site
from fedrad.server.superlink import CONNECTION, flower_home

LOOPBACK = ("localhost", "127.0.0.1")

StateOption = Annotated[
    Path,
    typer.Option(help="The aggregator's state folder, as given to `fedrad server start`."),
]


def keys_init(
    out: Annotated[Path, typer.Option(help="Folder for the CA and the server certificate.")],
    host: Annotated[
        list[str],
        typer.Option(
            help="A host name or IP address that sites use to reach this aggregator "
            "(repeat for each, e.g. --host fedrad.hospital.org --host 10.1.2.3)."
        ),
    ],
) -> None:
    """Coordinator: make the federation's CA and this aggregator's TLS certificate.

    Writes OUT/ca.crt (send it to every site), OUT/ca.key and OUT/server.key (secret,
    mode 0600: keep them on this machine), and OUT/server.pem; and the model-signing key,
    OUT/model-signing.key (secret) and OUT/model-signing.pub (send it to every site: it
    verifies the models this aggregator releases). The certificate is valid for
    each --host, and for localhost so `fedrad` commands here can reach the aggregator.
    Existing keys are never overwritten.

    Exit status: 0 written, 2 keys already there or the folder cannot be written.
    """
    hosts = list(dict.fromkeys([*host, *LOOPBACK]))
    try:
        files = make_federation_certificates(out, hosts)
        signing = make_signing_key(out)
    except KeyFilesExist as exc:
        raise fail(str(exc)) from exc
    except OSError as exc:
        raise fail(f"cannot write keys into {out}: {path_problem(exc)}.") from exc
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"certificate authority: {escape(str(files.ca_certificate))} (send to sites)")
    names = escape(", ".join(hosts))
    console.print(f"aggregator certificate for {names}: {escape(str(files.server_certificate))}")
    public = out / SIGNING_PUBLIC_KEY
    console.print(f"model-signing public key: {escape(str(public))} (send to sites)")
    console.print(f"secret, never send: {escape(f'{files.ca_key}, {files.server_key}, {signing}')}")


def keys_register(
    public_key: Annotated[Path, typer.Argument(help="The site's node.pub, as it sent it.")],
    name: Annotated[str, typer.Option(help="The site's name in the study.")],
    state: StateOption = Path("fedrad-state"),
) -> None:
    """Coordinator: allow a site's SuperNode to join (wraps `flwr supernode register`).

    Run it on the aggregator while `fedrad server start` runs. Only SuperNodes whose public
    key is registered may connect.

    Exit status: 0 registered, 2 bad key or the aggregator is not running.
    """
    require_running_aggregator(state)
    try:
        new = register_site(public_key, name, state)
    except RegistrationFailed as exc:
        raise fail(str(exc)) from exc
    done = "registered" if new else "was already registered"
    Console(highlight=False).print(f"{escape(name)} {done}: {escape(str(public_key))}")


def keys_unregister(
    name: Annotated[str, typer.Argument(help="The site's name, as it was registered.")],
    state: StateOption = Path("fedrad-state"),
) -> None:
    """Coordinator: remove a site from the federation (wraps `flwr supernode unregister`).

    Run it on the aggregator while `fedrad server start` runs. The site's SuperNode is
    refused from then on, also when it joins again with the same key; its results in
    finished runs stay. To let it back, register its key again.

    Exit status: 0 unregistered, 2 unknown site or the aggregator is not running.
    """
    require_running_aggregator(state)
    try:
        node_ids = unregister_site(name, state)
    except RegistrationFailed as exc:
        raise fail(str(exc)) from exc
    Console(highlight=False).print(f"{escape(name)} unregistered (node {', '.join(node_ids)})")


def require_running_aggregator(state: Path) -> None:
    """Stop, saying how to start it, unless the aggregator of `state` answers."""
    address = connection_address(state)
    if not reachable(address):
        raise fail(
            f"cannot reach the aggregator at {address}; start it with "
            f"`fedrad server start --state {state}` and run this again."
        )


def connection_address(state: Path) -> str:
    """The address `fedrad server start` wrote for the `flwr` commands run on it."""
    config = flower_home(state) / "config.toml"
    try:
        return tomllib.loads(config.read_text(encoding="utf-8"))["superlink"][CONNECTION]["address"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
        raise fail(
            f"{state} holds no aggregator connection; start the aggregator with "
            f"`fedrad server start --state {state}` first."
        ) from exc


def reachable(address: str) -> bool:
    """Whether something listens at HOST:PORT (a clearer error than Flower's retries)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            return True
    except (OSError, ValueError):
        return False
