"""Who can reach the aggregator: the options `fedrad server start` and `resume` share.

The SuperLink's Control API has no authentication (server/gateway.py), so the SuperLink
listens on loopback unless the coordinator says, by name, that its Control API may be
exposed; sites on other machines connect through the gateway at --public.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from fedrad.common.user_error import UserError
from fedrad.server.certificates import FederationCertificates
from fedrad.server.gateway import (
    NGINX_MISSING,
    Upstream,
    gateway_command,
    nginx_path,
    write_gateway_config,
)

PublicOption = Annotated[
    str | None,
    typer.Option(
        help="HOST:PORT where sites connect, e.g. 0.0.0.0:8443 (open this port inbound, "
        "and only this one). A gateway (nginx, which must be installed) there passes only "
        "the sites' Fleet API (/v1/fleet/) to the SuperLink, with TLS and the node "
        "signatures unchanged, and refuses everything else (403). Without it, only this "
        "machine reaches the aggregator.",
    ),
]
SuperlinkHostOption = Annotated[
    str,
    typer.Option(
        help="Where the SuperLink itself listens (on --port). Keep it on loopback: its "
        "Control API (list, submit and stop studies, register site keys) has no "
        "authentication.",
    ),
]
AllowExposureOption = Annotated[
    bool,
    typer.Option(
        "--allow-control-api-exposure",
        help="Let --superlink-host be other than loopback, exposing the Control API to "
        "whoever reaches it: only on a private network that sites cannot reach (the "
        "containers' network behind the gateway, deploy/compose.yaml).",
    ),
]

WILDCARDS = ("0.0.0.0", "::", "*")
"""Every address of the machine, loopback included."""

EXPOSURE_WARNING = (
    "WARNING: --allow-control-api-exposure: the SuperLink's Control API listens on {address} "
    "WITHOUT authentication; anyone who reaches it can list, submit and stop studies and "
    "register a site key of their own. Only a private network may reach that address."
)


@dataclass(frozen=True)
class Exposure:
    """Where the SuperLink listens, and where the gateway does (None: no gateway)."""

    superlink_host: str
    public: str | None

    def warning(self, port: int) -> str | None:
        """The loud warning of an exposed Control API, if it is."""
        if is_loopback(self.superlink_host):
            return None
        return EXPOSURE_WARNING.format(address=f"{self.superlink_host}:{port}")

    def note(self, port: int) -> str:
        """Who can reach the aggregator, in one line for the coordinator."""
        superlink = f"{self.superlink_host}:{port}"
        if self.public is None:
            return (
                f"the SuperLink listens on {superlink}; no gateway "
                "(sites on other machines connect through --public HOST:PORT)"
            )
        return f"sites connect to {self.public} (Fleet API only); the SuperLink is on {superlink}"


def exposure(public: str | None, superlink_host: str, allow: bool, port: int) -> Exposure:
    """The checked options; UserError, naming the option, for an exposure not asked for."""
    if not is_loopback(superlink_host) and not allow:
        raise UserError(
            f"--superlink-host {superlink_host} would let anyone who reaches "
            f"{superlink_host}:{port} use the SuperLink's Control API, which has no "
            "authentication; let sites in through --public HOST:PORT instead, or add "
            "--allow-control-api-exposure if only a private network reaches that address."
        )
    if public is not None:
        host, _, public_port = public.rpartition(":")
        if not host or not public_port.isdigit() or not 0 < int(public_port) < 65536:
            raise UserError(f"--public {public!r} is not HOST:PORT (e.g. 0.0.0.0:8443).")
        if int(public_port) == port:
            raise UserError(
                f"--public {public} and --port {port} are one port: the SuperLink needs its "
                "own (e.g. --port 8000 --public 0.0.0.0:8443)."
            )
    return Exposure(superlink_host, public)


def start_gateway_command(
    exposure: Exposure, keys: FederationCertificates | None, state: Path, port: int
) -> list[str] | None:
    """The gateway's command line, its config written to STATE/gateway (None: no gateway).
    UserError if nginx is missing."""
    if exposure.public is None:
        return None
    if nginx_path() is None:
        raise UserError(NGINX_MISSING)
    host = exposure.superlink_host
    local = is_loopback(host) or host in WILDCARDS
    upstream = Upstream("127.0.0.1" if local else host, port)
    config = write_gateway_config(keys, exposure.public, upstream, state / "gateway")
    return gateway_command(config)


def public_port(exposure: Exposure) -> tuple[str, int] | None:
    """Where to check the gateway listens: its address (a wildcard one via loopback)."""
    if exposure.public is None:
        return None
    host, _, port = exposure.public.rpartition(":")
    host = host.strip("[]")
    return ("127.0.0.1" if host in WILDCARDS else host), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
