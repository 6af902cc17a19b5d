"""`fedrad server start --public` on real processes: the SuperLink (TLS, node keys) on
loopback, the gateway (nginx) on the public port passing only the sites' Fleet API.

The finding it closes: Flower's Control API, on the SuperLink's one port, has no
authentication, so anyone holding the public ca.crt could list runs and register a node
key of their own. Through the public port those calls must be refused (403), while on
loopback they still work (so the refusal is the gateway's doing, not a broken call), and
a registered site must still join through it with its signed requests.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess

import pytest
from loopback import LoopbackFederation, free_port, wait_for_port

from fedrad.client.node_key import make_node_key
from fedrad.common.config import StudyConfig
from fedrad.common.flower_processes import flower_env
from fedrad.server.gateway import REFUSED_BODY, nginx_path
from fedrad.server.superlink import CONNECTION, connection_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("flower-superlink") is None, reason="flower-superlink is not on PATH"
    ),
    pytest.mark.skipif(nginx_path() is None, reason="nginx is not installed"),
]


@pytest.fixture(scope="module")
def aggregator(tmp_path_factory):
    """`fedrad server start --public` with site01 registered, and site01 joined through
    the public port; `public_env` is a `flwr` set up as an outsider would (the public
    address and ca.crt)."""
    federation = LoopbackFederation(
        tmp_path_factory.mktemp("gateway"), StudyConfig().updated(federation={"min_sites": 1})
    )
    federation.public_port = free_port()
    site = make_node_key(federation.root / "node-keys" / "site01", "site01")
    federation.node_keys["site01"] = site
    command = [
        "fedrad", "server", "start", "--study", str(federation.study_path),
        "--keys", str(federation.keys.folder), "--state", str(federation.state),
        "--port", str(federation.port), "--public", federation.site_address,
        "--site", f"site01={site.public}",
    ]  # fmt: skip
    outsider = federation.root / "outsider-flwr"
    outsider.mkdir()
    (outsider / "config.toml").write_text(
        connection_config(federation.site_address, federation.keys)
    )
    federation.public_env = flower_env(FLWR_HOME=str(outsider))
    try:
        process = federation.start_process(command, "aggregator")
        wait_for_port(federation.public_port, process, timeout_s=120, name="aggregator")
        federation.wait_for_log("aggregator", "sites connect to", timeout_s=120)
        federation.start_site("site01")
        yield federation
    finally:
        federation.stop_all()


def _flwr(env: dict[str, str], *args: str) -> dict:
    """A `flwr` command's JSON answer, against the connection in `env`'s FLWR_HOME."""
    done = subprocess.run(
        ["flwr", *args, "--format", "json"],
        env=env,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=120,
    )
    return json.loads(done.stdout)


def _post(port: int, path: str, cafile, method: str = "POST") -> tuple[int, str]:
    """One raw request, the path sent byte for byte (no client normalises it)."""
    context = ssl.create_default_context(cafile=str(cafile))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
            "application/protobuf\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        reply = b""
        while chunk := tls.recv(65536):
            reply += chunk
    head, _, body = reply.decode("latin-1").partition("\r\n\r\n")
    return int(head.split()[1]), body


def test_a_registered_site_joins_through_the_public_port(aggregator):
    aggregator.wait_until("online", ["site01"], timeout_s=120)
    assert "connect() failed" not in aggregator.log("aggregator")


def test_listing_runs_is_refused_on_the_public_port_and_works_on_loopback(aggregator):
    outside = _flwr(aggregator.public_env, "ls", CONNECTION)
    assert not outside["success"] and "403 Forbidden" in outside["error-message"], outside
    inside = _flwr(aggregator.env, "ls", CONNECTION)
    assert inside["success"] and len(inside["runs"]) == 1, inside  # the study submitted


def test_an_outsider_cannot_register_a_node_key_through_the_public_port(aggregator):
    """The attack, refused at the gateway; the same call on loopback succeeds, so it is
    the gateway that stops it."""
    stranger = make_node_key(aggregator.root / "node-keys" / "stranger", "stranger")
    register = ("supernode", "register", str(stranger.public), CONNECTION, "--name", "stranger")
    outside = _flwr(aggregator.public_env, *register)
    assert not outside["success"] and "403 Forbidden" in outside["error-message"], outside
    assert len(_flwr(aggregator.env, "supernode", "ls", CONNECTION)["nodes"]) == 1  # site01
    assert _flwr(aggregator.env, *register)["success"]
    assert len(_flwr(aggregator.env, "supernode", "ls", CONNECTION)["nodes"]) == 2


@pytest.mark.parametrize(
    "path",
    [
        "/v1/control/list-runs",
        "/v1/runtime/list-apps-to-launch",
        "/v1/fleet/../control/list-runs",
        "/v1/fleet/..%2fcontrol/list-runs",
        "/v1/fleet/%2e%2e/control/list-runs",
        "/v1/fleet",
        "//v1/control/list-runs",
    ],
)
def test_every_path_outside_the_fleet_api_is_refused_with_a_short_reason(aggregator, path):
    status, body = _post(aggregator.public_port, path, aggregator.keys.ca_certificate)
    assert (status, body) == (403, REFUSED_BODY)


def test_on_loopback_the_same_request_without_credentials_lists_the_runs(aggregator):
    """What the gateway keeps from the public port: the Control API answers anyone."""
    status, _ = _post(aggregator.port, "/v1/control/list-runs", aggregator.keys.ca_certificate)
    assert status == 200


def test_the_fleet_api_passes_only_as_post_and_only_signed(aggregator):
    ca = aggregator.keys.ca_certificate
    get = _post(aggregator.public_port, "/v1/fleet/get-run", ca, method="GET")
    assert get == (403, REFUSED_BODY)
    status, body = _post(aggregator.public_port, "/v1/fleet/get-run", ca)
    assert status == 401 and "SuperNode authentication" in body  # the SuperLink's own check
