"""The dashboard's FastAPI app over one open store. FastAPI's own /docs and /redoc pages
are off (they load their scripts from a CDN); the OpenAPI schema is served, behind a
token like every page, at /api/openapi.json."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from fedrad.server.dashboard import api, pages
from fedrad.server.dashboard.auth import Refused
from fedrad.server.dashboard.tokens import ensure_table
from fedrad.server.run_control import RunControl


def create_app(engine: Engine, control: RunControl | None = None) -> FastAPI:
    """The app over `engine`; `control` starts and stops runs (None: a coordinator is told
    how to serve a dashboard that can)."""
    ensure_table(engine)
    app = FastAPI(
        title="FedRad dashboard",
        summary="The coordinators' view of the run store",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.engine = engine
    app.state.control = control
    app.include_router(pages.public)  # its /static/plotly.min.js before the static mount
    app.include_router(pages.pages)
    app.include_router(api.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.add_exception_handler(Refused, _refused)
    return app


def _refused(request: Request, refused: Refused) -> Response:
    """The API answers with the status and why; a page without a valid token goes to the
    login page."""
    if refused.status == 401 and not request.url.path.startswith("/api"):
        return RedirectResponse("/login", status_code=303)
    return JSONResponse({"detail": refused.reason}, status_code=refused.status)
