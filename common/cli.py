"""The one `fedrad` command: a thin root that registers each side's command group.

Exit status (DESIGN.md): 0 success, 1 the job ran but some cases or sites failed
(named in the output), 2 bad configuration or usage. Heavy imports live inside the
commands so `fedrad --help` stays instant.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fedrad.client.cli import site_app
from fedrad.client.keys_cli import keys_site
from fedrad.common.cli_errors import ReportsUserErrors
from fedrad.server.cli import show
from fedrad.server.dashboard.cli import dashboard_app
from fedrad.server.keys_cli import keys_init, keys_register, keys_unregister
from fedrad.server.report_cli import report
from fedrad.server.resume_cli import resume
from fedrad.server.start_cli import server_app
from fedrad.server.status_cli import status
from fedrad.simulations.cli import simulate, synth

app = typer.Typer(
    name="fedrad",
    help="Federated multi-center radiomics: HGG vs brain metastasis without moving images.",
    no_args_is_help=True,
    add_completion=False,
    cls=ReportsUserErrors,
)


def _print_version(wanted: bool) -> None:
    """The aggregator and every site must run the same FedRad (a site refuses a study from
    another version), so site IT checks it before joining."""
    if wanted:
        from importlib.metadata import version

        typer.echo(f"fedrad {version('fedrad')} (flwr {version('flwr')})")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the FedRad (and Flower) version installed here, which must be the "
            "aggregator's.",
        ),
    ] = False,
) -> None:
    pass


app.add_typer(
    site_app, name="site", help="Site operator commands: check, extract, keygen, join, predict."
)
app.command()(synth)
app.command()(simulate)
app.command()(show)
app.command()(report)

keys_app = typer.Typer(no_args_is_help=True, help="Keys for a real federation: TLS and node keys.")
keys_app.command("init")(keys_init)
keys_app.command("site")(keys_site)
keys_app.command("register")(keys_register)
keys_app.command("unregister")(keys_unregister)
app.add_typer(keys_app, name="keys")
server_app.command()(status)
server_app.command()(resume)
app.add_typer(server_app, name="server", help="Coordinator commands: run the aggregator.")
app.add_typer(dashboard_app, name="dashboard")
