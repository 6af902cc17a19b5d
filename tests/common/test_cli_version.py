"""`fedrad --version`: what site IT compares with the aggregator's before joining."""

from __future__ import annotations

from importlib.metadata import version

from typer.testing import CliRunner

from fedrad.common.cli import app


def test_version_names_the_installed_fedrad_and_flower_and_exits_zero():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"fedrad {version('fedrad')} (flwr {version('flwr')})"


def test_help_still_lists_the_commands_and_the_version_option():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "--version" in result.stdout
    assert "HGG vs brain metastasis" in result.stdout
    assert "server" in result.stdout
