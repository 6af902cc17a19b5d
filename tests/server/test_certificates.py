"""`fedrad keys init`: a CA and a server certificate that chain, name the hosts, stay secret."""

from __future__ import annotations

import ipaddress
import stat

from cryptography import x509
from typer.testing import CliRunner

from fedrad.common.cli import app


def _init(out, *hosts):
    args = ["keys", "init", "--out", str(out)]
    for host in hosts:
        args += ["--host", host]
    return CliRunner().invoke(app, args)


def test_the_server_certificate_chains_to_the_ca_and_names_every_host(tmp_path):
    result = _init(tmp_path, "fedrad.hospital.org", "10.1.2.3")
    assert result.exit_code == 0, result.output
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"fedrad.hospital.org", "localhost"}
    assert set(names.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("10.1.2.3"),
        ipaddress.ip_address("127.0.0.1"),
    }
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_private_keys_are_readable_by_their_owner_only(tmp_path):
    assert _init(tmp_path, "localhost").exit_code == 0
    for name in ("ca.key", "server.key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_a_second_init_refuses_to_overwrite_the_keys(tmp_path):
    assert _init(tmp_path, "localhost").exit_code == 0
    before = (tmp_path / "ca.key").read_bytes()
    result = _init(tmp_path, "localhost")
    assert result.exit_code == 2
    assert "already exist" in result.output and "Traceback" not in result.output
    assert (tmp_path / "ca.key").read_bytes() == before
