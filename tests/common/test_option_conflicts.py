"""Options that clash, or mean nothing alone, are refused with a sentence before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedrad.common.cli import app


@pytest.mark.parametrize(
    ("arguments", "sentence"),
    [
        (
            [
                "simulate",
                "--features-table",
                "t.csv",
                "--site-column",
                "site",
                "--split-sites",
                "3",
            ],
            "--site-column and --split-sites cannot go together: the table's sites come from",
        ),
        (
            ["simulate", "--features-table", "t.csv", "--sites", "4"],
            "--features-table and --sites cannot go together: the sites come from the table",
        ),
        (
            ["simulate", "--split-sites", "3", "--site-effects", "0.5"],
            "--split-sites, --site-effects only apply with --features-table, which is not given",
        ),
        (
            ["simulate", "--label-column", "label"],  # the default, yet typed: still refused
            "--label-column only applies with --features-table, which is not given",
        ),
        (
            ["site", "join", "--site-dir", ".", "--server", "x:1", "--keys", "k", "--insecure"],
            "--keys and --insecure cannot go together",
        ),
        (
            ["server", "start", "--study", "s.yaml", "--keys", "k", "--insecure"],
            "--keys and --insecure cannot go together",
        ),
        (
            ["server", "start", "--study", "s.yaml", "--site", "a=a.pub", "--insecure"],
            "--site and --insecure cannot go together: --insecure admits any site",
        ),
    ],
)
def test_clashing_options_exit_2_with_a_sentence(
    tmp_path: Path, monkeypatch, arguments: list[str], sentence: str
):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2, result.output
    assert f"error: {sentence}" in result.output
    assert not (tmp_path / "fedrad-demo").exists() and not (tmp_path / "fedrad-state").exists()
