"""The site's SuperNode command line, and `fedrad site join` refusing a site not ready."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedrad.client.supernode import TRUSTED_SUPERNODE, supernode_command
from fedrad.common.cli import app
from fedrad.common.config import StudyConfig
from fedrad.simulations.synth.features import write_site_feature_tables


def test_the_supernode_trusts_the_ca_signs_in_and_carries_the_node_config(tmp_path):
    command = supernode_command(
        "agg.example.org:8000", Path("site/features.parquet"), "site01", Path("study.yaml"),
        Path("keys/ca.crt"), Path("keys/node.key"), port=9095,
    )  # fmt: skip
    assert command[: len(TRUSTED_SUPERNODE)] == TRUSTED_SUPERNODE and "--insecure" not in command
    command = command[len(TRUSTED_SUPERNODE) :]  # then flower-supernode's own flags
    flags = dict(zip(command[::2], command[1::2], strict=False))
    assert flags["--root-certificates"] == str(Path("keys/ca.crt").resolve())
    assert flags["--auth-supernode-private-key"] == str(Path("keys/node.key").resolve())
    assert flags["--superlink"] == "agg.example.org:8000" and flags["--port"] == "9095"
    features = Path("site/features.parquet").resolve()
    assert flags["--node-config"] == (
        f'features-path="{features}" site-name="site01" study-path="{Path("study.yaml").resolve()}"'
    )


def _join(site_dir: Path, *extra: str):
    return CliRunner().invoke(
        app, ["site", "join", "--site-dir", str(site_dir), "--server", "127.0.0.1:1", *extra]
    )


def test_join_refuses_a_site_without_a_feature_table(tmp_path):
    result = _join(tmp_path, "--insecure")
    assert result.exit_code == 2
    assert "there is no feature table" in result.output and "fedrad site extract" in result.output


def test_join_refuses_a_table_extracted_with_other_settings(tmp_path):
    other = StudyConfig().updated(extraction={"bin_width": 7.0})
    tables = write_site_feature_tables(tmp_path, other, sizes=(10,))
    result = _join(tables["site01"].parent, "--insecure")
    assert result.exit_code == 2
    assert f"the study needs {StudyConfig().extraction_hash}" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("present", "missing"), [((), "node.key"), (("node.key",), "ca.crt")])
def test_join_without_its_keys_names_the_missing_file(tmp_path, present, missing):
    tables = write_site_feature_tables(tmp_path / "site", StudyConfig(), sizes=(10,))
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in present:
        (keys / name).write_text("x")
    result = _join(tables["site01"].parent, "--keys", str(keys))
    assert result.exit_code == 2 and f"there is no {keys / missing}" in result.output
