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
from fedrad.server.exposure import (
    AllowExposureOption,
    Exposure,
    PublicOption,
    SuperlinkHostOption,
    exposure,
    public_port,
    start_gateway_command,
)
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
        int,
        typer.Option(help="The SuperLink's own port; sites connect to --public, not here."),
    ] = 8000,
    public: PublicOption = None,
    superlink_host: SuperlinkHostOption = "127.0.0.1",
    allow_control_api_exposure: AllowExposureOption = False,
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

    For site IT: open only the --public port (e.g. --public 0.0.0.0:8443) inbound. A
    gateway (nginx) there serves TLS with the aggregator's certificate and passes only
    the sites' Fleet API to the SuperLink, which listens on 127.0.0.1:PORT; everything
    else, e.g. Flower's Control API (list, submit and stop studies, register site keys),
    which has no authentication, is refused there with 403. Sites dial --public's host
    name as it is in the certificate (`fedrad keys init --host`), and its port.

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
    reach = exposure(public, superlink_host, allow_control_api_exposure, port)
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
    gateway = start_gateway_command(reach, certificates, state, port)
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
    command = superlink_command(certificates, state, host=superlink_host, port=port)
    serve(command, env, port, console, ready, reach, gateway)


def serve(
    command: list[str],
    env: dict,
    port: int,
    console: Console,
    ready,
    reach: Exposure,
    gateway: list[str] | None = None,
) -> None:
    """Start the SuperLink (`command`) and, if `gateway`, the gateway in front of it; call
    `ready()` once they listen, and keep them running until Ctrl-C; they are stopped,
    with their children, however this ends."""
    stop_on_sigterm()
    if warning := reach.warning(port):
        warn_insecure(warning)
    try:
        superlink = subprocess.Popen(command, env=env)
    except FileNotFoundError as exc:
        raise fail("`flower-superlink` is missing; install FedRad's dependencies.") from exc
    processes = [superlink]
    try:
        wait_until_listening(superlink, ("127.0.0.1", port), "the aggregator")
        if gateway is not None:
            processes.append(subprocess.Popen(gateway, env=env))
            wait_until_listening(processes[-1], public_port(reach), "the gateway")
        ready()
        console.print(reach.note(port))
        console.print("the aggregator runs until Ctrl-C")
        while all(process.poll() is None for process in processes):
            time.sleep(1)
        name = "aggregator" if superlink.poll() is not None else "gateway"
        status = next(p.returncode for p in processes if p.poll() is not None)
        raise fail(f"the {name} stopped with status {status}; see its log above.", 1)
    except RegistrationFailed as exc:
        raise fail(str(exc)) from exc
    except KeyboardInterrupt:
        console.print("stopping the aggregator")
    finally:
        stop_tree(processes)


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


def wait_until_listening(process: subprocess.Popen, address: tuple[str, int], name: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise fail(f"{name} exited at start (status {process.returncode}).", 1)
        try:
            with socket.create_connection(address, timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise fail(f"{name} did not listen on port {address[1]} within {READY_TIMEOUT_S} s.", 1)


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
