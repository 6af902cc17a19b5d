"""`fedrad server start` refuses bad usage in one sentence, before starting anything."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fedrad.common.cli import app
from fedrad.server.certificates import make_federation_certificates


def _start(tmp_path, *extra: str):
    study = tmp_path / "study.yaml"
    study.write_text("name: s\n")
    return CliRunner().invoke(app, ["server", "start", "--study", str(study), *extra])


def test_server_start_without_keys_says_how_to_make_them(tmp_path):
    result = _start(tmp_path, "--keys", str(tmp_path / "none"))
    assert result.exit_code == 2
    assert "fedrad keys init" in result.output and "Traceback" not in result.output


def test_the_running_aggregator_does_not_need_the_ca_key(tmp_path):
    keys = make_federation_certificates(tmp_path / "keys", ["localhost"])
    keys.ca_key.unlink()
    result = _start(tmp_path, "--keys", str(keys.folder), "--site", "site01")
    assert result.exit_code == 2
    assert "is not NAME=PUBKEY" in result.output


def test_a_superlink_off_loopback_is_refused_unless_its_exposure_is_allowed_by_name(tmp_path):
    keys = make_federation_certificates(tmp_path / "keys", ["localhost"])
    result = _start(tmp_path, "--keys", str(keys.folder), "--superlink-host", "0.0.0.0")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Control API" in result.output and "--allow-control-api-exposure" in result.output


def test_without_nginx_a_public_aggregator_is_refused_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr("fedrad.server.exposure.nginx_path", lambda: None)
    keys = make_federation_certificates(tmp_path / "keys", ["localhost"])
    state = tmp_path / "state"
    result = _start(
        tmp_path, "--keys", str(keys.folder), "--state", str(state), "--public", "0.0.0.0:8443"
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "nginx is not installed" in result.output and "apt-get install" in result.output


@pytest.mark.parametrize(
    ("public", "reason"),
    [
        ("8443", "is not HOST:PORT"),
        ("0.0.0.0:http", "is not HOST:PORT"),
        ("0.0.0.0:8000", "one port"),
    ],
)
def test_a_bad_public_address_is_named(tmp_path, public, reason):
    keys = make_federation_certificates(tmp_path / "keys", ["localhost"])
    result = _start(tmp_path, "--keys", str(keys.folder), "--public", public)
    assert result.exit_code == 2 and reason in result.output, result.output


def test_the_help_tells_site_it_which_port_to_open_and_what_it_exposes():
    result = CliRunner().invoke(app, ["server", "start", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.output.split())
    assert "open only the --public port" in text and "403" in text
    assert "/v1/fleet/" in text and "no authentication" in text
