"""A real site states its masks' label convention (preset or site config); only FedRad's
own synthetic cohort may rely on the default, and `site check` / `site extract` refuse the
rest with a sentence naming the presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from case_files import good_rows, write_manifest
from rich.console import Console
from typer.testing import CliRunner

from fedrad.client.cli import site_app
from fedrad.client.label_conventions import (
    PRESET_NAMES,
    SYNTHETIC_MARKER,
    is_synthetic_cohort,
    require_convention,
)
from fedrad.client.site_config import SiteConfig
from fedrad.common.config import ConfigError
from fedrad.simulations.synth import write as synth_write


def flat(text: str) -> str:
    return " ".join(text.split())


def test_presets_follow_the_published_brats_conventions():
    def tissues(name: str) -> dict[int, tuple[str, ...]]:
        return SiteConfig(labels=name).labels

    assert tissues("brats2021") == {1: ("necrosis",), 2: ("oedema",), 4: ("enhancing",)}
    assert tissues("brats2023") == {1: ("necrosis",), 2: ("oedema",), 3: ("enhancing",)}
    assert tissues("brats-met") == {1: ("necrosis",), 2: ("oedema",), 3: ("enhancing",)}


def test_a_site_config_may_name_a_preset_and_an_unknown_one_lists_them(tmp_path: Path):
    path = tmp_path / "site.yaml"
    path.write_text("labels: brats2021\n")
    assert SiteConfig.from_yaml(path).labels[4] == ("enhancing",)
    path.write_text("labels: brats2020\n")
    with pytest.raises(ConfigError, match="unknown label convention 'brats2020'; presets: brats"):
        SiteConfig.from_yaml(path)


def test_labels_option_and_site_config_labels_together_are_refused():
    with pytest.raises(ConfigError, match="keep one"):
        SiteConfig(labels={1: "oedema"}).with_labels("brats2021")
    with pytest.raises(ConfigError, match="--labels: unknown label convention 'brats'"):
        SiteConfig().with_labels("brats")
    assert SiteConfig(name="a").with_labels("brats2023").labels[3] == ("enhancing",)


def test_the_marker_is_the_one_the_synthetic_cohort_writes():
    assert SYNTHETIC_MARKER == synth_write.MARKER


def test_only_a_marked_synthetic_cohort_goes_without_a_stated_convention(tmp_path: Path):
    manifest = tmp_path / "site01" / "manifest.csv"
    manifest.parent.mkdir()
    with pytest.raises(ConfigError) as refused:
        require_convention(False, manifest)
    assert all(name in str(refused.value) for name in PRESET_NAMES)
    require_convention(True, manifest)  # stated: fine
    (tmp_path / SYNTHETIC_MARKER).write_text(json.dumps({"site": "mine"}))
    assert not is_synthetic_cohort(manifest)  # somebody else's cohort.json
    params = {"sites": 1, "cases_per_site": 2, "seed": 0, "size": 32}
    (tmp_path / SYNTHETIC_MARKER).write_text(json.dumps(params))
    require_convention(False, manifest)


def test_a_cohort_fedrad_synth_wrote_is_recognised(tmp_path: Path):
    (manifest,) = synth_write.write_cohort(tmp_path, 1, 2, 0, 32, Console(quiet=True))
    assert is_synthetic_cohort(manifest)


@pytest.mark.parametrize("command", ["check", "extract"])
def test_site_commands_refuse_a_real_manifest_without_a_convention(tmp_path: Path, command):
    manifest = write_manifest(tmp_path, good_rows(tmp_path)[:1])
    out = tmp_path / ("qc" if command == "check" else "f.parquet")
    args = [command, "--manifest", str(manifest), "--out", str(out), "--workers", "1"]
    result = CliRunner().invoke(site_app, args)
    assert result.exit_code == 2
    message = flat(result.output)
    assert "follow no stated label convention: pass --labels brats2021|brats2023|brats-met" in (
        message
    )
    assert not out.exists()
    stated = CliRunner().invoke(site_app, [*args, "--labels", "brats2021"])
    # past the gate; the test cases' synthetic numbering then fails under brats2021
    assert stated.exit_code == 1 and "label convention" not in flat(stated.output)
