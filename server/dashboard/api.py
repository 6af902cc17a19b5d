"""The JSON API behind every page, under /api: what FastAPI's OpenAPI schema documents."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel

from fedrad.server.dashboard import control
from fedrad.server.dashboard.auth import Coordinator, refuse, signed_in
from fedrad.server.dashboard.control import Controlled, StartRequest
from fedrad.server.dashboard.export import metrics_csv
from fedrad.server.dashboard.figure_export import (
    FORMATS,
    ExportUnavailable,
    image,
    run_figures,
)
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
from fedrad.server.store.reader import SitePage


class Refusal(BaseModel):
    detail: str  # why


def _answers(*statuses: int) -> dict:
    return {status: {"model": Refusal} for status in statuses}


router = APIRouter(
    prefix="/api", dependencies=[Depends(signed_in)], tags=["api"], responses=_answers(401)
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


class FigureLink(BaseModel):
    name: str
    title: str
    png: str  # its URL
    svg: str


@router.get(
    "/runs/{run_id}/figures",
    response_model=list[FigureLink],
    summary="A run's figures, each as PNG and SVG",
    responses=_answers(404),
)
def list_figures(request: Request, run_id: int):
    drawn = _found(run_figures(request.app.state.engine, run_id), f"run {run_id}")
    return [
        FigureLink(
            name=name,
            title=figure.layout.title.text or name,
            **{fmt: f"/api/runs/{run_id}/figures/{name}.{fmt}" for fmt in FORMATS},
        )
        for name, figure in drawn.items()
    ]


@router.get(
    "/runs/{run_id}/figures/{name}.{fmt}",
    response_class=Response,
    summary="One of a run's figures as a PNG or SVG file",
    responses={200: {"content": {media: {} for media in FORMATS.values()}}} | _answers(404, 501),
)
def get_figure(request: Request, run_id: int, name: str, fmt: Literal["png", "svg"]):
    drawn = _found(run_figures(request.app.state.engine, run_id), f"run {run_id}")
    figure = _found(drawn.get(name), f"figure {name} in run {run_id}")
    try:
        content = image(figure, fmt)
    except ExportUnavailable as exc:
        raise refuse(request, 501, str(exc)) from exc
    return Response(
        content,
        media_type=FORMATS[fmt],
        headers={"Content-Disposition": f'attachment; filename="run-{run_id}-{name}.{fmt}"'},
    )


@router.post(
    "/runs",
    status_code=202,
    response_model=Controlled,
    summary="Start a new run of a deployed run's study (coordinator)",
    responses=_answers(403, 404, 409, 501, 502),
)
def start_run(request: Request, body: StartRequest, holder: Coordinator):
    return control.start_like(request, body.like, holder)


@router.post(
    "/runs/{run_id}/stop",
    status_code=202,
    response_model=Controlled,
    summary="Stop a running deployed run (coordinator)",
    responses=_answers(403, 404, 409, 501, 502),
)
def stop_run(request: Request, run_id: int, holder: Coordinator):
    return control.stop(request, run_id, holder)


@router.get("/openapi.json", include_in_schema=False)
def get_openapi(request: Request):
    return request.app.openapi()
