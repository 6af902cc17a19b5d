"""The server-rendered pages: login, overview, site and run, and the run's live progress
fragment, which htmx fetches every two seconds while the run is running."""

from __future__ import annotations

from datetime import datetime
from importlib.resources import files
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from fedrad.server.dashboard import control, figures
from fedrad.server.dashboard.auth import COOKIE, Coordinator, Refused, SignedIn, refuse, signed_in
from fedrad.server.dashboard.tokens import holder_of
from fedrad.server.dashboard.views import (
    overview_view,
    progress_of,
    progress_view,
    results_of,
    run_view,
    site_view,
)

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _when(moment: datetime | None) -> str:
    """A stored time to the second; the store writes UTC (SQLite keeps it without a zone)."""
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["when"] = _when
PLOTLY_JS = files("plotly") / "package_data" / "plotly.min.js"

public = APIRouter(include_in_schema=False)
pages = APIRouter(include_in_schema=False, dependencies=[Depends(signed_in)])


@public.get("/login", response_class=HTMLResponse)
def login_page(request: Request):
    return templates.TemplateResponse(request, "login.html", {"refused": None})


@public.post("/login", response_class=HTMLResponse)
def login(request: Request, token: Annotated[str, Form()]):
    holder = holder_of(request.app.state.engine, token)
    if holder is None:
        reason = refuse(request, 401, "unknown token at sign-in").reason
        return templates.TemplateResponse(
            request, "login.html", {"refused": reason}, status_code=401
        )
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
    return response


@public.get("/logout")
def logout():
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


@public.get("/static/plotly.min.js")
def plotly_js():
    """Plotly's script from the installed plotly package: the same version that drew the
    figures, and no CDN for a hospital network that has none."""
    return FileResponse(PLOTLY_JS, media_type="text/javascript")


@pages.get("/", response_class=HTMLResponse)
def overview_page(request: Request, holder: SignedIn):
    view = overview_view(request.app.state.engine)
    return templates.TemplateResponse(request, "overview.html", {"view": view, "holder": holder})


@pages.get("/sites/{name}", response_class=HTMLResponse)
def site_html(request: Request, name: str, holder: SignedIn):
    page = site_view(request.app.state.engine, name)
    if page is None:
        raise HTTPException(404, f"no site {name}")
    return templates.TemplateResponse(request, "site.html", {"page": page, "holder": holder})


@pages.get("/runs/{run_id}", response_class=HTMLResponse)
def run_html(request: Request, run_id: int, holder: SignedIn):
    engine = request.app.state.engine
    view = run_view(engine, run_id)
    if view is None:
        raise HTTPException(404, f"no run {run_id}")
    results = results_of(engine, run_id)
    context = {
        "view": view,
        "holder": holder,
        "progress": progress_of(view.run, view.phases, view.live_rounds),
        "rounds_plots": [
            figures.fragment(f) for f in figures.rounds_figures(figures.every_round(view))
        ],
        "results_plots": [figures.fragment(f) for f in figures.results_figures(results or {})]
        if results
        else [],
    }
    return templates.TemplateResponse(request, "run.html", context)


@pages.get("/runs/{run_id}/report", response_class=HTMLResponse)
def report_html(request: Request, run_id: int):
    """The run's study report (`fedrad report`), with Plotly's script served from here."""
    from fedrad.server.report.card import card_html

    results = results_of(request.app.state.engine, run_id)
    if results is None:
        raise HTTPException(404, f"no results (yet) for run {run_id}")
    return HTMLResponse(card_html(results, plotly_src="/static/plotly.min.js"))


@pages.get("/runs/{run_id}/progress", response_class=HTMLResponse)
def progress_fragment(request: Request, run_id: int):
    """The timeline for htmx's poll; once the run has ended, htmx reloads the whole page,
    which then shows the run's results and polls no more."""
    progress = progress_view(request.app.state.engine, run_id)
    if progress is None:
        raise HTTPException(404, f"no run {run_id}")
    ended = progress.status != "running" and request.headers.get("HX-Request") == "true"
    return templates.TemplateResponse(
        request,
        "_progress.html",
        {"progress": progress},
        headers={"HX-Refresh": "true"} if ended else None,
    )


@pages.post("/runs/{run_id}/stop", response_class=HTMLResponse)
def stop_from_page(request: Request, run_id: int, holder: Coordinator):
    """The run page's Stop button (a coordinator's form)."""
    return _controlled(request, holder, run_id, lambda: control.stop(request, run_id, holder))


@pages.post("/runs/{run_id}/again", response_class=HTMLResponse)
def again_from_page(request: Request, run_id: int, holder: Coordinator):
    """The run page's Run again button: a new run of this run's study."""
    return _controlled(request, holder, run_id, lambda: control.start_like(request, run_id, holder))


def _controlled(request: Request, holder, run_id: int, act) -> HTMLResponse:
    """What the button did, or why it did nothing, as a page that leads back to the run."""
    try:
        sentence, status = act().detail, 200
    except Refused as refused:
        sentence, status = refused.reason, refused.status
    context = {"holder": holder, "run": run_id, "sentence": sentence, "done": status == 200}
    return templates.TemplateResponse(request, "control.html", context, status_code=status)
