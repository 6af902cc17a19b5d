"""A run's figures as PNG or SVG files drawn on the server, for a paper or a slide: the run
page's own figures, rendered by Plotly's Kaleido with the machine's Chromium (both
optional: `pip install 'fedrad[export]'`; without them the API says so)."""

from __future__ import annotations

import re

import plotly.graph_objects as go
from sqlalchemy import Engine

from fedrad.server.dashboard import figures
from fedrad.server.dashboard.views import results_of, run_view

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}
UNAVAILABLE = (
    "figures are drawn on the server by Kaleido with Chromium, which this machine lacks "
    "(pip install 'fedrad[export]', and the chromium package); each plot's camera button "
    "downloads it as SVG in the browser"
)


class ExportUnavailable(Exception):
    """Kaleido or a Chromium for it is missing."""


def run_figures(engine: Engine, run_id: int) -> dict[str, go.Figure] | None:
    """The run page's figures by name (from their titles), in page order; None: no run."""
    view = run_view(engine, run_id)
    if view is None:
        return None
    results = results_of(engine, run_id)
    drawn = figures.rounds_figures(figures.every_round(view))
    drawn += figures.results_figures(results) if results else []
    named: dict[str, go.Figure] = {}
    for index, figure in enumerate(drawn, start=1):
        name = _slug(figure.layout.title.text or "") or f"figure-{index}"
        named[name if name not in named else f"{name}-{index}"] = figure
    return named


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", re.sub(r"<[^>]+>", " ", title).lower()).strip("-")[:60]


def image(figure: go.Figure, fmt: str) -> bytes:
    """The figure as `fmt` (png or svg) bytes, at the page's size."""
    try:
        return figure.to_image(format=fmt, width=900, height=figure.layout.height or 450)
    except (ImportError, ValueError, RuntimeError) as exc:
        raise ExportUnavailable(UNAVAILABLE) from exc
