"""`fedrad server resume RUN`: a study whose aggregator stopped mid-way continues from the
last phase it finished (server/checkpoint.py), as a new run of the same study."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from fedrad.common.cli_errors import fail
from fedrad.common.cli_support import load_study
from fedrad.common.flower_processes import flower_env
from fedrad.server.certificates import signing_key_of
from fedrad.server.checkpoint import CheckpointUnusable, read_checkpoint
from fedrad.server.exposure import (
    AllowExposureOption,
    PublicOption,
    SuperlinkHostOption,
    exposure,
    start_gateway_command,
)
from fedrad.server.flwr_cli import StatusUnavailable
from fedrad.server.keys_cli import StateOption, reachable
from fedrad.server.runs import RunRecord, known_runs, read_run, record_run
from fedrad.server.start_cli import serve, submit
from fedrad.server.status import query
from fedrad.server.superlink import flower_home, study_app_project, superlink_command

UNFINISHED = ("pending", "starting", "running")


def resume(
    run: Annotated[
        int, typer.Argument(help="The run id `fedrad server start` printed for the study.")
    ],
    state: StateOption = Path("fedrad-state"),
    public: PublicOption = None,
    superlink_host: SuperlinkHostOption = "127.0.0.1",
    allow_control_api_exposure: AllowExposureOption = False,
) -> None:
    """Coordinator: continue a study whose aggregator stopped (a crash, a reboot) from
    the last phase it finished, with the same sites.

    Every finished fit and the evaluation were saved in STATE/results/checkpoint; the
    new run asks the sites who they are and exchanges keys again, loads what was
    finished, and does the rest. Its results equal those of a run that never stopped.
    A site that is gone now is left out, and every saved fit it trained is refitted
    without it (the log says which). If the aggregator is not running, it is started
    as `fedrad server start` started it (give the same --public) and runs until Ctrl-C;
    the sites reconnect by themselves.

    Exit status: 0 submitted (and, if started here, stopped with Ctrl-C), 1 the
    aggregator failed, 2 nothing to resume (the reason is printed).
    """
    record = read_run(state, run)
    if record is None:
        runs = ", ".join(known_runs(state)) or "none"
        raise fail(f"no run {run} was submitted from {state} (runs recorded there: {runs}).")
    reach = exposure(public, superlink_host, allow_control_api_exposure, record.port)
    study_path, out_dir = Path(record.study), Path(record.out_dir)
    study = load_study(study_path)
    try:
        saved, phases = read_checkpoint(out_dir / "checkpoint", study)
    except CheckpointUnusable as exc:
        raise fail(f"run {run} cannot be resumed: {exc}.") from exc
    if saved["finished"]:
        raise fail(f"run {run} finished; its results are in {out_dir / 'results.json'}.")
    if saved["runs"][-1] != run:
        raise fail(
            f"run {run} is not the study's latest run: {out_dir} holds run "
            f"{saved['runs'][-1]}'s checkpoint; resume that one."
        )
    if not phases:
        raise fail(
            f"run {run} stopped before it finished a phase, so there is nothing to resume; "
            f"start the study again with `fedrad server start --study {study_path}`."
        )
    console = Console(highlight=False, soft_wrap=True)
    env = flower_env(FLWR_HOME=str(flower_home(state)))
    app_dir = state / "resume-app"
    app_dir.mkdir(exist_ok=True)
    from fedrad.server.store.engine import state_store_url

    store = record.store or state_store_url(state)
    (app_dir / "pyproject.toml").write_text(
        study_app_project(
            study_path,
            out_dir,
            resume=True,
            store=store,
            started_by=getpass.getuser(),
            signing_key=signing_key_of(record.certificates),
        ),
        encoding="utf-8",
    )

    def resubmit() -> None:
        new_run = submit(app_dir, env)
        record_run(
            state,
            RunRecord(new_run, record.study, record.out_dir, record.keys, record.port, store),
        )
        console.print(
            f"run {run} resumed as run {new_run} from {len(phases)} saved phase(s); "
            f"results -> {escape(str(out_dir))}"
        )

    if not reachable(f"127.0.0.1:{record.port}"):
        command = superlink_command(
            record.certificates, state, host=superlink_host, port=record.port
        )
        gateway = start_gateway_command(reach, record.certificates, state, record.port)
        serve(command, env, record.port, console, resubmit, reach, gateway)
        return
    _refuse_a_running_study(state, run)
    resubmit()


def _refuse_a_running_study(state: Path, run: int) -> None:
    """Two runs of one study would write one checkpoint and ask the sites twice."""
    try:
        _, runs = query(state)
    except StatusUnavailable as exc:
        raise fail(str(exc)) from exc
    status = {run_id: run_status for run_id, run_status, _ in runs}.get(str(run), "")
    if status.startswith(UNFINISHED):
        raise fail(
            f"run {run} is still {status} on the aggregator; resume it only once it stopped "
            f"(`flwr stop {run}`, or wait for it)."
        )
