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


def load_study(path: Path | None) -> StudyConfig:
    """The study config, or exit 2 with the file and the offending key named."""
    if path is None:
        return StudyConfig()
    try:
        return StudyConfig.from_yaml(path)
    except ConfigError as exc:
        raise fail(str(exc)) from exc
