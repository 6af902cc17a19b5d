"""`fedrad site keygen`: the site's identity key, and the line its study pins it with."""

from __future__ import annotations

import re
import stat

import pytest
import yaml
from typer.testing import CliRunner

from fedrad.client.identity import load_or_create_identity, public_hex
from fedrad.common.cli import app
from fedrad.common.config import StudyConfig

HEX_KEY = re.compile(r"\b[0-9a-f]{64}\b")


def _keygen(*args: str):
    return CliRunner().invoke(app, ["site", "keygen", *args])


def _pinned_line(output: str) -> str:
    """The YAML line the output asks the coordinator to add under `federation: site_keys:`."""
    (line,) = [line for line in output.splitlines() if line.startswith("    ")]
    return line


def test_keygen_makes_a_private_key_file_only_the_site_can_read(tmp_path):
    site_dir = tmp_path / "site01"
    result = _keygen("--site-dir", str(site_dir))
    assert result.exit_code == 0, result.output
    key_file = site_dir / "identity.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    # the public key printed is the one the site signs with (SiteData.load reads this file)
    public = public_hex(load_or_create_identity(site_dir))
    assert set(HEX_KEY.findall(result.output)) == {public}
    assert "PRIVATE" not in result.output


def test_the_printed_line_pins_the_key_in_a_study(tmp_path):
    result = _keygen("--site-dir", str(tmp_path / "site01"))
    assert result.exit_code == 0, result.output
    line = _pinned_line(result.output)
    assert "federation: site_keys:" in result.output
    pinned = yaml.safe_load(f"federation:\n  site_keys:\n{line}\n")
    study = StudyConfig.model_validate(pinned)
    assert study.federation.site_keys == {"site01": HEX_KEY.search(line).group()}


def test_a_second_run_prints_the_same_key_and_keeps_the_file(tmp_path):
    site_dir = tmp_path / "site01"
    first = _keygen("--site-dir", str(site_dir))
    before = (site_dir / "identity.key").read_bytes()
    second = _keygen("--site-dir", str(site_dir))
    assert second.exit_code == 0, second.output
    assert HEX_KEY.findall(first.output) == HEX_KEY.findall(second.output)
    assert (site_dir / "identity.key").read_bytes() == before


def test_the_site_name_may_differ_from_the_folder(tmp_path):
    result = _keygen("--site-dir", str(tmp_path / "node-a"), "--site-name", "Hôpital Nord")
    assert result.exit_code == 0, result.output
    name, key = yaml.safe_load(_pinned_line(result.output)).popitem()
    assert (name, key) == ("Hôpital Nord", HEX_KEY.search(result.output).group())


def test_a_corrupt_key_file_is_one_sentence_and_exit_2(tmp_path):
    site_dir = tmp_path / "site01"
    site_dir.mkdir()
    (site_dir / "identity.key").write_text("not a key\n")
    result = _keygen("--site-dir", str(site_dir))
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert message.startswith("error: ") and "\n" not in message
    assert str(site_dir / "identity.key") in message
    assert message.endswith(".") and message.count(". ") == 0
    assert result.stdout == ""
    assert (site_dir / "identity.key").read_text() == "not a key\n"  # never overwritten


def test_a_key_of_another_kind_is_refused_the_same_way(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    site_dir = tmp_path / "site01"
    site_dir.mkdir()
    pem = X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (site_dir / "identity.key").write_bytes(pem)
    result = _keygen("--site-dir", str(site_dir))
    assert result.exit_code == 2
    assert "not an unencrypted Ed25519 private key" in result.stderr


@pytest.mark.parametrize(
    "command", [["site", "keygen", "--site-dir"], ["keys", "site", "site01", "--out"]]
)
def test_a_file_where_the_key_folder_belongs_is_named_as_such(tmp_path, command):
    in_the_way = tmp_path / "site01"
    in_the_way.write_text("a file\n")
    result = CliRunner().invoke(app, [*command, str(in_the_way)])
    assert result.exit_code == 2
    assert f"{in_the_way}: a file is in the way where a folder belongs." in result.stderr
