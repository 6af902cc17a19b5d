"""`fedrad dashboard --db URL`: serve the dashboard over a run store; `fedrad dashboard
token add NAME --role viewer` makes a token and prints it once."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from fedrad.common.cli_support import console
from fedrad.server.dashboard.tokens import Role, TokenExists, add_token, remove_token
from fedrad.server.store.engine import open_store

DB_HELP = "The run store's URL, e.g. sqlite:////path/to/runs.db or postgresql+psycopg://..."
Db = Annotated[str, typer.Option("--db", envvar="FEDRAD_DB", help=DB_HELP)]

dashboard_app = typer.Typer(
    invoke_without_command=True, help="The coordinators' dashboard over a run store."
)
token_app = typer.Typer(no_args_is_help=True, help="Access tokens: viewer or coordinator.")
dashboard_app.add_typer(token_app, name="token")


@dashboard_app.callback()
def dashboard(
    ctx: typer.Context,
    db: Annotated[str | None, typer.Option("--db", envvar="FEDRAD_DB", help=DB_HELP)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    state: Annotated[
        Path | None,
        typer.Option(
            help="The folder of `fedrad server start` on this machine: lets coordinators "
            "start and stop its runs (without it the dashboard only shows them)."
        ),
    ] = None,
) -> None:
    """Serve the dashboard (with no subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    if not db:
        raise typer.BadParameter("give the run store's URL", param_hint="--db")
    import uvicorn

    from fedrad.server.dashboard.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    console.print(f"FedRad dashboard on http://{host}:{port} (sign in with a token)")
    from fedrad.server.run_control import RunControl

    control = None if state is None else RunControl(state)
    uvicorn.run(create_app(open_store(db), control), host=host, port=port, log_level="info")


@token_app.command("add")
def token_add(
    name: Annotated[str, typer.Argument(help="Who the token is for.")],
    db: Db,
    role: Annotated[Role, typer.Option(help="viewer reads; coordinator also runs.")] = Role.viewer,
) -> None:
    """Make a token; it is printed once and kept only as its SHA-256."""
    try:
        token = add_token(open_store(db), name, role)
    except TokenExists as exc:
        console.print(str(exc), markup=False)
        raise typer.Exit(2) from exc
    console.print(f"{role} token for {name} (shown once, keep it safe):", markup=False)
    print(token)


@token_app.command("remove")
def token_remove(name: Annotated[str, typer.Argument()], db: Db) -> None:
    """Withdraw a token: whoever holds it is refused from the next request on."""
    if not remove_token(open_store(db), name):
        console.print(f"no token named {name!r}", markup=False)
        raise typer.Exit(2)
    console.print(f"token {name!r} removed", markup=False)
