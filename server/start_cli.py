"""`fedrad server start`: the aggregator's SuperLink, and the study submitted to it."""

from __future__ import annotations

import getpass
import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from fedrad.common.cli_errors import fail, warn_insecure
from fedrad.common.cli_support import load_study
from fedrad.common.flower_processes import (
    INSECURE_WARNING,
    flower_env,
    stop_on_sigterm,
    stop_tree,
)
from fedrad.common.option_conflicts import refuse_pairs
from fedrad.server.certificates import FederationCertificates, signing_key_of
from fedrad.server.registration import RegistrationFailed, register_site
from fedrad.server.runs import RunRecord, record_run
from fedrad.server.superlink import (
    connection_config,
    flower_home,
    study_app_project,
    submit_command,
    superlink_command,
)

server_app = typer.Typer(no_args_is_help=True)

READY_TIMEOUT_S = 60


@server_app.callback()
def server() -> None:
    """Coordinator commands: run the aggregator."""


def start(
    ctx: typer.Context,
    study: Annotated[Path, typer.Option(help="The study config YAML every site also runs.")],
    keys: Annotated[
        Path | None, typer.Option(help="Folder of `fedrad keys init` (ca.crt, server.pem, ...).")
    ] = None,
    port: Annotated[
        int, typer.Option(help="The one port sites connect to (open it inbound).")
    ] = 8000,
    state: Annotated[
        Path, typer.Option(help="Folder for the aggregator's database and results.")
    ] = Path("fedrad-state"),
    site: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=PUBKEY: register a site's node.pub before the study starts "
            "(repeat per site); others can join later with `fedrad keys register`."
        ),
    ] = None,
    insecure: Annotated[
        bool, typer.Option(help="Plain text, no node keys: for a test machine only.")
    ] = False,
    store: Annotated[
        str | None,
        typer.Option(
            help="Run store URL, e.g. postgresql+psycopg://HOST/DB (default: the one given "
            "before for STATE, else STATE/runs.db)."
        ),
    ] = None,
) -> None:
    """Coordinator: start the aggregator (Flower SuperLink) and submit the study.

    The SuperLink serves TLS with the certificate from `fedrad keys init`, admits only
    SuperNodes registered with `fedrad keys register`, keeps its state in STATE/state.db,
    and never installs packages at run time. Results go to STATE/results/results.json;
    every run, and every site registered, is recorded in the run store, STATE/runs.db
    unless --store names another (docs/store.md).
    Runs until Ctrl-C. If the aggregator stops mid-study, `fedrad server resume RUN`
    continues the study from its last finished phase.

    The study goes to the sites as an app that is FedRad's installed apps and no code,
    versioned as this FedRad: sites run it with their own installed FedRad, and refuse it
    if their FedRad version differs (install the same version everywhere).

    Exit status: 0 stopped with Ctrl-C, 1 the aggregator failed, 2 bad config or usage.
    """
    from fedrad.server.store.engine import STORE_FILE, state_store_url

    refuse_pairs(
        ctx,
        {
            ("keys", "insecure"): "--insecure serves plain text, without the keys' certificate",
            ("site", "insecure"): "--insecure admits any site, so registering one means nothing",
        },
    )
    load_study(study)
    certificates = None if insecure else certificates_in(keys)
    sites = _sites(site or [])
    if insecure:
        warn_insecure(INSECURE_WARNING)
    home, results = flower_home(state), state / "results"
    store = store or state_store_url(state)
    try:
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            connection_config(f"127.0.0.1:{port}", certificates), encoding="utf-8"
        )
        (state / STORE_FILE).write_text(store + "\n", encoding="utf-8")
        app_dir = state / "study-app"
        app_dir.mkdir(exist_ok=True)
        (app_dir / "pyproject.toml").write_text(
            study_app_project(
                study,
                results,
                store=store,
                started_by=getpass.getuser(),
                signing_key=signing_key_of(certificates),
            ),
            encoding="utf-8",
        )
    except OSError as exc:
        raise fail(f"cannot write the aggregator's state into {state}: {exc.strerror}.") from exc
    console = Console(highlight=False, soft_wrap=True)

    def ready() -> None:
        for name, public_key in sites:
            new = register_site(public_key, name, state)
            console.print(f"site {escape(name)} {'registered' if new else 'already registered'}")
        run_id = submit(app_dir, env)
        keys_folder = None if certificates is None else str(certificates.folder.resolve())
        record_run(
            state,
            RunRecord(
                run_id, str(study.resolve()), str(results.resolve()), keys_folder, port, store
            ),
        )
        console.print(f"study submitted as run {run_id}; results -> {escape(str(results))}")

    env = flower_env(FLWR_HOME=str(home))
    serve(superlink_command(certificates, state, port=port), env, port, console, ready)


def serve(command: list[str], env: dict, port: int, console: Console, ready) -> None:
    """Start the SuperLink (`command`), call `ready()` once it listens, and keep it running
    until Ctrl-C; it is stopped, with its children, however this ends."""
    stop_on_sigterm()
    try:
        superlink = subprocess.Popen(command, env=env)
    except FileNotFoundError as exc:
        raise fail("`flower-superlink` is missing; install FedRad's dependencies.") from exc
    try:
        wait_until_listening(superlink, port)
        ready()
        console.print("the aggregator runs until Ctrl-C")
        status = superlink.wait()
        raise fail(f"the aggregator stopped with status {status}; see its log above.", 1)
    except RegistrationFailed as exc:
        raise fail(str(exc)) from exc
    except KeyboardInterrupt:
        console.print("stopping the aggregator")
    finally:
        stop_tree([superlink])


def _sites(pairs: list[str]) -> list[tuple[str, Path]]:
    sites = []
    for pair in pairs:
        name, _, public_key = pair.partition("=")
        if not name or not public_key:
            raise fail(f"--site {pair!r} is not NAME=PUBKEY (e.g. site01=keys/site01.pub).")
        sites.append((name, Path(public_key)))
    return sites


def certificates_in(keys: Path | None) -> FederationCertificates:
    if keys is None:
        raise fail("give --keys (the folder of `fedrad keys init`), or --insecure on a test box.")
    certificates = FederationCertificates(keys)
    missing = [path.name for path in certificates.serving if not path.is_file()]
    if missing:
        raise fail(f"{keys} lacks {', '.join(missing)}; run `fedrad keys init --out {keys}`.")
    return certificates


def wait_until_listening(superlink: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if superlink.poll() is not None:
            raise fail(f"the aggregator exited at start (status {superlink.returncode}).", 1)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise fail(f"the aggregator did not listen on port {port} within {READY_TIMEOUT_S} s.", 1)


def submit(app_dir: Path, env: dict[str, str]) -> int:
    """Submit the study app to the running SuperLink; its run id."""
    done = subprocess.run(
        submit_command(app_dir), env=env, capture_output=True, encoding="utf-8", errors="replace"
    )
    try:
        return int(json.loads(done.stdout)["run-id"])
    except (json.JSONDecodeError, KeyError) as exc:
        reason = " ".join((done.stderr or done.stdout).split())[-300:]
        raise fail(f"the study was not submitted: {reason}", 1) from exc


server_app.command()(start)
