"""`fedrad report`: a run's study report (model card) as one self-contained HTML page, and
as PDF, from its results.json or the run store, as `fedrad show` reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedrad.common.cli_support import console
from fedrad.server.cli import _fail, _from_store, _read_json, results_problem


def report(
    run: Annotated[str, typer.Argument(help="A results.json file, or with --store the run's id.")],
    out: Annotated[Path, typer.Option(help="The HTML report to write.")] = Path("report.html"),
    pdf: Annotated[
        bool, typer.Option("--pdf", help="Also print it to PDF beside it (needs chromium).")
    ] = False,
    store: Annotated[
        str | None,
        typer.Option(help="Read the run from this run store (a URL, or a runs.db file)."),
    ] = None,
) -> None:
    """Write a run's study report: cohort, settings, validation, ROC and calibration,
    metrics with CIs, per-site results, limitations and the reporting checklist.

    Exits 2, naming the file or run, when it cannot be read or is not a FedRad results.json.
    """
    from fedrad.server.report.card import BUNDLE_FILE, write_card
    from fedrad.server.report.pdf import NoBrowser, print_pdf

    bundle = None
    if store is not None:
        if not run.isdigit():
            raise _fail(f"Cannot report run {run!r} of {store}: give the run's number.")
        content, source = _from_store(store, int(run)), f"run {run} of {store}"
    else:
        content, source = _read_json(Path(run)), run
        beside = Path(run).parent / BUNDLE_FILE
        bundle = beside if beside.is_file() else None
    problem = results_problem(content)
    if problem is not None and not (
        isinstance(content, dict) and content.get("status") == "stopped"
    ):
        raise _fail(f"Cannot report {source}: {problem}, so it is not a FedRad results.json.")
    try:
        page = write_card(content, out, bundle)
    except OSError as exc:
        raise _fail(f"Cannot write the report to {out}: {exc.strerror}.") from None
    console.print(f"report: {page}", markup=False, highlight=False, soft_wrap=True)
    if pdf:
        try:
            printed = print_pdf(page, out.with_suffix(".pdf"))
        except NoBrowser as exc:
            console.print(f"{exc}; the HTML report stands.", markup=False, soft_wrap=True)
            return
        console.print(f"pdf: {printed}", markup=False, highlight=False, soft_wrap=True)
