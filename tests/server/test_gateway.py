"""The gateway's nginx configuration (server/gateway.py) is one nginx accepts, with TLS on
both sides or plain text on both; what it lets through is proven on real processes in
tests/integration/test_deployment_gateway.py."""

from __future__ import annotations

import subprocess

import pytest

from fedrad.server.certificates import make_federation_certificates
from fedrad.server.gateway import Upstream, gateway_command, nginx_path, write_gateway_config

pytestmark = pytest.mark.skipif(nginx_path() is None, reason="nginx is not installed")


def _nginx_test(config) -> subprocess.CompletedProcess:
    command = gateway_command(config)
    return subprocess.run(
        [command[0], "-t", *command[1:]], capture_output=True, encoding="utf-8", errors="replace"
    )


@pytest.mark.parametrize("secure", [True, False], ids=["tls", "insecure"])
def test_nginx_accepts_the_gateway_config(tmp_path, secure):
    keys = make_federation_certificates(tmp_path / "keys", ["localhost"]) if secure else None
    config = write_gateway_config(
        keys, "127.0.0.1:18443", Upstream("127.0.0.1", 18000), tmp_path / "gateway"
    )
    done = _nginx_test(config)
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def test_nginx_refuses_the_config_when_the_servers_key_is_missing(tmp_path):
    keys = make_federation_certificates(tmp_path / "keys", ["localhost"])
    keys.server_key.unlink()
    config = write_gateway_config(
        keys, "127.0.0.1:18443", Upstream("127.0.0.1", 18000), tmp_path / "gateway"
    )
    done = _nginx_test(config)
    assert done.returncode != 0 and "server.key" in done.stderr
