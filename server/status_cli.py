"""`fedrad server status`: is each site online, and how are the studies doing."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

from fedrad.common.cli_errors import fail
from fedrad.server.flwr_cli import StatusUnavailable
from fedrad.server.keys_cli import StateOption, connection_address, reachable
from fedrad.server.status import query


def status(state: StateOption = Path("fedrad-state")) -> None:
    """Coordinator: the registered sites (registered / online / offline) and the runs.

    Run it on the aggregator while `fedrad server start` runs. A run Flower has ended
    (failed, stopped) that the run store still calls running is recorded as ended there.

    Exit status: 0 shown, 2 the aggregator is not running or did not answer.
    """
    address = connection_address(state)
    if not reachable(address):
        raise fail(f"cannot reach the aggregator at {address}; is `fedrad server start` running?")
    try:
        sites, runs = query(state)
    except StatusUnavailable as exc:
        raise fail(str(exc)) from exc
    console = Console()
    for run in _record_ended_runs(state, runs):
        console.print(f"run store: run {run} recorded as ended (Flower ended it; see its reason)")
    site_table = Table("site", "node id", "status", title=f"{len(sites)} site(s) registered")
    for row in sites:
        site_table.add_row(*(Text(cell) for cell in row))
    run_table = Table("run id", "status", "elapsed", title=f"{len(runs)} run(s)")
    for row in runs:
        run_table.add_row(*(Text(cell) for cell in row))
    console.print(site_table)
    console.print(run_table)


def _record_ended_runs(state: Path, runs: list[tuple[str, str, str]]) -> list[int]:
    """Runs Flower ended that the run store still calls running, recorded as ended there
    (an aggregator killed mid-study cannot say so itself)."""
    from fedrad.server.store.engine import open_store, state_store_url
    from fedrad.server.store.stops import record_ended_runs

    try:
        engine = open_store(state_store_url(state))
        try:
            return record_ended_runs(engine, {run_id: status for run_id, status, _ in runs})
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        Console(stderr=True).print(f"run store not updated: {type(exc).__name__}", markup=False)
        return []
