"""Starting and stopping runs, for the API and the run page alike: which runs can be, what
the aggregator is asked and what the store records. The coordinator role is checked by the
routes (`auth.Coordinator`)."""

from __future__ import annotations

from fastapi import Request
from pydantic import BaseModel

from fedrad.server.dashboard.auth import access_log, refuse
from fedrad.server.dashboard.tokens import Holder
from fedrad.server.run_control import RunControl, RunControlFailed
from fedrad.server.store.reader import RunSummary, run_summary
from fedrad.server.store.stops import record_stop

# Why a dashboard cannot start or stop runs: it was not given the aggregator's state folder.
RUN_CONTROL_MISSING = (
    "this dashboard cannot start or stop runs: serve it with --state STATE, the folder of "
    "`fedrad server start` on the aggregator's machine"
)


class StartRequest(BaseModel):
    like: int  # the run (store id) whose study to run again


class Controlled(BaseModel):
    flower_run_id: int  # the run started, or stopped, as Flower numbers it
    detail: str


def _deployed(request: Request, run_id: int, running: bool | None = None) -> RunSummary:
    """The store's run `run_id`, which must be a deployed run (and running, if asked):
    its Flower run id is what the aggregator knows it by."""
    run = run_summary(request.app.state.engine, run_id)
    if run is None:
        raise refuse(request, 404, f"no run {run_id}")
    if run.mode != "deployment" or run.flower_run_id is None:
        raise refuse(
            request, 409, f"run {run_id} is a {run.mode}: it runs inside its own command only"
        )
    if running is not None and (run.status == "running") != running:
        raise refuse(request, 409, f"run {run_id} is {run.status}")
    return run


def _control(request: Request) -> RunControl:
    control = request.app.state.control
    if control is None:
        raise refuse(request, 501, RUN_CONTROL_MISSING)
    return control


def stop(request: Request, run_id: int, holder: Holder) -> Controlled:
    """Stop the running deployed run `run_id` (store id) and record who did."""
    aggregator = _control(request)
    run = _deployed(request, run_id, running=True)
    try:
        aggregator.stop(int(run.flower_run_id))
    except RunControlFailed as exc:
        raise refuse(request, 502, str(exc)) from exc
    record_stop(request.app.state.engine, run_id, holder.name)
    detail = f"{holder.name} stopped run {run_id}"
    access_log.info(detail)
    return Controlled(flower_run_id=int(run.flower_run_id), detail=detail)


def start_like(request: Request, like: int, holder: Holder) -> Controlled:
    """Start a new run of the study of deployed run `like` (store id)."""
    aggregator = _control(request)
    run = _deployed(request, like)
    try:
        started = aggregator.start_like(int(run.flower_run_id), holder.name)
    except RunControlFailed as exc:
        raise refuse(request, 502, str(exc)) from exc
    detail = f"{holder.name} started Flower run {started}, a new run of run {like}'s study"
    access_log.info(detail)
    return Controlled(flower_run_id=started, detail=detail)
