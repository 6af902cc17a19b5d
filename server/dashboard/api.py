"""The JSON API behind every page, under /api: what FastAPI's OpenAPI schema documents."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from fedrad.server.dashboard.auth import Coordinator, access_log, refuse, signed_in
from fedrad.server.dashboard.export import metrics_csv
from fedrad.server.dashboard.views import (
    OverviewView,
    Progress,
    RunView,
    overview_view,
    progress_view,
    results_of,
    run_view,
    site_view,
)
from fedrad.server.run_control import RunControl, RunControlFailed
from fedrad.server.store.reader import RunSummary, SitePage, run_summary
from fedrad.server.store.stops import record_stop


class Refusal(BaseModel):
    detail: str  # why


def _answers(*statuses: int) -> dict:
    return {status: {"model": Refusal} for status in statuses}


router = APIRouter(
    prefix="/api", dependencies=[Depends(signed_in)], tags=["api"], responses=_answers(401)
)

# Why a dashboard cannot start or stop runs: it was not given the aggregator's state folder.
RUN_CONTROL_MISSING = (
    "this dashboard cannot start or stop runs: serve it with --state STATE, the folder of "
    "`fedrad server start` on the aggregator's machine"
)


def _found(value, what: str):
    if value is None:
        raise HTTPException(404, f"no {what}")
    return value


@router.get("/overview", response_model=OverviewView, summary="Sites and runs")
def get_overview(request: Request):
    return overview_view(request.app.state.engine)


@router.get(
    "/sites/{name}",
    response_model=SitePage,
    summary="A site: census, QC, events",
    responses=_answers(404),
)
def get_site(request: Request, name: str):
    return _found(site_view(request.app.state.engine, name), f"site {name}")


@router.get(
    "/runs/{run_id}",
    response_model=RunView,
    summary="A run: phases, metrics, model",
    responses=_answers(404),
)
def get_run(request: Request, run_id: int):
    return _found(run_view(request.app.state.engine, run_id), f"run {run_id}")


@router.get(
    "/runs/{run_id}/progress",
    response_model=Progress,
    summary="How far a run has got",
    responses=_answers(404),
)
def get_progress(request: Request, run_id: int):
    return _found(progress_view(request.app.state.engine, run_id), f"run {run_id}")


@router.get(
    "/runs/{run_id}/results",
    response_model=dict,
    summary="A run's results.json",
    responses=_answers(404),
)
def get_results(request: Request, run_id: int):
    return _found(results_of(request.app.state.engine, run_id), f"results for run {run_id}")


@router.get(
    "/runs/{run_id}/metrics.csv",
    response_class=PlainTextResponse,
    summary="A run's metrics and rounds as CSV",
    responses={200: {"content": {"text/csv": {}}}} | _answers(404),
)
def get_metrics_csv(request: Request, run_id: int):
    view = _found(run_view(request.app.state.engine, run_id), f"run {run_id}")
    return PlainTextResponse(
        metrics_csv(view),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="run-{run_id}-metrics.csv"'},
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


@router.post(
    "/runs",
    status_code=202,
    response_model=Controlled,
    summary="Start a new run of a deployed run's study (coordinator)",
    responses=_answers(403, 404, 409, 501, 502),
)
def start_run(request: Request, body: StartRequest, holder: Coordinator):
    control = _control(request)
    run = _deployed(request, body.like)
    try:
        started = control.start_like(int(run.flower_run_id), holder.name)
    except RunControlFailed as exc:
        raise refuse(request, 502, str(exc)) from exc
    detail = f"{holder.name} started run {started}, a new run of run {body.like}'s study"
    access_log.info(detail)
    return Controlled(flower_run_id=started, detail=detail)


@router.post(
    "/runs/{run_id}/stop",
    status_code=202,
    response_model=Controlled,
    summary="Stop a running deployed run (coordinator)",
    responses=_answers(403, 404, 409, 501, 502),
)
def stop_run(request: Request, run_id: int, holder: Coordinator):
    control = _control(request)
    run = _deployed(request, run_id, running=True)
    try:
        control.stop(int(run.flower_run_id))
    except RunControlFailed as exc:
        raise refuse(request, 502, str(exc)) from exc
    record_stop(request.app.state.engine, run_id, holder.name)
    detail = f"{holder.name} stopped run {run_id}"
    access_log.info(detail)
    return Controlled(flower_run_id=int(run.flower_run_id), detail=detail)


@router.get("/openapi.json", include_in_schema=False)
def get_openapi(request: Request):
    return request.app.openapi()
