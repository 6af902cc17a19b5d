"""`fedrad show`: a run's results as tables and figures, from its results.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fedrad.common.cli_support import console


def show(
    results: Annotated[Path, typer.Argument(help="A results.json file.")],
    html: Annotated[
        Path | None, typer.Option(help="Also write the figures to this HTML file.")
    ] = None,
) -> None:
    """Print a results.json as tables (and its figures as HTML)."""
    from fedrad.server.report.text import print_comparison, print_results

    content = json.loads(results.read_text())
    print_results(content, console)
    if "comparison" in content:
        print_comparison(content["comparison"], console)
    if html is not None:
        from fedrad.server.report.html import write_report

        console.print(f"figures: {write_report(content, html)}")
