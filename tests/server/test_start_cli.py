"""`fedrad server start` refuses bad usage in one sentence, before starting anything."""

from __future__ import annotations

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
