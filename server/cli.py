"""`fedrad show`: a run's results as tables and figures, from its results.json or from the
run store (the very document the run wrote there), so the terminal, report.html and a
dashboard reading the store render one and the same results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fedrad.common.cli_support import console

# What the report reads of a results.json, as (path of keys, expected type, what it is).
_REQUIRED = (
    (("metrics",), dict, "'metrics' section"),
    (("metrics", "federated"), dict, "federated metrics ('metrics.federated')"),
    (("metrics", "per_site"), dict, "per-site metrics ('metrics.per_site')"),
    (("model",), dict, "'model' section"),
    (("sites",), list, "'sites' list"),
    (("validation", "scheme"), str, "validation scheme ('validation.scheme')"),
)
_COMPARISON = ("federated_vs_pooled", "on_unseen_sites", "worth")
_JSON_NAMES = {list: "an array", str: "a string", int: "a number", float: "a number"}


def results_problem(content) -> str | None:
    """Why `content` is not a FedRad results.json the report can render, or None."""
    if not isinstance(content, dict):
        return f"it holds {_JSON_NAMES.get(type(content), 'a JSON literal')}, not a JSON object"
    for keys, kind, what in _REQUIRED:
        value = content
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if not isinstance(value, kind):
            return f"it has no {what}"
    for site in content["sites"]:
        if not isinstance(site, dict) or not isinstance(site.get("name"), str):
            return "its 'sites' list holds an entry without a name"
    if not all(isinstance(figures, dict) for figures in content["metrics"]["per_site"].values()):
        return "its per-site metrics are not objects"
    comparison = content.get("comparison")
    if "comparison" in content and not (
        isinstance(comparison, dict)
        and all(isinstance(comparison.get(part), dict) for part in _COMPARISON)
    ):
        return "its 'comparison' section lacks " + ", ".join(f"'{p}'" for p in _COMPARISON)
    return None


def _read_json(results: Path):
    try:
        text = results.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(f"Cannot show {results}: there is no such file.") from None
    except IsADirectoryError:
        raise _fail(f"Cannot show {results}: it is a folder; give its results.json.") from None
    except UnicodeDecodeError:
        raise _fail(
            f"Cannot show {results}: it is not a text file, so not a results.json."
        ) from None
    except OSError as exc:
        raise _fail(f"Cannot show {results}: it cannot be read ({exc.strerror}).") from None
    if not text.strip():
        raise _fail(f"Cannot show {results}: it is empty, so not a FedRad results.json.")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(
            f"Cannot show {results}: it is not JSON ({exc.msg} at line {exc.lineno}), "
            "so not a FedRad results.json."
        ) from None


def _from_store(store: str, run: int | None) -> dict:
    """The results the run wrote into the store; a path names a SQLite runs.db."""
    from sqlalchemy.exc import SQLAlchemyError

    from fedrad.server.store.engine import open_store
    from fedrad.server.store.reader import run_results

    url = store if "://" in store else f"sqlite:///{Path(store).resolve()}"
    if "://" not in store and not Path(store).is_file():
        raise _fail(f"Cannot show {store}: there is no such file.")
    try:
        engine = open_store(url)
        content = run_results(engine, run)
        engine.dispose()
    except SQLAlchemyError as exc:
        raise _fail(f"Cannot read the run store {store}: {exc.__class__.__name__}.") from None
    if content is None:
        which = f"run {run}" if run is not None else "any run"
        raise _fail(f"Cannot show {which} of {store}: it has no results (yet) for it.")
    return content


def _fail(message: str) -> typer.Exit:
    console.print(message, markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


def show(
    results: Annotated[
        Path | None, typer.Argument(help="A results.json file (or give --store).")
    ] = None,
    html: Annotated[
        Path | None, typer.Option(help="Also write the figures to this HTML file.")
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(help="Read the run from this run store (a URL, or a runs.db file)."),
    ] = None,
    run: Annotated[
        int | None, typer.Option(help="With --store: the run (default: the newest ended one).")
    ] = None,
) -> None:
    """Print a results.json, or a run from the run store, as tables (and its figures as HTML).

    Exits 2, naming the file, when it is missing, unreadable or not a FedRad results.json.
    """
    from fedrad.server.report.text import print_comparison, print_results

    if (results is None) == (store is None):
        raise _fail("Give a results.json file or --store, one of the two.")
    if store is not None:
        content, source = _from_store(store, run), f"run {run or 'newest'} of {store}"
    else:
        content, source = _read_json(results), str(results)
    problem = results_problem(content)
    if problem is not None:
        raise _fail(f"Cannot show {source}: {problem}, so it is not a FedRad results.json.")
    print_results(content, console)
    if "comparison" in content:
        print_comparison(content["comparison"], console)
    if html is not None:
        from fedrad.server.report.html import write_report

        try:
            page = write_report(content, html)
        except OSError as exc:
            raise _fail(f"Cannot write the report to {html}: {exc.strerror}.") from None
        console.print(f"figures: {page}", markup=False, highlight=False, soft_wrap=True)
