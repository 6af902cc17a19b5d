"""`fedrad site ...`: the site operator's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fedrad.client.extract import ExtractionReport, extract_site
from fedrad.client.manifest import ManifestError
from fedrad.common.config import ConfigError, StudyConfig
from fedrad.common.radiomics_features import check_feature_classes

site_app = typer.Typer(no_args_is_help=True)


@site_app.callback()
def site() -> None:
    """Site operator commands."""


def _load_study(path: Path | None) -> StudyConfig:
    """The study, with its feature classes checked now so the error names the file."""
    if path is None:
        return StudyConfig()
    config = StudyConfig.from_yaml(path)
    try:
        check_feature_classes(config.extraction)
    except ConfigError as exc:
        raise ConfigError(f"invalid study config {path}:\n  {exc}") from exc
    return config


def _print_summary(report: ExtractionReport, console: Console) -> None:
    cached = f" ({report.from_cache} from cache)" if report.from_cache else ""
    console.print(f"Extracted {len(report.ok)} case(s){cached} -> {escape(str(report.table_path))}")
    if report.failed:
        table = Table("case id", "reason", title=f"{len(report.failed)} case(s) failed")
        for case_id, reason in report.failed.items():
            table.add_row(Text(case_id), Text(reason))
        console.print(table)
    console.print(f"QC report -> {escape(str(report.qc_path))}")


@site_app.command()
def extract(
    manifest: Annotated[Path, typer.Option(help="Site manifest CSV (paths relative to it).")],
    out: Annotated[Path, typer.Option(help="Feature table to write (parquet).")],
    study: Annotated[
        Path | None, typer.Option(help="Study config YAML; default: the built-in study.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Parallel processes; default: all cores.")
    ] = None,
) -> None:
    """QC every case of the manifest and extract its radiomic features, cached per case.

    Exit status: 0 all cases extracted, 1 some cases failed (listed), 2 bad config or usage.
    """
    errors = Console(stderr=True)
    try:
        report = extract_site(manifest, out, _load_study(study), workers=workers)
    except (ManifestError, ConfigError, OSError) as exc:
        errors.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc
    _print_summary(report, Console())
    raise typer.Exit(1 if report.failed else 0)
