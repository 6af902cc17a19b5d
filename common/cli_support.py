"""What every command group shares: the console, the --study option and its loading."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedrad.common.cli_errors import fail
from fedrad.common.config import ConfigError, StudyConfig

console = Console()

StudyOption = Annotated[
    Path | None, typer.Option("--study", help="Study config YAML (default: embedded defaults).")
]

ParamsOption = Annotated[
    Path | None,
    typer.Option(
        "--params",
        help="pyradiomics parameter file (YAML/JSON) giving the study's extraction settings "
        "(docs/extraction.md 1.1); refused where the study sets them otherwise.",
    ),
]


def study_with_params(path: Path | None, params: Path | None) -> StudyConfig:
    """The study (`path`, or the built-in one), with a pyradiomics parameter file's settings
    if `params` is given; a ConfigError names the file and the key."""
    study = StudyConfig.from_yaml(path) if path else StudyConfig()
    return study.with_pyradiomics_params(params) if params else study


def load_study(path: Path | None, params: Path | None = None) -> StudyConfig:
    """The study config, or exit 2 with the file and the offending key named."""
    try:
        return study_with_params(path, params)
    except ConfigError as exc:
        raise fail(str(exc)) from exc
