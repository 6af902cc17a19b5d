"""The run page's plots as HTML fragments for Plotly's script (served by the dashboard,
never from a CDN). The results figures are report.html's own (server/report/html.py), so
the page and the file draw the same data the same way; only the per-round plot is new,
drawn from the store's rounds, which exist while a run is still going."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.io import to_html

from fedrad.server.report.card import roc_figure
from fedrad.server.report.html import (
    comparison_figure,
    curve_figure,
    harmonization_figure,
    per_site_figure,
    reliability_figure,
)
from fedrad.server.report.model import curves

_MEASURES = {"deviance": "Newton deviance by iteration", "train_loss": "MLP training loss by round"}
# Plotly's own camera button downloads a figure; SVG keeps it sharp in a paper or slide.
_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "svg"}}


def every_round(view) -> list[dict]:
    """The run's phases and, as one more, the rounds of fits still going (`RunView`)."""
    return [*view.phases, {"rounds": view.live_rounds}]


def rounds_figures(phases: list[dict]) -> list[go.Figure]:
    """One plot per measure (deviance, training loss), a line per fit, from the rounds."""
    series: dict[str, dict[str, tuple[list, list]]] = {}
    for phase in phases:
        for row in phase["rounds"]:
            measure = next((m for m in _MEASURES if m in row), None)
            if measure is None:
                continue
            step = row.get("iteration", row.get("round"))
            xs, ys = series.setdefault(measure, {}).setdefault(row["fit"], ([], []))
            xs.append(step)
            ys.append(row[measure])
    return [
        go.Figure(
            [
                go.Scatter(x=xs, y=ys, mode="lines+markers", name=fit)
                for fit, (xs, ys) in fits.items()
            ]
        ).update_layout(
            title=_MEASURES[measure],
            xaxis={"title": "iteration" if measure == "deviance" else "round"},
            yaxis={"title": measure.replace("_", " ")},
            template="plotly_white",
            height=380,
        )
        for measure, fits in series.items()
    ]


def results_figures(results: dict) -> list[go.Figure]:
    """The study report's ROC curve (the points results.json publishes) and report.html's
    figures of a run's results.json: arms on unseen sites, per site, calibration,
    harmonization, and the model's curves and coefficients."""
    if results.get("status") == "stopped":
        return []
    drawn = [
        roc_figure(results),
        comparison_figure(results),
        per_site_figure(results),
        reliability_figure(results),
        harmonization_figure(results),
    ]
    drawn += [centroid_figure(results)]
    drawn += [curve_figure(curve) for curve in curves(results.get("model", {}))]
    return [figure for figure in drawn if figure is not None]


def centroid_figure(results: dict) -> go.Figure | None:
    """Each site's centroid on the pooled principal axes before and after harmonization:
    per-site means projected, never a case (results.json's harmonization.centroids)."""
    centroids = results.get("harmonization", {}).get("centroids")
    if not centroids:
        return None
    explained = centroids["explained"]
    figure = go.Figure(
        [
            go.Scatter(
                x=[xy[0] for xy in centroids[stage].values()],
                y=[xy[1] for xy in centroids[stage].values()],
                mode="markers+text",
                text=list(centroids[stage]),
                textposition="top center",
                name=f"{stage} harmonization",
                marker={"size": 12, "symbol": "circle-open" if stage == "before" else "circle"},
            )
            for stage in ("before", "after")
            if stage in centroids
        ]
    )
    return figure.update_layout(
        title="Site centroids on the pooled principal axes",
        xaxis={"title": f"PC1 ({explained[0]:.0%} of variance)"},
        yaxis={"title": f"PC2 ({explained[1]:.0%} of variance)"},
        template="plotly_white",
        height=420,
    )


def fragment(figure: go.Figure) -> str:
    return to_html(figure, include_plotlyjs=False, full_html=False, config=_CONFIG)
